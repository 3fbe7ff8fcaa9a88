"""Watching a long sweep (issue 23): the status line on a terminal, log lines off one, ``status``, heartbeats.

The step prints a line, then waits while a ``hold-N`` file exists: the test decides when a trial
is running (never a fixed sleep) and watches what the session shows meanwhile.
"""

from __future__ import annotations

import os
import pty
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from .conftest import PATIENCE, background, clean_env, git, held_investigation, wait_until

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return held_investigation(tmp_path_factory.mktemp("watch") / "inv", 2)


def _status(root: Path, *needles: str, args: tuple[str, ...] = ()) -> str:
    """``status``'s output once it holds every needle (else empty, for :func:`_until`; also while the
    session has not created the store's tables yet)."""
    done = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "status", *args],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    return done.stdout if done.returncode == 0 and all(n in done.stdout for n in needles) else ""


def _cli(root: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", *args], cwd=root, env=clean_env(), capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


class Terminal:
    """pytest on a pseudo-terminal of 160 columns; what it wrote, as bytes, read by a thread."""

    def __init__(self, root: Path, *args: str) -> None:
        master, slave = pty.openpty()
        env = clean_env(COLUMNS="160", LINES="40", TERM="xterm")
        self.proc = background(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", *args],
            cwd=root,
            env=env,
            stdin=slave,
            stdout=slave,
            stderr=slave,
        )
        os.close(slave)
        self.out = b""
        self._master = master
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                chunk = os.read(self._master, 65536)
            except OSError:
                break
            if not chunk:
                break
            self.out += chunk

    def end(self) -> int:
        code = self.proc.wait(timeout=PATIENCE)
        self._reader.join(timeout=PATIENCE)
        os.close(self._master)
        return code


def test_the_status_line_moves_on_a_terminal_and_never_reaches_pytest_s_lines(study: Path) -> None:
    (study / "markers" / "hold-n0").write_text("")
    term = Terminal(study)
    text = lambda: term.out.decode(errors="replace")  # noqa: E731
    wait_until(
        "a status line naming the step's last line",
        lambda: "step fit" in text() and "waiting for release of n0" in text(),
        term.proc,
        text,
    )
    draws = re.compile(r"\x1b7 mitosis 0/2 \(0 passed, 0 failed\) · fit\[n0\] \[([0-9a-f]{8})\] step fit (\d+\.\d)s")
    first = draws.search(text())
    assert first is not None, text()
    wait_until(
        "a later elapsed time",
        lambda: any(float(m.group(2)) >= float(first.group(2)) + 1 for m in draws.finditer(text())),
        term.proc,
        text,
    )
    (study / "markers" / "hold-n0").unlink()
    assert term.end() == 0, text()
    out = text()
    assert "end unknown" in out  # before the first trial ended
    assert re.search(r"mitosis 1/2 \(1 passed, 0 failed\) · fit\[n1\] \[[0-9a-f]{8}\] ", out) is None or "ends ~" in out
    # every drawing is erased (clear to the end of the line) before pytest writes; the summary has none
    summary = out[out.index("[100%]") :]
    assert "\x1b7" not in summary and "mitosis trials" in summary and "2 passed" in summary
    lines = out.split("\r\n")
    assert any(line.startswith("pyproject.toml ") and "[100%]" in line for line in lines), out


def test_a_sweep_of_trials_under_a_second_still_shows_its_status_line(study: Path) -> None:
    """Trials that end before their first tick (about a second) used to draw nothing at all (issue 28's cheap
    trials): the line is drawn as each trial starts too, at most once a second. The first is drawn before the
    trial's kernel could tick, so it names no running trial yet."""
    for marker in (study / "markers").glob("hold-*"):
        marker.unlink()
    term = Terminal(study)
    assert term.end() == 0
    out = term.out.decode(errors="replace")
    assert "\x1b7 mitosis 0/2 (0 passed, 0 failed) · starting · end unknown" in out, out


def test_the_end_is_after_what_the_timed_experiments_take_while_one_is_untimed() -> None:
    """Experiments run one after another: the last one stays untimed for most of a sweep, and "end unknown"
    was all a sweep of several experiments said until its last experiment's first trial ended."""
    from pytest_mitosis.pytest_layer.progress import Progress

    progress = Progress(None, 60.0)
    progress.plan(["data"] * 3 + ["fit"] * 2 + ["plot"] * 4)
    assert progress.ends() == "end unknown"
    progress.finished("pyproject.toml::data[a]", "passed", 2.0, None, None)
    assert re.fullmatch(r"ends after ~\d\d:\d\d, in over 4\.0s \(fit, plot not timed yet\)", progress.ends())
    progress.finished("pyproject.toml::data[b]", "passed", 4.0, None, None)
    progress.finished("pyproject.toml::data[c]", "passed", 3.0, None, None)
    assert progress.ends() == "end unknown", "only untimed experiments left"
    progress.finished("pyproject.toml::fit[a]", "passed", 10.0, None, None)
    assert re.fullmatch(r"ends after ~\d\d:\d\d, in over 10s \(plot not timed yet\)", progress.ends())
    progress.finished("pyproject.toml::fit[b]", "passed", 10.0, None, None)
    progress.finished("pyproject.toml::plot[a]", "passed", 1.0, None, None)
    assert re.fullmatch(r"ends ~\d\d:\d\d, in 3\.0s", progress.ends())


def test_under_xdist_the_controller_s_status_line_shows_every_worker_s_trial(study: Path) -> None:
    for name in ("n0", "n1"):
        (study / "markers" / f"hold-{name}").write_text("")
    term = Terminal(study, "-n", "2")
    text = lambda: term.out.decode(errors="replace")  # noqa: E731
    both = re.compile(
        r"\x1b7 mitosis 0/2 \(0 passed, 0 failed\) · fit\[n(\d)\] \[[0-9a-f]{8}\] step fit [\d.]+s: waiting for release "
        r"of n\1 · fit\[n(\d)\] \[[0-9a-f]{8}\] step fit [\d.]+s: waiting for release of n\2"
    )
    found = wait_until("both workers' trials in one status line", lambda: both.search(text()), term.proc, text)
    assert {found.group(1), found.group(2)} == {"0", "1"}
    for name in ("n0", "n1"):
        (study / "markers" / f"hold-{name}").unlink()
    assert term.end() == 0, text()
    out = text()
    summary = out[out.index("[100%]") :]
    assert "\x1b7" not in summary and "2 passed" in summary


def test_off_a_terminal_lines_say_start_end_and_still_running_and_status_shows_the_trial(study: Path) -> None:
    (study / "markers" / "hold-n0").write_text("")
    log = study.parent / "sweep.log"
    with open(log, "w") as stream:
        proc = background(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "--mitosis-progress-every", "1"],
            cwd=study,
            env=clean_env(),
            stdout=stream,
            stderr=subprocess.STDOUT,
        )
        text = log.read_text
        still = wait_until(
            "a still-running line",
            lambda: re.search(
                r"mitosis fit\[n0\] \(([0-9a-f]{8})\): still running after [\d.]+s, step fit; last line: "
                r"waiting for release of n0",
                text(),
            ),
            proc,
            text,
        )
        key = still.group(1)
        status = wait_until("the trial in status", lambda: _status(study, key, " ago "))
        row = next(line for line in status.splitlines() if key in line)
        assert re.match(
            r"[0-9a-f]{8}\s+\S+\s+fit\[n0\]\s+" + key + r"\s+fit\s+[\d.]+s\s+[\d.]+s ago\s+waiting for release of n0$",
            row,
        ), status
        assert re.search(
            r"session [0-9a-f]{8} on \S+: 0 of 2 done \(0 passed, 0 failed\), end unknown; heartbeat", status
        )
        (study / "markers" / "hold-n0").unlink()
        assert proc.wait(timeout=PATIENCE) == 0, text()
    out = text()
    assert "mitosis [1/2] fit[n0]: started" in out
    assert re.search(r"mitosis \[1/2\] fit\[n0\]: passed in [\d.]+s, main=0\.0 \(ends ~\d\d:\d\d, in [\d.]+s\)", out), (
        out
    )
    assert re.search(r"mitosis \[2/2\] fit\[n1\]: passed in [\d.]+s, main=1\.0 \(no trial left\)", out), out
    assert "\x1b" not in out
    assert _cli(study, "status").startswith("no trial is running in ")


