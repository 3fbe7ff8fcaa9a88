"""The Slurm executor (issue 27) against a real single-node Slurm cluster (``tests/cluster.py``).

One investigation of six trials (five pass, one raises in its step) runs three ways:

A. ``--mitosis-executor=slurm --mitosis-slurm throttle=2``: one job array of six tasks; the records,
   the junit XML, the notebooks and pages are those of a local run;
B. the same sweep with the local executor, in a clone of the repository at the same commit: every
   record field is the same but the host, the key and the job;
C. the session itself as a Slurm job (the guide's two-line ``sbatch`` wrapper): submitted, the user
   gone, its trials recorded.

And the refusals: a bad resource value (the file and key named), a partition Slurm does not know
(every trial fails with Slurm's own message, their records finished), ``-n`` with the Slurm executor,
no ``sbatch`` on PATH.
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import (
    PATIENCE,
    clean_env,
    git,
    git_init,
    held_investigation,
    run_pytest,
    wait_until,
    write_investigation,
)
from .slurm_cluster import SlurmCluster, own_cluster, start_session
from .test_guard_before_workers import SPAWN_LOG

pytestmark = pytest.mark.kernel

PYPROJECT = """
[tool.mitosis]
trials-folder = "trials"

[tool.mitosis.steps]
square = ["study.square:run", "study.square:lookup_dict"]

