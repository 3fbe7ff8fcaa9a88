"""Under pytest-xdist the sweep size guard answers on the controller, before any worker starts.

The controller counts the trials itself (pyproject.toml, the options, pytest's own ``-k``, ``-m``
and ``--deselect``): a session over the limit is refused at once with the message a session
without ``-n`` gives, and no process is started (an audit hook in a ``sitecustomize`` logs every
process the session starts). Where the controller cannot count exactly (a ``conftest.py`` that
deselects), the workers' collection answers, as before.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from .conftest import Run, clean_env, git_init, run_pytest, write_investigation

#: a ``sitecustomize`` that appends every process this Python starts (or forks) to ``$SPAWN_LOG``
SPAWN_LOG = """
import os, sys

def _log(event, args):
    if event in ("subprocess.Popen", "os.posix_spawn", "os.exec", "os.fork", "os.forkpty"):
        with open(os.environ["SPAWN_LOG"], "a", encoding="utf-8") as log:
            log.write(f"{os.getpid()} {event} {args[1] if len(args) > 1 else ''}\\n")

if os.environ.get("SPAWN_LOG"):
    sys.addaudithook(_log)
"""

TRIVIAL = """
lookup = {"i": {f"i{i}": i for i in range(120)}}


def run(i):
    return {"main": float(i)}
"""

TRIVIAL_PYPROJECT = """
[tool.mitosis.steps]
trivial = ["study:run", "study:lookup"]

[tool.pytest.ini_options]
"""


def error_block(out: str) -> str:
    """The guard's message as the user reads it: from ``ERROR: mitosis:`` to the end of its last line."""
    start = out.index("ERROR: mitosis: this session would run")
    end = out.index("without running any.", start) + len("without running any.")
    return out[start:end]


def spawned(log: Path) -> list[str]:
    """The processes a session started that are ours or pytest-xdist's: Pythons (workers, the warm parent,
    the HTML helper, kernels) and forks. What other plugins run (pytest-metadata's ``git``) is left out."""
    lines = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return [line for line in lines if sys.executable in line or "python" in line or " os.fork" in line]


@pytest.fixture(scope="module")
def trivial(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str], Path]:
    """120 trivial trials in a git repository, and an environment that logs every process started."""
    base = tmp_path_factory.mktemp("guardfirst")
    root = git_init(write_investigation(base / "study", TRIVIAL_PYPROJECT, {"study": TRIVIAL}))
    site = base / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(SPAWN_LOG, encoding="utf-8")
    log = base / "spawned.log"
    return root, clean_env(PYTHONPATH=str(site), SPAWN_LOG=str(log)), log


def _run(root: Path, env: dict[str, str], log: Path, *args: str, **extra: str) -> tuple[Run, list[str]]:
    log.unlink(missing_ok=True)
    run = run_pytest(root, "--mitosis", *args, env={**env, **extra}, junit=False)
    return run, spawned(log)


def test_over_the_limit_is_refused_before_any_worker_starts(trivial: tuple[Path, dict[str, str], Path]) -> None:
    root, env, log = trivial
    alone, _ = _run(root, env, log, "--mitosis-max-trials", "100")
    assert alone.ret == pytest.ExitCode.USAGE_ERROR, alone.out
    run, started = _run(root, env, log, "-n", "2", "--mitosis-max-trials", "100")
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    assert error_block(run.out) == error_block(alone.out)
    assert error_block(run.out) == (
        "ERROR: mitosis: this session would run 120 trials, more than mitosis_max_trials (100), and none was "
        'selected:\n  trivial  120 trials\nSelect the trials to run with -k "trivial and i0", -m, node ids '
        "('pyproject.toml::trivial[i0]') or --lf, or narrow axes with --mitosis-param STEP.PARAM=VARIANT; or raise "
        "the limit with --mitosis-max-trials 120 (ini mitosis_max_trials; 0: no limit). `pytest --mitosis "
        "--collect-only -q` lists the trials, `pytest --mitosis --mitosis-check` checks them without running any."
    )
    assert "[gw0]" not in run.out and "created:" not in run.out, run.out  # xdist never set up a worker
    assert started == [], started  # no worker, no warm parent, no HTML helper, no kernel
    assert not (root / "trials").exists()


def test_a_keyword_from_addopts_is_counted_and_an_accepted_selection_runs(
    trivial: tuple[Path, dict[str, str], Path],
) -> None:
    """``-k`` from PYTEST_ADDOPTS is no choice of these trials (the guard applies) but selects them: the
    controller counts the 3 it keeps, refuses them under a limit of 2, and lets them run under 100."""
    root, env, log = trivial
    addopts = "-k 'i119 or i118 or i117'"
    run, started = _run(root, env, log, "-n", "2", "--mitosis-max-trials=2", PYTEST_ADDOPTS=addopts)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    assert "would run 3 trials, more than mitosis_max_trials (2)" in run.out and "  trivial  3 trials" in run.out
    assert started == [], started
    run, started = _run(root, env, log, "-n", "2", "--mitosis-max-trials=100", PYTEST_ADDOPTS=addopts)
    assert run.ret == pytest.ExitCode.OK, run.out
    assert "3 passed" in run.out and "mitosis_max_trials" not in run.out
    assert any("exec(eval(" in line for line in started), started  # the workers did start this time
    kept = sorted(p.name.rsplit("-", 1)[0] for p in (root / "trials").glob("trial_*"))
    assert kept == ["trial_trivial-i117", "trial_trivial-i118", "trial_trivial-i119"], kept