def _contained(root: Path, url: str, *args: str, spread: bool = False) -> subprocess.Popen[str]:
    """A session in a 'container' of its own: a UTS and a pid namespace, the host name ``box``.

    With ``spread``, two hundred processes come and go first, so that pytest's pid (about 200) is not
    one the other container's session uses: judged by its pid, a live trial there would look dead here.
    """
    spreading = "for i in $(seq 200); do /bin/true; done && " if spread else ""
    script = f'hostname box && {spreading}"$@"'  # not exec: pytest is a child of the namespace's pid 1
    argv = ["unshare", "--uts", "--pid", "--fork", "--mount-proc", "sh", "-c", script, "sh"]
    argv += [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "--mitosis-store", url, *args]
    return background(argv, cwd=root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_two_containers_of_one_host_name_never_mark_each_other_s_live_trial(
    study: Path, pg_server: Any, pg_database: str
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("needs root and unshare (util-linux) for UTS and pid namespaces")
    probe = subprocess.run(["unshare", "--uts", "--pid", "--fork", "--mount-proc", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"unshare cannot make namespaces here: {probe.stderr.decode().strip()}")
    url = pg_database
    database = url.split("/")[3].split("?")[0]
    (study / "markers" / "hold-n0").write_text("")
    first = _contained(study, url, "-k", "n0", spread=True)
    status = wait_until(
        "the first container's trial with a heartbeat",
        lambda: _status(study, "fit[n0]", " ago ", args=("--store", url)),
        first,
    )
    assert re.search(r"\sbox\s+fit\[n0\]", status), status
    second = _contained(study, url, "-k", "n1")
    out, _ = second.communicate(timeout=PATIENCE)
    assert second.returncode == 0, out
    rows = pg_server.execute("SELECT variants, status, host, key FROM trials ORDER BY started", database)
    assert [r[:3] for r in rows] == [("n0", "running", "box"), ("n1", "passed", "box")]
    index = (study / "trials" / "report" / "index.html").read_text()
    row = re.search(rf"<tr[^>]*data-status='running'[^>]*>.*?{rows[0][3]}.*?</tr>", index)
    assert row is not None, "the second session's report lists the first one's trial as running"
    (study / "markers" / "hold-n0").unlink()
    out, _ = first.communicate(timeout=PATIENCE)
    assert first.returncode == 0, out
    rows = pg_server.execute("SELECT variants, status FROM trials ORDER BY started", database)
    assert rows == [("n0", "passed"), ("n1", "passed")]
    git(study, "status", "--porcelain")  # the study stays usable


def test_a_killed_container_s_trial_is_interrupted_once_its_heartbeat_is_old(tmp_path: Path) -> None:
    """The judgement itself, for every backend: a beat from another machine decides by its age alone."""
    from pytest_mitosis.core.processes import machine
    from pytest_mitosis.store.protocol import STALE, dead

    now = time.time()
    me = machine()
    assert dead(os.getpid(), "box", "box", "another-machine", now - STALE - 1, now)
    assert not dead(2**22 + 7, "box", "box", "another-machine", now - 1, now)  # a pid not here: age decides
    assert dead(2**22 + 7, "box", "box", me, now, now)  # this machine: the pid decides at once
    assert not dead(os.getpid(), "box", "box", me, now - 10 * STALE, now)
    assert dead(2**22 + 7, "box", "box", None, None, now)  # no beat: the old rule, same host and pid gone
    assert not dead(2**22 + 7, "elsewhere", "box", None, None, now)


def test_a_private_folder_of_another_pid_namespace_is_never_swept(tmp_path: Path) -> None:
    """A container's live pytest has a pid that means nothing here: its kernels' folders stay."""
    from pytest_mitosis.core.processes import start_time
    from pytest_mitosis.execution.private import private_folder, sweep_stale_private_folders

    here = os.stat("/proc/self/ns/pid").st_ino
    gone = 2**22 + 11  # above the kernel's default pid_max: no process has it
    mine = tmp_path / f"mitosis-kernel-{gone}.{here}-abcdefgh"
    theirs = tmp_path / f"mitosis-kernel-{gone}.{here + 1}-abcdefgh"
    older = tmp_path / f"mitosis-kernel-{gone}-abcdefgh"  # named before pid namespaces were
    for folder in (mine, theirs, older):
        folder.mkdir()
    assert sweep_stale_private_folders(str(tmp_path)) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [theirs.name]
    live = Path(private_folder())
    try:
        assert live.name.startswith(f"mitosis-kernel-{os.getpid()}.{here}.{start_time(os.getpid())}-")
    finally:
        live.rmdir()


RECORDED_THEN_KILLED = """
import os, sys
from pathlib import Path
from pytest_mitosis.execution.private import private_folder
from pytest_mitosis.store import NewTrial, SQLiteStore

store = SQLiteStore(Path(sys.argv[1]))
store.begin(
    NewTrial("reused01", "fit", "[]", "n9", "trial_fit-n9", "pyproject.toml::fit[n9]", False, {"commit": None}, 1, {},
             [{"name": "fit", "function": "study.fit:run", "lookup": None}], [], session="5e551000"),
    [],
)
store.beat("trial", "reused01", "5e551000", {"phase": "step", "step": "fit"})
private_folder()  # a kernel's private folder, named after this process
print(os.getpid(), flush=True)
os._exit(0)  # killed: its trial stays running, its heartbeat and its kernel's folder stay
"""


def _take_pid(pid: int) -> subprocess.Popen[bytes] | None:
    """A new process given ``pid`` (which must be free): the pid reused, as the system does once it wraps
    around, made to happen now by setting the last pid handed out (``ns_last_pid``, root only)."""
    for _ in range(50):  # another process of the machine may fork in between: try again
        try:
            with open("/proc/sys/kernel/ns_last_pid", "w") as stream:
                stream.write(str(pid - 1))
        except OSError:
            return None
        taker = subprocess.Popen(["sleep", "600"])
        if taker.pid == pid:
            return taker
        taker.kill()
        taker.wait()
    return None


def test_a_pid_reused_by_a_later_process_never_keeps_a_dead_trial_running(tmp_path: Path) -> None:
    """A session killed with its trial running: the system then gives its pid to another process. Its start
    time, kept with the heartbeat and in its kernel folder's name, says the new process is not it."""
    trials = tmp_path / "trials"
    trials.mkdir()
    # short: a kernel's socket paths must fit in a Unix socket address, else its folder goes to /tmp
    tmp = Path(tempfile.mkdtemp(prefix="mitosis-test-", dir="/tmp"))
    try:
        done = subprocess.run(
            [sys.executable, "-c", RECORDED_THEN_KILLED, str(trials)],
            env=clean_env(TMPDIR=str(tmp)),
            capture_output=True,
            text=True,
            check=True,
        )
        pid = int(done.stdout)
        taker = _take_pid(pid)
        if taker is None:
            pytest.skip("the pid of a process that ended cannot be given to a new one here (ns_last_pid is root's)")
        try:
            _judged_dead_although_its_pid_lives(trials, tmp, pid)
        finally:
            taker.kill()
            taker.wait()
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _judged_dead_although_its_pid_lives(trials: Path, tmp: Path, pid: int) -> None:
    from pytest_mitosis.core.processes import process_mark, split_mark, start_time
    from pytest_mitosis.execution.private import sweep_stale_private_folders
    from pytest_mitosis.store import SQLiteStore
    from pytest_mitosis.store.protocol import dead

    assert start_time(pid) is not None, "precondition: a process has the recorded pid again"
    out = _cli(trials.parent, "status", "--trials-folder", str(trials))
    row = next(line for line in out.splitlines() if "reused01" in line)
    assert re.search(r"\S+ ago: dead$", row), out
    (folder,) = [p.name for p in tmp.iterdir()]
    assert folder.startswith(f"mitosis-kernel-{pid}."), folder
    assert sweep_stale_private_folders(str(tmp)) == 1
    assert list(tmp.iterdir()) == []
    SQLiteStore(trials).close()  # the next session: closes what the dead left running
    db = sqlite3.connect(trials / "mitosis.sqlite")
    try:
        assert db.execute("SELECT status FROM trials WHERE key='reused01'").fetchall() == [("interrupted",)]
        assert db.execute("SELECT COUNT(*) FROM beats").fetchall() == [(0,)]
    finally:
        db.close()
    # the process that has the pid now, judged by its own mark, is alive
    mark = process_mark(pid)
    assert split_mark(mark)[1] == start_time(pid)
    assert not dead(pid, "box", "box", mark, time.time(), time.time())


KILLED = """
import os, sys
from pathlib import Path
from pytest_mitosis.store import NewTrial, SQLiteStore

store = SQLiteStore(Path(sys.argv[1]))
store.begin(
    NewTrial("dead0001", "fit", "[]", "n9", "trial_fit-n9", "pyproject.toml::fit[n9]", False, {"commit": None}, 1, {},
             [{"name": "fit", "function": "study.fit:run", "lookup": None}], [], session="5e551000"),
    [],
)
os._exit(0)  # killed: its trial stays running, without a heartbeat
"""


def test_status_shows_a_killed_session_s_trial_dead_and_watch_refreshes_until_ctrl_c(tmp_path: Path) -> None:
    trials = tmp_path / "trials"
    trials.mkdir()
    subprocess.run([sys.executable, "-c", KILLED, str(trials)], check=True, env=clean_env())
    out = _cli(tmp_path, "status", "--trials-folder", str(trials))
    row = next(line for line in out.splitlines() if "dead0001" in line)
    assert re.match(r"5e551000\s+\S+\s+fit\[n9\]\s+dead0001\s+-\s+[\d.]+s\s+none: dead$", row), out
    watch = background(
        [sys.executable, "-m", "pytest_mitosis", "status", "--trials-folder", str(trials), "--watch", "0.5"],
        env=clean_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    seen: list[str] = []

    def refreshed() -> bool:
        seen.append(watch.stdout.readline() if watch.stdout is not None else "")
        return sum("dead0001" in line for line in seen) >= 3

    wait_until("three refreshes of status --watch", refreshed, watch)
    os.killpg(watch.pid, signal.SIGINT)
    assert watch.wait(timeout=PATIENCE) == 130