[tool.mitosis.slurm]
time = "10"
cpus = 1
"""

STEP = """
lookup_dict = {"x": {"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "boom": 0}}


def run(x):
    if x == 0:
        raise ValueError("boom in the step")
    return {"main": x * x + 0.5, "metrics": {"half": x / 2, "series": [x, x + 1, x + 2]}}
"""

FIELDS = (
    "experiment",
    "identity",
    "variants",
    "iteration",
    "name",
    "nodeid",
    "status",
    "commit",
    "seed",
    "params",
    "main",
    "metrics",
    "message",
    "verdict",
    "directions",
    "steps",
)


def _rows(root: Path) -> dict[str, dict[str, Any]]:
    with sqlite3.connect(root / "trials" / "mitosis.sqlite") as db:
        db.row_factory = sqlite3.Row
        return {r["nodeid"].rsplit("::", 1)[-1]: dict(r) for r in db.execute("SELECT * FROM trials")}


def _clone(investigation: Path, where: Path) -> Path:
    """A clone of the investigation at its commit, in ``where``: a session of its own, with an empty store."""
    clone = where / "study"
    subprocess.run(["git", "clone", "-q", str(investigation), str(clone)], check=True)
    return clone


def _env(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    return clean_env(SLURM_CONF=cluster.env["SLURM_CONF"], **extra)


def _on_slurm(root: Path, cluster: SlurmCluster, *args: str, junit: bool = True) -> Any:
    """``pytest --mitosis --mitosis-executor=slurm ARGS`` in ``root``, on this module's cluster."""
    return run_pytest(root, "--mitosis", "--mitosis-executor=slurm", *args, env=_env(cluster), junit=junit)


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    """This module's own Slurm cluster (another module's runs beside it on another xdist worker)."""
    yield from own_cluster()


@pytest.fixture(scope="module")
def investigation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_investigation(
        tmp_path_factory.mktemp("slurm") / "study",
        PYPROJECT,
        {
            "study.__init__": "",
            "study.square": STEP,
        },
    )
    return git_init(root)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ``sitecustomize`` logging every process a Python started with it starts (``spawned.log``)."""
    site = tmp_path_factory.mktemp("site")
    (site / "sitecustomize.py").write_text(SPAWN_LOG, encoding="utf-8")
    return site


@pytest.fixture(scope="module")
def on_slurm(investigation: Path, cluster: SlurmCluster, site: Path) -> Any:
    """A: the sweep as one Slurm job array."""
    return run_pytest(
        investigation,
        "--mitosis",
        "--mitosis-executor=slurm",
        "--mitosis-slurm",
        "throttle=2",
        "--mitosis-seed",
        "7",
        "-v",
        env=_env(
            cluster,
            PYTHONPATH=os.pathsep.join(filter(None, [str(site), os.environ.get("PYTHONPATH")])),
            SPAWN_LOG=str(site / "spawned.log"),
        ),
    )


def test_the_session_starts_no_kernel_and_no_helper_where_it_runs(on_slurm: Any, site: Path) -> None:
    """A login node is shared: the session runs Slurm's commands and git there, nothing of its trials."""
    lines = (site / "spawned.log").read_text(encoding="utf-8").splitlines()
    session = {line.split()[0] for line in lines if "sbatch" in line}
    assert len(session) == 1, lines
    own = [line for line in lines if line.split()[0] in session]
    assert not [line for line in own if "python" in line or "os.fork" in line], own
    assert any("scontrol" in line for line in own)
    jobs = [line for line in lines if line.split()[0] not in session]
    assert any("ipykernel" in line or "python" in line for line in jobs), lines  # the kernels start in the jobs


@pytest.fixture(scope="module")
def locally(investigation: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Any]:
    """B: the same sweep with the local executor, in a clone at the same commit."""
    clone = _clone(investigation, tmp_path_factory.mktemp("local"))
    return clone, run_pytest(clone, "--mitosis", "--mitosis-seed", "7", "-v")


def test_a_sweep_is_one_job_array_with_its_throttle(on_slurm: Any, investigation: Path, cluster: SlurmCluster) -> None:
    assert on_slurm.ret == 1, on_slurm.out
    assert "5 passed, 1 failed" in on_slurm.out or "1 failed, 5 passed" in on_slurm.out, on_slurm.out
    rows = _rows(investigation)
    assert len(rows) == 6
    jobs = {r["id"]: json.loads(r["job"]) for r in ({**row, "id": name} for name, row in rows.items())}
    arrays = {job["array_job"] for job in jobs.values()}
    assert len(arrays) == 1, jobs  # one submission, not six
    (array,) = arrays
    assert sorted(job["task"] for job in jobs.values()) == list(range(6))
    for job in jobs.values():
        assert job["executor"] == "slurm"
        assert job["job"] == f"{array}_{job['task']}"
        assert job["node"] == cluster.node
        assert job["partition"] == cluster.partition
        assert job["state"] == "COMPLETED"
        assert job["restarts"] == 0
        assert "cpu=1" in job["allocation"]
    scripts = list((investigation / "trials" / ".slurm").glob("*/job.sh"))
    assert len(scripts) == 1
    script = scripts[0].read_text()
    assert "#SBATCH --array=0-5%2" in script
    assert "#SBATCH --time=10" in script
    assert f"mitosis: submitted to Slurm as job {array} (6 trials)" in on_slurm.out


def test_slurm_trials_are_recorded_as_local_ones(on_slurm: Any, locally: tuple[Path, Any], investigation: Path) -> None:
    clone, local = locally
    assert local.ret == 1, local.out
    remote, here = _rows(investigation), _rows(clone)
    assert set(remote) == set(here) == {f"square[{v}]" for v in ("a", "b", "c", "d", "e", "boom")}
    for name, row in here.items():
        for field in FIELDS:
            mine, theirs = row[field], remote[name][field]
            if field == "message" and theirs is not None:  # paths name the checkout, the notebook's its key
                mine = mine.split("notebook: ")[0].replace(str(clone), "ROOT")
                theirs = theirs.split("notebook: ")[0].replace(str(investigation), "ROOT")
            assert mine == theirs, (name, field, mine, theirs)
        assert row["job"] is None
    assert remote["square[c]"]["main"] == "9.5"
    assert "boom in the step" in remote["square[boom]"]["message"]
    for row in remote.values():  # the same files as a local trial's
        folder = Path(row["folder"])
        assert (folder / f"{row['name']}.ipynb").is_file()
        assert (folder / f"{row['name']}.html").is_file()
        assert (folder / "trial.yaml").is_file()
        assert folder.parent == investigation / "trials"


def test_junit_and_history_show_the_job(on_slurm: Any, investigation: Path, cluster: SlurmCluster) -> None:
    assert on_slurm.properties("square[c]")["main"] == "9.5"
    job = json.loads(_rows(investigation)["square[c]"]["job"])
    assert on_slurm.properties("square[c]")["mitosis.job"] == f"{job['job']}@{cluster.node}"
    (outcome,) = (investigation / "trials" / ".slurm").glob(f"*/outcomes/{job['task']}.json")
    ran = json.loads(outcome.read_text())["seconds"]  # the trial's own time in its job, not pytest's wait
    assert float(on_slurm.testcase("square[c]").get("time", "")) == pytest.approx(ran, abs=0.002)
    history = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "history", "--json"],
        cwd=investigation,
        capture_output=True,
        text=True,
        check=True,
    )
    listed = json.loads(history.stdout)
    assert all(entry["job"]["executor"] == "slurm" for entry in listed), listed[0]


