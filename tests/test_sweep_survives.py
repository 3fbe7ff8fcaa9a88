"""A long sweep survives: signals, killed sessions, descriptors, a full disk, its own folders.

Every case runs pytest in a subprocess and does to it what a terminal, a batch scheduler or
a full disk does: SIGINT to the process group (Ctrl-C), SIGINT or SIGTERM to pytest alone,
SIGKILL, a tmpfs that fills up. The tests wait for a marker file that the step itself writes
(never for a fixed time), then assert what the user sees: exit code, pytest's interrupt
summary, the store's rows, files on disk, and what is *not* left behind.
"""

from __future__ import annotations

import json
import os
import re
import resource
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from .conftest import background, clean_env, git, git_init, run_pytest, write_investigation

STEPS = '''
import os
import time
from pathlib import Path

lookup = {"n": {"a": 1, "b": 2, "c": 3, "d": 4}}


def slow(n):
    """Variants a and b block (until a signal ends the trial); c and d return at once."""
    marker = Path(os.environ["MITOSIS_TEST_MARKERS"], f"started-{n}")
    staged = marker.parent.parent / f".{marker.name}"
    staged.write_text(str(os.getpid()))
    os.replace(staged, marker)  # whole: the test reads the pid as soon as the marker exists
    print("step started", flush=True)
    if n <= 2 or os.environ.get("MITOSIS_TEST_BLOCK_ALL"):
        time.sleep(600)
    return {"main": n}
'''

PYPROJECT = """
[tool.mitosis.steps]
slow = ["steps:slow", "steps:lookup"]
"""

PATIENCE = 180.0  # seconds to wait for a marker: generous, so a slow machine never fails a test


def investigation(base: Path) -> tuple[Path, Path, Path]:
    root = git_init(write_investigation(base / "study", PYPROJECT, {"steps": STEPS}))
    markers = base / "markers"
    markers.mkdir()
    # the kernels' private folders go to $TMPDIR: a short one of this test's own (under a deep
    # basetemp the socket paths would not fit a Unix socket, and pytest-mitosis would use /tmp)
    tmp = Path(tempfile.mkdtemp(prefix="mk-", dir="/tmp"))
    return root, markers, tmp


