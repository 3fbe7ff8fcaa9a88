"""Faults of a Slurm sweep as Slurm reports them (issue 27), on a real single-node cluster.

One session of four trials ``fit[n0]``..``fit[n3]`` whose step waits while its ``hold-nK`` file
exists (the test decides when a trial ends), submitted as one array with ``throttle=3``:

1. n0, n1 and n2 run, n3 waits: ``status`` shows it pending with Slurm's reason (the throttle);
2. ``scancel`` of n0's task from outside: n0 is recorded failed with Slurm's word, n3 starts;
3. ``scontrol requeue`` of n1's task while it runs: it runs again; released, it passes with one
   record whose job says it was requeued once;
   Meanwhile n2 is released and ends: it is recorded at once, while pytest still waits for n1;
4. Ctrl-C on the session while n3 runs: exit 2, n3 recorded ``interrupted``, its job cancelled (Slurm
   knows none of the array's tasks as pending or running).

Beside it, from the start, a second session whose one trial never ends by itself runs over its job's
time limit (``time=1``): Slurm's smallest limit is a minute, checked about every 30 s, so that job ends
``TIMEOUT`` 60 to 90 s after it starts; it runs while the story does, not after it.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import PATIENCE, clean_env, held_investigation, wait_until
from .slurm_cluster import SlurmCluster, own_cluster, start_session

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    yield from own_cluster()


def _rows(root: Path) -> dict[str, dict[str, Any]]:
    path = root / "trials" / "mitosis.sqlite"
    if not path.exists():
        return {}
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return {r["nodeid"].rsplit("::", 1)[-1]: dict(r) for r in db.execute("SELECT * FROM trials")}


def _status(root: Path, env: dict[str, str]) -> dict[str, Any]:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "status", "--json"], cwd=root, env=env, capture_output=True, text=True
    )
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {}


def _tasks(cluster: SlurmCluster) -> dict[str, str]:
    """Every task Slurm knows as pending or running: ``{"123_4": "RUNNING"}`` (pending ranges expanded by squeue -r)."""
    done = cluster.run("squeue", "-h", "-r", "-o", "%i %T")
    return dict(line.split() for line in done.stdout.splitlines() if line.strip())


@pytest.fixture(scope="module")
def over_time(cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    """A session started first, whose trial only Slurm's time limit ends (see the module's docstring).

    Started with ``Popen`` rather than ``background``: it outlives the test that starts it (the story's),
    so this fixture, not the per-test clean-up, stops it if it is still running at the module's end.
    """
    root = held_investigation(tmp_path_factory.mktemp("slurm-timeout") / "study", 1)
    (root / "markers" / "hold-n0").write_text("")  # never released
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "--mitosis-executor=slurm"]
    env = clean_env(SLURM_CONF=cluster.env["SLURM_CONF"])
    proc = subprocess.Popen(
        [*argv, "--mitosis-slurm", "time=1"],
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        yield root, proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()


@pytest.fixture(scope="module")
def story(cluster: SlurmCluster, over_time: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = held_investigation(tmp_path_factory.mktemp("slurm-faults") / "study", 4)
    markers = root / "markers"
    for n in range(4):
        (markers / f"hold-n{n}").write_text("")
    env = clean_env(SLURM_CONF=cluster.env["SLURM_CONF"])
    proc, log = start_session(root, cluster, "--mitosis-slurm", "throttle=3", "-o", "mitosis_heartbeat_every=0.2", "-v")
    said = log.read_text
    seen: dict[str, Any] = {}
    wait_until("n0, n1 and n2 running", lambda: all((markers / f"started-n{n}").exists() for n in range(3)), proc, said)

    def pending() -> Any:
        trials = _status(root, env).get("trials") or []
        states = {str(t.get("nodeid", "")).rsplit("::", 1)[-1]: t for t in trials}
        return states if sum(1 for t in trials if t.get("phase") == "pending") == 1 else None

    seen["status"] = wait_until("a pending trial in status", pending, proc, said)
    queue = _tasks(cluster)
    seen["queue"] = queue
    array = next(iter(queue)).split("_")[0]
    seen["array"] = array
    # 2. scancel from outside
    cluster.run("scancel", f"{array}_0")
    wait_until("n3 started", lambda: (markers / "started-n3").exists(), proc, said)
    # n2 ends while pytest still waits for n1: recorded at once, not in pytest's order
    (markers / "hold-n2").unlink()
    wait_until("n2 recorded before n1", lambda: _rows(root).get("fit[n2]", {}).get("status") == "passed", proc, said)
    seen["n1 while n2 was recorded"] = _rows(root)["fit[n1]"]["status"]
    # 3. requeue n1 while it runs
    (markers / "started-n1").unlink()
    cluster.run("scontrol", "requeue", f"{array}_1")

    def held_by_begin_time() -> bool:
        return "Reason=BeginTime" in cluster.run("scontrol", "show", "job", "-o", f"{array}_1").stdout

    wait_until("n1 held after its requeue", held_by_begin_time, proc, said)  # then Slurm starts it again itself
    wait_until("n1 started again", lambda: (markers / "started-n1").exists(), proc, said)
    (markers / "hold-n1").unlink()
    wait_until("n1 recorded", lambda: _rows(root).get("fit[n1]", {}).get("status") == "passed", proc, said)
    # 4. Ctrl-C on the session while it waits for n3 (its setup passed: pytest is in our wait, not its own code)
    wait_until("the session waiting for n3", lambda: "fit[n3]: started" in said(), proc, said)
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=PATIENCE)
    seen["ret"] = proc.returncode
    seen["out"] = said()
    seen["rows"] = _rows(root)
    seen["left"] = _tasks(cluster)
    seen["root"] = root
    return seen


def test_pending_tasks_show_slurms_reason(story: dict[str, Any]) -> None:
    status = story["status"]
    assert {name for name, t in status.items() if t["phase"] == "pending"} == {"fit[n3]"}, status
    assert status["fit[n3]"]["reason"] == "JobArrayTaskLimit", status
    assert all(status[name].get("node") for name in ("fit[n0]", "fit[n1]", "fit[n2]")), status
    assert all(t["alive"] for t in status.values()), status


def test_scancel_from_outside_is_a_failure_with_slurms_reason(story: dict[str, Any]) -> None:
    row = story["rows"]["fit[n0]"]
    assert row["status"] == "failed", row
    assert f"Slurm ended its job {story['array']}_0 on " in row["message"], row["message"]
    assert "cancel" in row["message"].lower(), row["message"]
    assert json.loads(row["job"])["state"] == "CANCELLED"


def test_a_requeued_task_leaves_one_record(story: dict[str, Any]) -> None:
    rows = story["rows"]
    assert len(rows) == 4, rows
    row = rows["fit[n1]"]
    assert row["status"] == "passed", row
    job = json.loads(row["job"])
    assert job["restarts"] == 1, job
    assert job["job"] == f"{story['array']}_1"
    assert len(list((story["root"] / "trials").glob(f"{row['name']}_*"))) == 1


def test_ctrl_c_cancels_the_jobs_and_records_them_interrupted(story: dict[str, Any]) -> None:
    assert story["ret"] == 2, story["out"]
    rows = story["rows"]
    assert rows["fit[n3]"]["status"] == "interrupted", rows["fit[n3]"]
    assert "the session was interrupted (Ctrl-C or SIGTERM): its Slurm job" in rows["fit[n3]"]["message"]
    assert rows["fit[n2]"]["status"] == "passed", rows["fit[n2]"]
    assert not [task for task in story["left"] if task.startswith(story["array"])], story["left"]
    assert "running" not in {r["status"] for r in rows.values()}


def test_a_job_over_its_time_limit_is_a_failure_with_slurms_reason(
    over_time: tuple[Path, Any], cluster: SlurmCluster
) -> None:
    root, proc = over_time
    out, _ = proc.communicate(timeout=300)  # Slurm's minute, its 30 s check, then the recording
    assert proc.returncode == 1, out
    (row,) = _rows(root).values()
    assert row["status"] == "failed"
    job = json.loads(row["job"])
    assert job["state"] == "TIMEOUT", job
    assert f"Slurm ended its job {job['job']} on {cluster.node}: time limit (00:01:00) reached" in row["message"]
    assert "time limit (00:01:00) reached" in out


def test_a_task_that_ends_is_recorded_at_once_whatever_pytest_waits_for(story: dict[str, Any]) -> None:
    assert story["n1 while n2 was recorded"] == "running"  # pytest waited for n1, n2 was recorded meanwhile
    row = story["rows"]["fit[n2]"]
    outcome = story["root"] / "trials" / ".slurm"
    (written,) = [p for p in outcome.glob("*/outcomes/2.json")]
    assert row["ended"] == pytest.approx(written.stat().st_mtime)  # when it ended in its job, not when recorded
