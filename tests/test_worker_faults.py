"""Faults of xdist workers (issue 24): a worker killed while its trial runs.

One story of a real session over one investigation whose step waits while a ``hold-N`` file
exists (so the test decides when a trial is "running", without sleeping): ``-n 2`` over six
trials, the store named by ``--mitosis-store`` (not the trials folder's default); while trial n1
is held, its worker's process is killed with SIGKILL. xdist reports the item failed ("worker
'gwN' crashed") and replaces the worker; the other trials run.

What the user must find right after that session: the crashed trial recorded ``failed`` (not
``running`` until some later session), no staging folder, the summary's counts those of pytest,
no kernel left, and the end-of-session hint a command that works as printed.
"""

from __future__ import annotations

import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from typing import Any

import pytest

from .conftest import background, clean_env, git, git_init, write_investigation

pytestmark = pytest.mark.kernel

PATIENCE = 180.0

PYPROJECT = """
[tool.mitosis.steps]
fit = ["study.fit:run", "study.fit:lookup_dict"]
"""

FIT = """
import os
import time
from pathlib import Path

lookup_dict = {"n": {f"n{i}": i for i in range(6)}}


def run(n):
    markers = Path("markers")
    # the pytest process (the xdist worker) that started this kernel: not always its parent process, since a
    # forked kernel is a child of the session's warm parent
    (markers / f"worker-n{n}").write_text(f"{os.environ['JPY_PARENT_PID']} {os.getpid()}")
    (markers / f"started-n{n}").write_text("")
    while (markers / f"hold-n{n}").exists():
        time.sleep(0.05)
    return {"main": float(n)}
"""


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            return stream.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


@pytest.fixture(scope="module")
def crash(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    base = tmp_path_factory.mktemp("crash")
    root = write_investigation(base / "inv", PYPROJECT, {"study.__init__": "", "study.fit": FIT})
    (root / "markers").mkdir()
    git_init(root)
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nmarkers/\n", encoding="utf-8")
    git(root, "commit", "-qam", "ignore the markers")
    lab = base / "lab" / "lab.sqlite"  # not the trials folder's store: the hint must name it
    (root / "markers" / "hold-n1").write_text("")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "-n", "2"]
    argv.append(f"--mitosis-store=sqlite:///{lab}")
    proc = background(argv, cwd=root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    started = root / "markers" / "worker-n1"
    deadline = time.monotonic() + PATIENCE
    while not (started.exists() and started.read_text()):
        if proc.poll() is not None:
            pytest.fail(f"pytest ended before trial n1 started:\n{proc.communicate()[0]}")
        assert time.monotonic() < deadline, "trial n1 did not start"
        time.sleep(0.05)
    worker, kernel = (int(pid) for pid in started.read_text().split())
    os.kill(worker, signal.SIGKILL)
    out, _ = proc.communicate(timeout=PATIENCE)
    found: dict[str, Any] = {"root": root, "lab": lab, "ret": proc.returncode, "out": out, "kernel": kernel}
    with sqlite3.connect(lab) as db:  # right after the session: before any other session opens the store
        db.row_factory = sqlite3.Row
        found["rows"] = [dict(r) for r in db.execute("SELECT * FROM trials ORDER BY started")]
        found["sessions"] = [dict(r) for r in db.execute("SELECT * FROM sessions")]
    staging = root / "trials" / ".staging"
    found["staging"] = sorted(p.name for p in staging.iterdir()) if staging.exists() else []
    (root / "markers" / "hold-n1").unlink()
    return found


def test_the_crashed_workers_trial_is_recorded_failed_at_once(crash: dict[str, Any]) -> None:
    assert crash["ret"] == 1, crash["out"]
    rows = {row["variants"]: row for row in crash["rows"]}
    assert sorted(rows) == [f"n{i}" for i in range(6)], crash["out"]
    crashed = rows.pop("n1")
    gateway = re.search(r"worker '(gw\d+)' crashed while running 'pyproject.toml::fit\[n1\]'", crash["out"])
    assert gateway is not None, crash["out"]
    assert crashed["status"] == "failed" and crashed["ended"] is not None
    assert crashed["message"] == (
        f"worker {gateway[1]} on host {socket.gethostname()} crashed while running this trial: its process ended "
        "before the trial finished (killed, out of memory, or a crash in native code)"
    )
    assert {row["status"] for row in rows.values()} == {"passed"}
    (session,) = crash["sessions"]
    assert (session["status"], session["exitstatus"]) == ("ended", 1)
    assert {row["session"] for row in crash["rows"]} == {session["key"]}
    assert (
        f"mitosis: trial {crashed['name']} (key {crashed['key']}) recorded failed: worker {gateway[1]}" in crash["out"]
    )


def test_no_staging_folder_and_no_kernel_is_left(crash: dict[str, Any]) -> None:
    assert crash["staging"] == [], "the crashed trial's staging folder was removed by the controller"
    deadline = time.monotonic() + PATIENCE  # a kernel watches its worker about every second
    while _alive(crash["kernel"]):
        assert time.monotonic() < deadline, "the crashed worker's kernel is still running"
        time.sleep(0.1)


def test_the_summary_counts_what_pytest_counts(crash: dict[str, Any]) -> None:
    out = crash["out"]
    pytest_line = re.findall(r"=+ (\d+ failed, \d+ passed) in ", out)
    assert pytest_line == ["1 failed, 5 passed"], out
    session = [line for line in out.splitlines() if line.startswith("mitosis session ")]
    assert len(session) == 1, out
    assert ": 6 trials (5 passed, 1 failed); " in session[0]
    crashed = next(row for row in crash["rows"] if row["variants"] == "n1")
    (line,) = [line for line in out.splitlines() if line.startswith("  fit[n1] ")]
    assert line.split()[1:4] == ["FAILED", f"#{crashed['iteration']}", "key"] and crashed["key"] in line


def test_the_session_hint_names_the_store_and_works_as_printed(crash: dict[str, Any]) -> None:
    (line,) = [line for line in crash["out"].splitlines() if line.startswith("mitosis session ")]
    key = line.split()[2].rstrip(":")
    hint = line.split("; ", 1)[1]
    assert hint == f"python -m pytest_mitosis --store sqlite:///{crash['lab']} history --session {key}"
    argv = shlex.split(hint)
    done = subprocess.run([sys.executable, *argv[1:]], cwd=crash["root"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert key in done.stdout and "fit" in done.stdout and "failed" in done.stdout