def start(
    root: Path, markers: Path, tmp: Path, *args: str, ignore_sigint: bool = False, **extra: str
) -> subprocess.Popen[str]:
    """pytest as its own process group (a terminal's foreground job, or a background job with SIGINT ignored)."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", *args]
    env = clean_env(MITOSIS_TEST_MARKERS=str(markers), TMPDIR=str(tmp), **extra)
    return background(
        argv,
        cwd=root,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_IGN)) if ignore_sigint else None,
    )


def wait_for(path: Path, proc: subprocess.Popen[str], count: int = 1) -> None:
    """Wait until ``path`` exists (or, with ``count``, until its folder holds that many files)."""
    deadline = time.monotonic() + PATIENCE
    while not (path.exists() if count == 1 else len(list(path.iterdir())) >= count):
        if proc.poll() is not None:
            out, _ = proc.communicate()
            pytest.fail(f"pytest ended before {path.name} appeared:\n{out}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            out, _ = proc.communicate()
            pytest.fail(f"{path.name} did not appear within {PATIENCE} s:\n{out}")
        time.sleep(0.05)


def ignores_sigint(pid: int) -> bool:
    """Whether the process ``pid`` ignores SIGINT now (the kernel's own record of its dispositions)."""
    (line,) = [line for line in Path(f"/proc/{pid}/status").read_text().splitlines() if line.startswith("SigIgn:")]
    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def gone(pid: int) -> bool:
    """No such process, or a zombie that nobody reaped yet (it holds nothing)."""
    try:
        state = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return True
    return "State:\tZ" in state


def wait_gone(pid: int) -> bool:
    deadline = time.monotonic() + PATIENCE
    while not gone(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def rows(root: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(f"file:{root / 'trials' / 'mitosis.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(
            "SELECT key, name, status, main, folder, message, session FROM trials ORDER BY started"
        ).fetchall()
    finally:
        db.close()


def sessions(root: Path) -> list[sqlite3.Row]:
    """Every session row, oldest first."""
    db = sqlite3.connect(f"file:{root / 'trials' / 'mitosis.sqlite'}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute("SELECT * FROM sessions ORDER BY started").fetchall()
    finally:
        db.close()


#: a ``sitecustomize`` (on PYTHONPATH) that holds the session's HTML helper as it opens a trial's page (in
#: staging) to write it: it creates ``writing-<page>`` in ``$MITOSIS_TEST_PAGES``, then waits while ``hold``
#: exists there. With ``$MITOSIS_TEST_HOLD_NOTEBOOK`` set, it holds the trial's notebook instead (``writing-<name>.ipynb``).
#: An audit hook on ``open``: the real helper runs, and the test decides when its file is written.
HOLD_PAGE = """
import os
import sys
import time

if "pytest_mitosis.execution.htmlworker" in sys.orig_argv:
    def _hold(event, args):
        if event != "open" or not isinstance(args[0], (str, os.PathLike)) or "w" not in str(args[1]):
            return
        path = os.fspath(args[0])
        if f"{os.sep}.staging{os.sep}" not in path:
            return
        name = os.path.basename(path)
        if os.environ.get("MITOSIS_TEST_HOLD_NOTEBOOK"):
            held = name if name.endswith(".ipynb") else None
        else:  # a page is written whole: to ".<page>.<pid>.tmp", then renamed
            held = name[1:].rsplit(".", 2)[0] if name.startswith(".") and ".html." in name else None
        if held:
            markers = os.environ["MITOSIS_TEST_PAGES"]
            with open(os.path.join(markers, "writing-" + held), "w"):
                pass
            while os.path.exists(os.path.join(markers, "hold")):
                time.sleep(0.01)

    sys.addaudithook(_hold)
"""


def held_pages(base: Path) -> tuple[Path, dict[str, str]]:
    """A folder of markers, held (``hold`` exists), and the environment that makes the HTML helper wait on it."""
    site = base / "site-hold"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HOLD_PAGE, encoding="utf-8")
    pages = base / "pages"
    pages.mkdir()
    (pages / "hold").write_text("")
    return pages, {"PYTHONPATH": str(site), "MITOSIS_TEST_PAGES": str(pages)}


NOISE = ("Task exception was never retrieved", "Exception ignored", "INTERNALERROR", "Traceback")


@pytest.mark.parametrize(
    ("how", "signum"),
    [("ctrl-c", signal.SIGINT), ("sigint", signal.SIGINT), ("sigterm", signal.SIGTERM)],
    ids=["ctrl-c-to-the-process-group", "sigint-to-pytest", "sigterm-to-pytest"],
)
def test_a_signal_stops_the_session_and_records_the_trial_as_interrupted(
    tmp_path: Path, how: str, signum: signal.Signals
) -> None:
    root, markers, tmp = investigation(tmp_path)
    proc = start(root, markers, tmp)
    wait_for(markers / "started-1", proc)
    kernel = int((markers / "started-1").read_text())
    if how == "ctrl-c":
        os.killpg(proc.pid, signum)
    else:
        proc.send_signal(signum)
    out, _ = proc.communicate(timeout=PATIENCE)

    assert proc.returncode == 2, out
    assert re.search(r"!+ KeyboardInterrupt !+", out), out
    assert not [noise for noise in NOISE if noise in out], out
    assert sorted(p.name for p in markers.iterdir()) == ["started-1"], "no further trial started"
    (row,) = rows(root)
    assert row["status"] == "interrupted"
    assert row["message"].startswith(f"interrupted by {signum.name} during step 'slow' (steps:slow)")
    assert re.search(rf"^  slow\[a\] +INTERRUPTED +#1 key {row['key']}", out, re.M), out
    folder = Path(row["folder"])
    notebook = json.loads((folder / f"{row['name']}.ipynb").read_text())
    setup, step = notebook["cells"][1], notebook["cells"][2]
    assert setup["execution_count"] is not None, "the notebook is kept as far as it got: the set-up cell ran"
    assert "mitosis_trial.step('slow'" in "".join(step["source"])
    assert (folder / f"{row['name']}.html").is_file()
    assert json.loads((folder / "outcome.json").read_text())["status"] == "interrupted"
    assert not (root / "trials" / ".staging" / row["key"]).exists()
    assert list(tmp.glob("mitosis-kernel-*")) == [], "the kernel's private folder is gone"
    assert wait_gone(kernel), "the kernel process is gone"
    (session,) = sessions(root)
    assert (session["status"], session["exitstatus"], row["session"]) == ("interrupted", 2, session["key"])
    assert session["ended"] >= session["started"]


def test_a_background_job_that_ignores_sigint_keeps_ignoring_it(tmp_path: Path) -> None:
    """A non-interactive shell starts background jobs with SIGINT ignored (``cmd &``, nohup
    scripts): pytest keeps ignoring it during a cell too, and SIGTERM still stops the session."""
    root, markers, tmp = investigation(tmp_path)
    proc = start(root, markers, tmp, ignore_sigint=True)
    wait_for(markers / "started-1", proc)
    assert ignores_sigint(proc.pid), "during the step's cell, pytest's SIGINT is still ignored"
    os.killpg(proc.pid, signal.SIGINT)  # ignored: the kernel discards it at once, nothing is left pending
    assert ignores_sigint(proc.pid), "and still ignored after Ctrl-C"
    # Had pytest handled SIGINT, it would be pending before SIGTERM is sent, and the lower signal is
    # delivered first: the trial would be recorded as interrupted by SIGINT, whatever the machine's speed.
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 2, out
    (row,) = rows(root)
    assert row["status"] == "interrupted"
    assert row["message"].startswith("interrupted by SIGTERM during step 'slow'"), row["message"]


def test_a_deep_tmpdir_still_gives_kernels_short_socket_paths(tmp_path: Path) -> None:
    """A Unix socket's path holds about 107 bytes: under a deep $TMPDIR the kernel's private folder
    goes to /tmp instead, and the trial runs (it once failed with 'File name too long')."""
    root, markers, _ = investigation(tmp_path)
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    run = run_pytest(
        root, "--mitosis", "pyproject.toml::slow[c]", env=clean_env(MITOSIS_TEST_MARKERS=str(markers), TMPDIR=str(deep))
    )
    assert run.ret == 0, run.out
    assert list(deep.iterdir()) == []


def test_ctrl_c_under_xdist_interrupts_the_workers_trials(tmp_path: Path) -> None:
    root, markers, tmp = investigation(tmp_path)
    proc = start(root, markers, tmp, "-n", "2", MITOSIS_TEST_BLOCK_ALL="1")
    wait_for(markers, proc, count=2)  # each worker runs one blocking trial
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=PATIENCE)

    assert proc.returncode == 2, out
    found = rows(root)
    assert len(found) == 2 and len(list(markers.iterdir())) == 2, "no further trial started"
    for row in found:
        assert row["status"] == "interrupted", dict(row)
        assert row["message"].startswith("interrupted by SIGINT during step 'slow'"), dict(row)
        # the workers sent no report for them: the controller's summary lists them from the store
        assert re.search(rf"^  slow\[\w\] +INTERRUPTED +#1 key {row['key']}", out, re.M), out
    assert "kernel died" not in out
    # every trial the store recorded for this session is in the summary, whatever reached the controller
    summary = out.split("mitosis trials", 1)[1]
    assert set(re.findall(r"key ([0-9a-f]{8})", summary)) == {row["key"] for row in found}, out
    (session,) = sessions(root)  # the controller's alone; the workers' trials carry its key
    assert (session["status"], session["exitstatus"]) == ("interrupted", 2)
    assert {row["session"] for row in found} == {session["key"]}
    assert f"mitosis session {session['key']}: 2 trials (2 interrupted)" in out
    assert list(tmp.glob("mitosis-kernel-*")) == []  # the kernels' folders, and the controller's for its shared helpers


def test_a_second_ctrl_c_while_cleaning_up_leaves_a_readable_store(tmp_path: Path) -> None:
    """The second Ctrl-C lands while the interrupted trial's page is written (the HTML helper is held
    there until it has): the session stops at once, the trial is recorded interrupted, nothing of it
    stays in staging, the store is readable, and the next session runs."""
    root, markers, tmp = investigation(tmp_path)
    pages, env = held_pages(tmp_path)
    proc = start(root, markers, tmp, **env)
    wait_for(markers / "started-1", proc)
    os.killpg(proc.pid, signal.SIGINT)
    wait_for(pages / "writing-trial_slow-a-1.html", proc)  # the clean-up: the kept notebook's page
    os.killpg(proc.pid, signal.SIGINT)
    (pages / "hold").unlink()
    out, _ = proc.communicate(timeout=PATIENCE)
    assert proc.returncode == 2, out
    assert re.search(r"!+ KeyboardInterrupt !+", out), out

    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    db.close()
    (row,) = rows(root)
    assert (row["status"], row["folder"]) == ("interrupted", None), dict(row)
    assert not (root / "trials" / ".staging" / row["key"]).exists(), "nothing unfinished stays"
    # The next session runs, and leaves the interrupted trial as it was.
    again = run_pytest(
        root, "--mitosis", "pyproject.toml::slow[c]", env=clean_env(MITOSIS_TEST_MARKERS=str(markers), TMPDIR=str(tmp))
    )
    assert again.ret == 0, again.out
    first = next(r for r in rows(root) if r["key"] == row["key"])
    assert first["status"] == "interrupted"
    assert not (root / "trials" / ".staging" / row["key"]).exists()


def test_the_next_session_cleans_up_after_a_killed_one(tmp_path: Path) -> None:
    root, markers, tmp = investigation(tmp_path)
    proc = start(root, markers, tmp)
    wait_for(markers / "started-1", proc)
    kernel = int((markers / "started-1").read_text())
    proc.kill()  # SIGKILL: nothing of ours runs
    proc.communicate(timeout=PATIENCE)
    (row,) = rows(root)
    assert row["status"] == "running"
    assert (root / "trials" / ".staging" / row["key"]).is_dir(), "precondition: the killed session left its staging"
    (killed,) = sessions(root)
    assert (killed["status"], killed["ended"], killed["exitstatus"], killed["pid"]) == ("running", None, None, proc.pid)
    listed = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "history", "--session", "--json"],
        cwd=root, env=clean_env(), capture_output=True, text=True, check=True,
    )  # fmt: skip
    (shown,) = json.loads(listed.stdout)
    host = socket.gethostname()
    assert shown["state"] == f"died (pid {proc.pid} on {host}, no end recorded)", "a reader sees the pid is gone"
    assert shown["trials"] == {"running": 1}
    assert list(tmp.glob(f"mitosis-kernel-{proc.pid}[-.]*")), "precondition: and its kernel's private folder"
    assert wait_gone(kernel), "the orphaned kernel exits by itself (it polls its parent)"

    again = run_pytest(
        root, "--mitosis", "pyproject.toml::slow[c]", env=clean_env(MITOSIS_TEST_MARKERS=str(markers), TMPDIR=str(tmp))
    )
    assert again.ret == 0, again.out
    first = next(r for r in rows(root) if r["key"] == row["key"])
    assert first["status"] == "interrupted"
    assert first["message"] == "the session running this trial ended before it finished"
    died, later = sessions(root)
    assert (died["key"], died["status"], died["ended"]) == (killed["key"], "died", None), "the next session says so"
    assert (later["status"], later["exitstatus"]) == ("ended", 0)
    assert not (root / "trials" / ".staging" / row["key"]).exists()
    assert list(tmp.glob("mitosis-kernel-*")) == []