def test_bad_resource_names_the_file_and_key(investigation: Path, cluster: SlurmCluster, tmp_path: Path) -> None:
    clone = _clone(investigation, tmp_path)
    pyproject = clone / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('time = "10"', 'time = "10\\n#SBATCH --uid=0"'))
    git(clone, "commit", "-qam", "bad time")
    done = _on_slurm(clone, cluster, junit=False)
    assert done.ret == 2, done.out  # a collection error, as every error of pyproject.toml
    assert f"{pyproject}: [tool.mitosis.slurm]: time:" in done.out, done.out
    assert "line break" in done.out
    assert not (clone / "trials" / ".slurm").exists()
    bad = _on_slurm(clone, cluster, "--mitosis-slurm", "mem=lots", junit=False)
    assert bad.ret == 4, bad.out
    assert '--mitosis-slurm: mem: expected a memory size such as "4G" or "500M", found \'lots\'' in bad.out


def test_a_partition_slurm_does_not_know_takes_no_record(
    investigation: Path, cluster: SlurmCluster, tmp_path: Path
) -> None:
    clone = _clone(investigation, tmp_path)
    done = _on_slurm(
        clone, cluster, "--mitosis-slurm", "partition=nosuch", "pyproject.toml::square[a]", "pyproject.toml::square[b]"
    )
    assert done.ret == 1, done.out
    # asked of Slurm (sbatch --test-only) before any record is taken: no record, no iteration number used
    assert not (clone / "trials" / "mitosis.sqlite").exists() or _rows(clone) == {}
    for name in ("square[a]", "square[b]"):
        message = done.testcase(name).find("error")  # refused at setup, as a local refusal is
        assert message is not None, done.out
        text = message.get("message", "")
        assert text.startswith('failed on setup with "Failed: Slurm refuses the job array (partition=nosuch'), text
        assert "sbatch: error: invalid partition specified: nosuch" in text, text
    again = run_pytest(clone, "--mitosis", "pyproject.toml::square[a]", junit=False)  # locally: iteration 1
    assert again.ret == 0, again.out
    assert {r["iteration"] for r in _rows(clone).values()} == {1}


def test_refusals_before_anything_runs(investigation: Path, cluster: SlurmCluster, tmp_path: Path) -> None:
    distributed = _on_slurm(investigation, cluster, "-n", "2", junit=False)
    assert distributed.ret == 4, distributed.out
    assert "--mitosis-executor=slurm runs every trial as a Slurm job already" in distributed.out
    bin_dir = tmp_path / "bin"  # the interpreter and git, but not Slurm's commands
    bin_dir.mkdir()
    (bin_dir / "git").symlink_to(shutil.which("git") or "/usr/bin/git")
    bare = {**_env(cluster), "PATH": f"{Path(sys.executable).parent}:{bin_dir}"}
    missing = run_pytest(investigation, "--mitosis", "--mitosis-executor=slurm", env=bare, junit=False)
    assert missing.ret == 4, missing.out
    assert "--mitosis-executor=slurm: sbatch is not on PATH" in missing.out
    no_git = {**bare, "PATH": str(Path(sys.executable).parent)}  # and without git: a usage error, not a traceback
    nothing = run_pytest(investigation, "--mitosis", env=no_git, junit=False)
    assert nothing.ret == 4, nothing.out
    assert "ERROR: git is not on PATH" in nothing.out and "INTERNALERROR" not in nothing.out
    stray = run_pytest(investigation, "--mitosis", "--mitosis-slurm", "time=5", env=_env(cluster), junit=False)
    assert stray.ret == 4, stray.out
    assert "--mitosis-slurm sets the resources of Slurm jobs: add --mitosis-executor=slurm" in stray.out


