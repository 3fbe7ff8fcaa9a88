"""The fault matrix (issue 24): a fault in the middle of a sweep, then the sweep resumed; the record stays true.

Each case runs a real sweep of four trials whose step waits while a ``hold-N`` file exists, causes
one fault while trial n1 (or two trials under ``-n 2``) runs, then continues the sweep with
``--mitosis-resume`` as a user would. After both sessions, whatever the fault, the same things
must hold (:func:`agree`): no record is left ``running``; every passed record has a whole folder
whose ``outcome.json`` says the same; every trial folder has its record; no staging or pending
folder is left; the report lists every trial; no process of the sweep is left; and every trial
passed at the commit once the sweep was resumed: nothing is lost.

The faults needing more than a session (a PostgreSQL server stopped, a full disk, a lost COMMIT
reply, a hostile worker) have their own modules: see docs/reliability.md.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from .conftest import PATIENCE, background, clean_env, git, held_investigation, wait_until

pytestmark = pytest.mark.kernel


def _children(pid: int) -> list[int]:
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as stream:
            return [int(p) for p in stream.read().split()]
    except OSError:
        return []


def _cmdline(pid: int) -> bytes:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            return stream.read()
    except OSError:
        return b""


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for child in _children(todo.pop()):
            found.append(child)
            todo.append(child)
    return found


def kill_pytest(proc: subprocess.Popen[str], root: Path) -> None:
    proc.send_signal(signal.SIGKILL)


def sigterm(proc: subprocess.Popen[str], root: Path) -> None:
    proc.send_signal(signal.SIGTERM)


def kill_warm_parent(proc: subprocess.Popen[str], root: Path) -> None:
    # pytest's own child (the kernels forked from it carry its command line too)
    (parent,) = [p for p in _children(proc.pid) if b"pytest_mitosis.execution.forkparent" in _cmdline(p)]
    os.kill(parent, signal.SIGKILL)


def kill_a_worker(proc: subprocess.Popen[str], root: Path) -> None:
    """The worker that runs n1: its record's pid (the kernel itself is the shared warm parent's child)."""
    (worker,) = [r["pid"] for r in _rows(root) if r["variants"] == "n1" and r["status"] == "running"]
    assert worker in _children(proc.pid)
    os.kill(worker, signal.SIGKILL)


#: (fault, extra options, what the faulty session exits with)
FAULTS: dict[str, tuple[Callable[[subprocess.Popen[str], Path], None], tuple[str, ...], set[int]]] = {
    "kill pytest": (kill_pytest, (), {-signal.SIGKILL}),
    "SIGTERM": (sigterm, (), {2}),
    "kill the warm parent": (kill_warm_parent, (), {0, 1}),
    "kill an xdist worker": (kill_a_worker, ("-n", "2"), {1}),
}

#: the held step, also writing its kernel's pid once it runs
STEP_PID = """
import os
from pathlib import Path

_run = run


def run(n):
    Path("markers", f"pid-n{n}").write_text(str(os.getpid()))
    return _run(n)
"""


def _rows(root: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(root / "trials" / "mitosis.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM trials ORDER BY started")]


def _ours(root: Path) -> list[int]:
    """Processes still running in the investigation (a kernel, a child of a step): none may be left."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                if os.readlink(f"/proc/{name}/cwd") == str(root):
                    found.append(int(name))
            except OSError:
                continue
    return found


def agree(root: Path, commit: str) -> None:
    """The store, the trial folders and the report say the same thing, and nothing is left behind or lost."""
    rows = _rows(root)
    assert rows and not [r for r in rows if r["status"] == "running"], rows
    trials = root / "trials"
    for row in rows:
        if row["status"] == "passed":
            folder = Path(row["folder"])
            outcome = json.loads((folder / "outcome.json").read_text())
            assert outcome["status"] == "passed" and outcome["main"] == json.loads(row["main"]), (row, outcome)
            assert (folder / "trial.yaml").is_file() and (folder / f"{row['name']}.html").is_file()
    recorded = {Path(r["folder"]).name for r in rows if r["folder"]}
    on_disk = {p.name for p in trials.glob("trial_*")}
    assert on_disk <= recorded, f"folders without a record: {on_disk - recorded}"
    assert not list((trials / ".staging").glob("*")), list((trials / ".staging").glob("*"))
    assert not (trials / ".pending").exists() or not list((trials / ".pending").iterdir())
    index = (trials / "report" / "index.html").read_text()
    assert all(r["key"] in index for r in rows), "the report lists every trial"
    assert {r["variants"] for r in rows if r["status"] == "passed" and r["commit"] == commit} == {
        "n0",
        "n1",
        "n2",
        "n3",
    }, "every trial passed at the commit once the sweep was resumed: nothing lost"
    assert _ours(root) == [], "no process of the sweep is left"


@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_mid_sweep_then_resume_leaves_a_true_record(tmp_path: Path, fault: str) -> None:
    cause, options, exits = FAULTS[fault]
    root = held_investigation(tmp_path / "inv", 4)
    fit = root / "study" / "fit.py"
    fit.write_text(fit.read_text() + STEP_PID)
    git(root, "commit", "-qam", "the step says who runs it")
    commit = git(root, "rev-parse", "HEAD").strip()
    (root / "markers" / "hold-n1").write_text("")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", *options]
    proc = background(argv, cwd=root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until("trial n1 running", lambda: (root / "markers" / "pid-n1").exists(), proc)
    cause(proc, root)
    if fault == "kill the warm parent":  # the running trial goes on (its kernel lives), the next ones spawn
        (root / "markers" / "hold-n1").unlink()
    out, _ = proc.communicate(timeout=PATIENCE)
    assert proc.returncode in exits, out
    (root / "markers" / "hold-n1").unlink(missing_ok=True)
    resumed = subprocess.run(
        [*argv[: -len(options) or None], "--mitosis-resume"],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "Traceback" not in out + resumed.stdout + resumed.stderr
    agree(root, commit)