SWEEP_STEPS = """
lookup = {"i": {f"v{i:02d}": i for i in range(30)}}


def cheap(i):
    return {"main": i}
"""

SWEEP_CONFTEST = '''
import json
import os
import threading


def pytest_runtest_logreport(report):
    """After each phase of each trial: descriptors, threads, and any thread of pytest-mitosis alive."""
    if report.when not in ("setup", "call"):
        return
    record = {
        "when": report.when,
        "outcome": report.outcome,
        "fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "ours": [t.name for t in threading.enumerate() if t.name.startswith("mitosis")],
    }
    with open(os.environ["MITOSIS_TEST_LOG"], "a") as stream:
        stream.write(json.dumps(record) + "\\n")
'''


def _low_descriptor_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (256, resource.getrlimit(resource.RLIMIT_NOFILE)[1]))


@pytest.mark.slow
def test_a_sweep_of_30_trials_under_ulimit_256_leaks_no_descriptor_or_thread(tmp_path: Path) -> None:
    root = tmp_path / "study"
    write_investigation(root, "[tool.mitosis.steps]\ncheap = ['steps:cheap', 'steps:lookup']\n", {"steps": SWEEP_STEPS})
    (root / "conftest.py").write_text(SWEEP_CONFTEST)
    git_init(root)
    log = tmp_path / "resources.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "-q", "-o", "mitosis_report=false"],
        cwd=root,
        env=clean_env(MITOSIS_TEST_LOG=str(log)),
        capture_output=True,
        text=True,
        preexec_fn=_low_descriptor_limit,
        timeout=1800,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert re.search(r"\b30 passed\b", out), out
    calls = [json.loads(line) for line in log.read_text().splitlines() if json.loads(line)["when"] == "call"]
    assert len(calls) == 30
    assert calls[-1]["fds"] - calls[0]["fds"] <= 4, [c["fds"] for c in calls]
    assert calls[-1]["threads"] <= calls[0]["threads"], [c["threads"] for c in calls]
    everything = [json.loads(line) for line in log.read_text().splitlines()]
    assert not [r for r in everything if r["ours"]], "no thread of ours runs while pytest's logging walks the loggers"