# -- the count is pytest's: several -k, -m and --deselect against pytest's own collection ---------------

LAB_MODULE = """
lookup = {
    "frequency": {"fast": 10, "slow": 1, "medium": 5},
    "a": {f"a{i}": i for i in range(4)},
    "b": {"low": 0.1, "high": 0.9, "Mid": 0.5},
}


def sine(frequency):
    return {"main": frequency}


def grid(a, b):
    return {"main": a * b}
"""

LAB_PYPROJECT = """
[tool.mitosis.steps]
sine = ["lab_steps:sine", "lab_steps:lookup"]
grid = ["lab_steps:grid", "lab_steps:lookup"]
"""


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A rootdir (its pytest.ini) with the investigation in ``lab/``: ``-k lab`` matches its directory's name."""
    root = tmp_path_factory.mktemp("keywords")
    write_investigation(root / "lab", LAB_PYPROJECT, {"lab_steps": LAB_MODULE})
    (root / "pytest.ini").write_text(
        "[pytest]\nmitosis_config = lab/pyproject.toml\nmitosis_max_trials = 1\npythonpath = lab\n", encoding="utf-8"
    )
    return root


@pytest.mark.parametrize(
    "addopts",
    [
        # each a rule of pytest's matching: a folder's name, case-insensitive words, and/or/not with
        # parentheses, a marker, --deselect (the suite's time allows five pytest pairs, not more)
        "-k lab",
        "-k 'MEDIUM or a1'",
        "-k 'grid and (low or mid) and not a3'",
        "-m 'mitosis and not slow'",
        "-k grid --deselect 'lab/pyproject.toml::grid[a0-low]' --deselect lab/pyproject.toml::grid[a1",
    ],
)
def test_the_controller_counts_what_pytest_collects(lab: Path, addopts: str) -> None:
    env = clean_env(PYTEST_ADDOPTS=addopts)
    collected = run_pytest(lab, "--mitosis", "--collect-only", "-q", env=env, junit=False)
    ids = [line for line in collected.out.splitlines() if line.startswith("lab/pyproject.toml::")]
    assert len(ids) >= 2, collected.out  # over the limit of 1: the guard has something to refuse
    alone = run_pytest(lab, "--mitosis", env=env, junit=False)
    assert f"would run {len(ids)} trials" in alone.out, alone.out
    run = run_pytest(lab, "--mitosis", "-n", "2", env=env, junit=False)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    assert error_block(run.out) == error_block(alone.out)
    assert "created:" not in run.out, run.out  # answered on the controller


def test_a_conftest_that_deselects_leaves_the_count_to_the_workers(lab: Path, tmp_path: Path) -> None:
    """The controller cannot know what a conftest's pytest_collection_modifyitems keeps: the workers' collection
    answers (after they started), with the count of a session without -n."""
    root = tmp_path / "deselecting"
    write_investigation(root / "lab", LAB_PYPROJECT, {"lab_steps": LAB_MODULE})
    (root / "pytest.ini").write_text((lab / "pytest.ini").read_text(encoding="utf-8"), encoding="utf-8")
    (root / "conftest.py").write_text(
        "def pytest_collection_modifyitems(config, items):\n"
        "    keep = [i for i in items if 'grid' not in i.name]\n"
        "    config.hook.pytest_deselected(items=[i for i in items if i not in keep])\n"
        "    items[:] = keep\n",
        encoding="utf-8",
    )
    alone = run_pytest(root, "--mitosis", junit=False)
    assert "would run 3 trials" in alone.out, alone.out
    run = run_pytest(root, "--mitosis", "-n", "2", junit=False)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    assert error_block(run.out) == error_block(alone.out)
    assert "created: 2/2 workers" in run.out, run.out  # the workers' collection answered


def test_the_private_matchers_are_those_of_the_installed_pytest() -> None:
    """keywords.py calls pytest's own -k/-m matchers (private): a pytest that changed them fails here, loudly."""
    from pytest_mitosis.pytest_layer.keywords import CHECKED_PYTEST, private_api_problem

    problem = private_api_problem()
    assert problem is None, (
        f"{problem}: keywords.py was written against pytest {CHECKED_PYTEST}; adapt _matchers and "
        "private_api_problem to this pytest (until then the xdist controller leaves the guard to its workers)"
    )