def test_the_session_itself_as_a_slurm_job(investigation: Path, cluster: SlurmCluster, tmp_path: Path) -> None:
    """C: the guide's wrapper: the session is a job; the user is gone; its trials are recorded."""
    clone = _clone(investigation, tmp_path)
    command = (
        f"{sys.executable} -m pytest -p no:cacheprovider --mitosis --mitosis-executor=slurm "
        "'pyproject.toml::square[c]' 'pyproject.toml::square[d]'"
    )
    submitted = subprocess.run(
        ["sbatch", "--wait", "--job-name=sweep", f"--output={tmp_path / 'sweep.log'}", f"--wrap={command}"],
        cwd=clone,
        env=_env(cluster),
        capture_output=True,
        text=True,
        timeout=300,
    )
    log = (tmp_path / "sweep.log").read_text() if (tmp_path / "sweep.log").exists() else ""
    assert submitted.returncode == 0, submitted.stderr + log
    assert "2 passed" in log, log
    rows = _rows(clone)
    assert {r["status"] for r in rows.values()} == {"passed"}
    assert all(json.loads(r["job"])["array_job"] for r in rows.values())
    assert os.environ.get("SLURM_JOB_ID") is None  # the suite itself is not a job (the fixture's env is clean)


def test_an_edit_while_tasks_run_or_wait_fails_them_and_stops_the_sweep(
    cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """The record names the code that ran: each task checks its files against the commit, on its node."""
    root = held_investigation(tmp_path_factory.mktemp("slurm-edit") / "study", 3)
    markers = root / "markers"
    (markers / "hold-n0").write_text("")
    proc, log = start_session(root, cluster, "--mitosis-slurm", "throttle=1")
    wait_until("n0 running", lambda: (markers / "started-n0").exists(), proc, log.read_text)
    step = root / "study" / "fit.py"
    step.write_text(step.read_text() + "\n# an edit made while the sweep runs\n")
    (markers / "hold-n0").unlink()
    assert proc.wait(timeout=PATIENCE) == 1, log.read_text()
    said = log.read_text()
    assert "mitosis: the investigation's code changed while the sweep ran (study/fit.py)" in said, said
    rows = _rows(root)
    assert rows["fit[n0]"]["status"] == "failed"
    assert rows["fit[n0]"]["message"].startswith("study/fit.py (modified) is not as in commit "), rows["fit[n0]"]
    assert "(the investigation's code changed while the trial ran)" in rows["fit[n0]"]["message"]
    for name in ("fit[n1]", "fit[n2]"):  # refused on its node before it ran, or cancelled by the stopping session
        assert rows[name]["status"] in ("failed", "interrupted"), rows[name]
        assert (
            "(the investigation's code changed before its Slurm job started)" in rows[name]["message"]
            or "the sweep stopped: the investigation's code changed" in rows[name]["message"]
        ), rows[name]
    assert not [t for t in cluster.run("squeue", "-h", "-o", "%i").stdout.split() if t], "tasks left in the queue"


def test_a_job_that_ends_before_its_trial_says_so(investigation: Path, cluster: SlurmCluster, tmp_path: Path) -> None:
    """A setup line that fails (``set -e``): the job ends before the trial; Slurm's word, the job's output."""
    clone = _clone(investigation, tmp_path)
    done = _on_slurm(clone, cluster, "--mitosis-slurm", "setup=false", "pyproject.toml::square[a]")
    assert done.ret == 1, done.out
    (row,) = _rows(clone).values()
    assert row["status"] == "failed"
    assert "ended (exited with code 1) without an outcome: the job did not get that far. Its output: " in row["message"]
    assert "\n    None\n" not in done.out  # no page to name: the summary names none
    assert "mitosis.html" not in done.properties("square[a]")