DEBUG_STEPS = """
import logging

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

logger = logging.getLogger(__name__)


def plot():
    logger.debug("a debug line of the experiment itself")
    plt.figure()
    plt.title("text makes matplotlib look up fonts")
    return {"main": 1}
"""


def test_debug_runs_into_a_debug_folder_and_trials_folders_ignore_themselves(tmp_path: Path) -> None:
    root = git_init(
        write_investigation(tmp_path / "study", "[tool.mitosis.steps]\nplot = ['steps:plot']\n", {"steps": DEBUG_STEPS})
    )
    ipython = tmp_path / "ipython"  # where IPython would keep its history database
    debug = run_pytest(
        root,
        "--mitosis",
        "--mitosis-debug",
        "--mitosis-trials-folder=trials/debug",
        env=clean_env(IPYTHONDIR=str(ipython)),
    )
    assert debug.ret == 0, debug.out
    assert not list(ipython.rglob("history.sqlite")), (
        "a trial's kernel writes no IPython history outside the trials folder"
    )
    folders = sorted((root / "trials" / "debug").glob("trial_plot_*"))
    assert len(folders) == 1, "no second 'debug' inside a folder the user chose for debug runs"
    assert not (root / "trials" / "debug" / "debug").exists()
    log = (folders[0] / "experiment.log").read_text()
    assert "DEBUG steps: a debug line of the experiment itself" in log
    assert "findfont" not in log, "third-party loggers stay at INFO in debug mode"
    assert (root / "trials" / "debug" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert git(root, "status", "--porcelain") == "", "the debug folder makes no change git sees"

    check = run_pytest(root, "--mitosis", "--mitosis-check", "--mitosis-trials-folder=trials/pm", junit=False)
    assert check.ret == 0, check.out
    assert git(root, "status", "--porcelain") == "", "a trials folder that a check creates ignores itself too"
    clean = run_pytest(root, "--mitosis", "--mitosis-trials-folder=trials/pm")
    assert clean.ret == 0, clean.out
    assert len(list((root / "trials" / "pm").glob("trial_plot-1_*"))) == 1


def test_a_tracked_trials_folder_gets_no_gitignore_when_the_ini_says_so(tmp_path: Path) -> None:
    pyproject = "[tool.mitosis.steps]\nplot = ['steps:plot']\n\n[tool.pytest.ini_options]\nmitosis_gitignore = false\n"
    root = git_init(write_investigation(tmp_path / "study", pyproject, {"steps": DEBUG_STEPS}))
    run = run_pytest(root, "--mitosis", "--mitosis-check", junit=False)
    assert run.ret == 0, run.out
    run = run_pytest(root, "--mitosis", "--mitosis-debug")
    assert run.ret == 0, run.out
    assert not (root / "trials" / ".gitignore").exists()


FULL_STEPS = '''
import os
from pathlib import Path


def fill():
    """Fill the disk the trials folder is on, then free a little: the result cannot be saved."""
    if "MITOSIS_TEST_FILLER" not in os.environ:
        return {"main": 1, "data": os.urandom(1_000_000)}
    filler = Path(os.environ["MITOSIS_TEST_FILLER"])
    chunk = b"x" * 65536
    with open(filler, "wb") as stream:
        try:
            while True:
                stream.write(chunk)
                stream.flush()
        except OSError:
            pass
    with open(filler, "r+b") as stream:
        stream.truncate(max(0, filler.stat().st_size - 4 * 65536))
    return {"main": 1, "data": os.urandom(1_000_000)}
'''


@pytest.fixture
def small_disk(tmp_path: Path):
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip(f"a small tmpfs cannot be mounted here (needs root): {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_fails_the_trial_frees_its_staging_and_the_next_session_works(
    tmp_path: Path, small_disk: Path
) -> None:
    root = git_init(
        write_investigation(tmp_path / "study", "[tool.mitosis.steps]\nfill = ['steps:fill']\n", {"steps": FULL_STEPS})
    )
    trials = small_disk / "trials"
    filler = small_disk / "filler"
    env = clean_env(MITOSIS_TEST_FILLER=str(filler))
    run = run_pytest(root, "--mitosis", f"--mitosis-trials-folder={trials}", "-o", "mitosis_report=false", env=env)
    assert run.ret == 1, run.out
    assert "INTERNALERROR" not in run.out and "Traceback" not in run.out, run.out
    failure = run.testcase("fill").find("failure")
    assert failure is not None
    assert "No space left on device" in (failure.text or "") or "no space left on device" in (failure.text or "")
    assert not list((trials / ".staging").iterdir()), "the unfinished trial's files were removed"
    db = sqlite3.connect(trials / "mitosis.sqlite")
    status, message = db.execute("SELECT status, message FROM trials").fetchone()
    db.close()
    assert status == "failed"
    assert "no space left on device" in message.lower()

    filler.unlink()  # space is back
    again = run_pytest(root, "--mitosis", f"--mitosis-trials-folder={trials}", "-o", "mitosis_report=false")
    assert again.ret == 0, again.out


STRESS_STEPS = """
import logging

lookup = {"v": {"x": 1, "y": 2}}


def quick(v):
    logging.getLogger(f"stress.{v}").info("a new logger in the kernel")
    return {"main": v}
"""


@pytest.mark.slow
def test_short_sessions_under_cpu_load_never_race_pytests_logging(tmp_path: Path) -> None:
    """Two short sessions at once, while a busy process per core loads the machine: the load under which
    the work-ahead thread once raced pytest's walk over the loggers (an INTERNALERROR). Every session
    passes, and no thread of ours is alive in any test phase (the deterministic half of the proof: it
    holds whatever the load)."""
    root = write_investigation(
        tmp_path / "study", "[tool.mitosis.steps]\nquick = ['steps:quick', 'steps:lookup']\n", {"steps": STRESS_STEPS}
    )
    (root / "conftest.py").write_text(SWEEP_CONFTEST)
    git_init(root)
    # the load: one busy loop per core for the sessions' whole run (stopped below, or by the fixture if the test fails)
    burners = [background([sys.executable, "-c", "while True: pass"]) for _ in range(os.cpu_count() or 1)]
    procs = []
    for index in range(2):
        log = tmp_path / f"threads-{index}.jsonl"
        procs.append(
            background(
                [
                    sys.executable,
                    "-m",
                    "pytest",
                    "-p",
                    "no:cacheprovider",
                    "--mitosis",
                    f"--mitosis-trials-folder=trials/s{index}",
                    "-q",
                ],
                cwd=root,
                env=clean_env(MITOSIS_TEST_LOG=str(log)),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    outs = [proc.communicate(timeout=PATIENCE * 2)[0] for proc in procs]
    assert all(burner.poll() is None for burner in burners), "the load lasted as long as the sessions"
    for burner in burners:
        burner.kill()
        burner.wait()
    for proc, out in zip(procs, outs):
        assert proc.returncode == 0, out
        assert "INTERNALERROR" not in out and "2 passed" in out, out
    records = [json.loads(line) for log in tmp_path.glob("threads-*.jsonl") for line in log.read_text().splitlines()]
    assert len(records) == 2 * 2 * 2  # sessions × trials × (setup, call)
    assert not [r for r in records if r["ours"]]


COLOURFUL = """
lookup = {"n": {"a": 1}}


def colourful(n):
    print("\\x1b[31mred\\x1b[0m \\x1b[1mbold\\x1b[0m")
    return {"main": n}
"""


def test_ctrl_c_while_the_notebook_is_written_keeps_the_finished_trial_whole_and_interrupted(tmp_path: Path) -> None:
    """Ctrl-C once every step has run and the HTML helper is writing the notebook (what the trial waits
    for: its page is rendered later): the session stops, and the trial keeps its folder, whole (notebook,
    page, outcome), recorded interrupted with its main and a message that says its files are complete;
    nothing stays in staging."""
    root = git_init(
        write_investigation(
            tmp_path / "study",
            '[tool.mitosis.steps]\ncolourful = ["steps:colourful", "steps:lookup"]\n',
            {"steps": COLOURFUL},
        )
    )
    tmp = Path(tempfile.mkdtemp(prefix="mk-", dir="/tmp"))
    pages, env = held_pages(tmp_path)
    proc = start(root, tmp_path, tmp, MITOSIS_TEST_HOLD_NOTEBOOK="1", **env)
    staging = root / "trials" / ".staging"
    wait_for(pages / "writing-trial_colourful-a-1.ipynb", proc)  # the helper holds the notebook it is writing
    os.killpg(proc.pid, signal.SIGINT)
    (pages / "hold").unlink()  # after the Ctrl-C was sent: the notebook is finished while pytest is interrupted
    out, _ = proc.communicate(timeout=PATIENCE)

    assert proc.returncode == 2, out
    assert re.search(r"!+ KeyboardInterrupt !+", out), out
    assert not [noise for noise in NOISE if noise in out], out
    (row,) = rows(root)
    assert (row["status"], row["main"]) == ("interrupted", "1"), dict(row)
    assert row["message"].startswith(
        "interrupted while its files were written, after every step had finished: its notebook and HTML are "
        "complete\n\nnotebook: "
    ), row["message"]
    folder = Path(row["folder"])
    assert folder.parent == root / "trials" and folder.name.startswith("trial_colourful-a-1_")
    notebook = json.loads((folder / "trial_colourful-a-1.ipynb").read_text())
    assert "red" in json.dumps(notebook["cells"][2]["outputs"]), "the step's output is in the kept notebook"
    assert (folder / "trial_colourful-a-1.html").read_text().rstrip().endswith("</html>"), "the page is whole"
    assert json.loads((folder / "outcome.json").read_text())["status"] == "interrupted"
    assert re.search(rf"^  colourful\[a\] +INTERRUPTED +#1 key {row['key']}", out, re.M), out
    assert list(staging.iterdir()) == [], "nothing stays in staging"
