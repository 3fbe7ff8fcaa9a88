"""The store under faults (issue 24, items 2 to 4): an outage, a lost reply, threads, signals.

- **An outage** (``story``): a PostgreSQL server of this module's own is stopped with
  ``pg_ctl stop -m fast`` while a trial runs (the step waits while a ``hold-N`` marker exists,
  so the test decides when the trial is running, never a sleep). A: the trial is released while
  the server is down, and the server is started again: the session waited and reconnected,
  every trial passed, the session row says ``ended``. B: with ``--mitosis-store-patience 1``
  the server stays down: the finished trial fails saying where its outcome is kept, the next
  trial fails at setup at once, the session end is kept too; C: the server is back, the next
  session records what B kept and says so: B's trial is ``passed`` with its main, B's session
  ``ended`` with exit status 1, never ``interrupted`` or ``died``.
- **A lost reply**: a proxy between the store and the server closes the connection after the
  server committed and before its reply reaches the store; the store reconnects and retries,
  and the trial (and the session) still has one row.
- **Threads**: one SQLite store used by many threads at once (as execnet's receivers and the
  main thread do under remote workers): every transaction whole, every row there.
- **Signals**: SIGTERM (turned into KeyboardInterrupt, as pytest-mitosis does) sent again and
  again while a process writes its SQLite store: no signal ever leaves a transaction open.

docs/reliability.md ("The store") lists these faults and what the user sees.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_mitosis.store import NewSession, make_store, new_key
from pytest_mitosis.store.sqlite import SQLiteStore

from .conftest import background, clean_env, git, git_init, wait_until, write_investigation
from .pg_server import PgServer, own_server
from .test_postgres import lock, trial

PATIENCE = 180.0

PYPROJECT = """
[tool.mitosis.steps]
fit = ["study.fit:run", "study.fit:lookup_dict"]
"""

FIT = """
import time
from pathlib import Path

lookup_dict = {"n": {"n0": 0, "n1": 1, "n2": 2, "n3": 3}}


def run(n):
    markers = Path("markers")
    (markers / f"started-n{n}").write_text("")
    while (markers / f"hold-n{n}").exists():
        time.sleep(0.05)
    return {"main": float(n)}
"""


@pytest.fixture(scope="module")
def server() -> Iterator[PgServer]:
    """A PostgreSQL server of this module's own: stopping it disturbs no other test."""
    yield from own_server()


def _until(condition: Any, what: str, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + PATIENCE
    while not condition():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"pytest ended before {what}:\n{proc.communicate()[0]}")
        assert time.monotonic() < deadline, f"{what}: not within {PATIENCE} s"
        time.sleep(0.05)


def _start(root: Path, url: str, *args: str) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "--mitosis-store", url, *args]
    return background(argv, cwd=root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _end(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=PATIENCE)
    return proc.returncode, out


def _rows(server: PgServer, database: str, table: str) -> list[dict[str, Any]]:
    import psycopg
    from psycopg.rows import dict_row

    with psycopg.connect(server.url(database), autocommit=True, row_factory=dict_row) as db:
        return list(db.execute(f"SELECT * FROM {table} ORDER BY started"))


@pytest.fixture(scope="module")
def story(server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = write_investigation(
        tmp_path_factory.mktemp("outage") / "inv", PYPROJECT, {"study.__init__": "", "study.fit": FIT}
    )
    markers = root / "markers"
    markers.mkdir()
    git_init(root)
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nmarkers/\n", encoding="utf-8")
    git(root, "commit", "-qam", "ignore the markers")
    url = server.createdb("outage")
    database = url.split("@/", 1)[1].split("?")[0]
    found: dict[str, Any] = {"root": root, "database": database}

    # A: stopped while n1 runs, n1 released while it is down, started again: the session waits
    (markers / "hold-n1").write_text("")
    proc = _start(root, url, "--mitosis-store-patience", "120")
    _until(lambda: (markers / "started-n1").exists(), "n1 started", proc)
    server.stop("fast")
    (markers / "hold-n1").unlink()
    trials = root / "trials"
    _until(lambda: any(trials.glob("trial_fit-n1-*/outcome.json")), "n1's folder", proc)
    time.sleep(1.0)  # the outage goes on a while after n1 ended (no verdict waits on it)
    server.start()
    found["A"] = _end(proc)
    found["A trials"] = _rows(server, database, "trials")
    found["A sessions"] = _rows(server, database, "sessions")

    # B: patience 1 s, the server stays down: n2's outcome and the session's end are kept
    for path in markers.iterdir():
        path.unlink()
    (markers / "hold-n2").write_text("")
    proc = _start(root, url, "--mitosis-store-patience", "1", "-k", "n2 or n3")
    _until(lambda: (markers / "started-n2").exists(), "n2 started", proc)
    server.stop("fast")
    (markers / "hold-n2").unlink()
    found["B"] = _end(proc)
    found["B pending"] = sorted(p.name for p in (trials / ".pending").iterdir())
    server.start()

    # C: the server is back; the next session records what B kept, and says so
    proc = _start(root, url, "-k", "n0")
    found["C"] = _end(proc)
    found["C trials"] = _rows(server, database, "trials")
    found["C sessions"] = _rows(server, database, "sessions")
    found["C pending"] = (trials / ".pending").exists()
    return found


@pytest.mark.kernel
def test_an_outage_shorter_than_the_patience_fails_nothing(story: dict[str, Any]) -> None:
    code, out = story["A"]
    assert code == 0, out
    assert "cannot be reached" not in out and "could not record" not in out, out
    rows = story["A trials"]
    assert [(r["name"], r["status"], json.loads(r["main"])) for r in rows] == [
        ("trial_fit-n0-1", "passed", 0.0),
        ("trial_fit-n1-1", "passed", 1.0),
        ("trial_fit-n2-1", "passed", 2.0),
        ("trial_fit-n3-1", "passed", 3.0),
    ]
    [session] = story["A sessions"]
    assert (session["status"], session["exitstatus"]) == ("ended", 0)
    assert {r["session"] for r in rows} == {session["key"]}


@pytest.mark.kernel
def test_a_longer_outage_keeps_the_outcome_and_the_session_end(story: dict[str, Any]) -> None:
    code, out = story["B"]
    assert code == 1, out
    root = story["root"]
    [kept_trial] = [name for name in story["B pending"] if name.startswith("trial-")]
    [kept_session] = [name for name in story["B pending"] if name.startswith("session-")]
    assert story["B pending"] == sorted([kept_trial, kept_session])
    assert "trial_fit-n2-2 ran (main=2.0; notebook: " in out, out
    assert "but the store could not record its outcome: mitosis: the trial store postgresql://" in out, out
    assert "went away" in out and "this session waited 1 s" in out, out
    assert f"Its outcome is kept in {root / 'trials' / '.pending' / kept_trial}: it is recorded when the store" in out
    # the next trial fails at once, saying why, without waiting again
    assert "FAILED pyproject.toml::fit[n2]" in out and "ERROR pyproject.toml::fit[n3]" in out, out
    assert "mitosis: the end of this session could not be recorded" in out, out
    assert f"kept in {root / 'trials' / '.pending' / kept_session}" in out, out
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    # the folder is whole
    key = kept_trial.removeprefix("trial-").removesuffix(".json")
    folder = root / "trials" / f"trial_fit-n2-2_{key}"
    assert json.loads((folder / "outcome.json").read_text())["main"] == 2.0


@pytest.mark.kernel
def test_the_next_session_records_what_was_kept_and_says_so(story: dict[str, Any]) -> None:
    code, out = story["C"]
    assert code == 0, out
    by_name = {r["name"]: r for r in story["C trials"]}
    n2 = by_name["trial_fit-n2-2"]
    assert (n2["status"], json.loads(n2["main"])) == ("passed", 2.0)
    assert n2["ended"] < by_name["trial_fit-n0-2"]["started"]  # when it ended, not when it was recorded
    assert (
        f"mitosis: recorded kept by an earlier session while the store was away: trial_fit-n2-2 (key {n2['key']}) "
        "passed, main=2.0, ended " in out
    ), out
    session_b = next(s for s in story["C sessions"] if s["key"] == n2["session"])
    assert (session_b["status"], session_b["exitstatus"]) == ("ended", 1)
    kept_end = f"the end of session {n2['session']} (exit status 1), ended "
    assert f"mitosis: recorded kept by an earlier session while the store was away: {kept_end}" in out, out
    assert not story["C pending"]
    assert [s["status"] for s in story["C sessions"]] == ["ended", "ended", "ended"]


# -- a lost reply --------------------------------------------------------------------------------


def _hang_up(*ends: socket.socket) -> None:
    """Shut both ways, then close: ``close`` alone never wakes the other thread's ``recv`` on the socket."""
    for end in ends:
        try:
            end.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        end.close()


class DropCommitReply:
    """A Unix-socket proxy in front of a PostgreSQL server that, when armed, closes the client's
    connection right after the server's ``CommandComplete("COMMIT")``, without passing it on: the
    transaction is committed and the client never hears so."""

    def __init__(self, target: Path, folder: Path) -> None:
        self.target = target / ".s.PGSQL.5432"
        self.folder = folder
        self.armed = threading.Event()
        self.dropped = 0
        self._listener = socket.socket(socket.AF_UNIX)
        self._listener.bind(str(folder / ".s.PGSQL.5432"))
        self._listener.listen(16)
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database: str) -> str:
        return f"postgresql://postgres@/{database}?host={self.folder}&sslmode=disable&gssencmode=disable"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX)
            upstream.connect(str(self.target))
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._replies, args=(upstream, client), daemon=True).start()

    @staticmethod
    def _pump(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        _hang_up(source, sink)

    def _replies(self, server: socket.socket, client: socket.socket) -> None:
        """Server to client, message by message (type byte, length): the armed drop."""
        buffer = b""
        try:
            while data := server.recv(65536):
                buffer += data
                out = b""
                while len(buffer) >= 5:
                    length = int.from_bytes(buffer[1:5], "big")
                    if len(buffer) < 1 + length:
                        break
                    message, buffer = buffer[: 1 + length], buffer[1 + length :]
                    if message[:1] == b"C" and message[5:].rstrip(b"\0") == b"COMMIT" and self.armed.is_set():
                        self.armed.clear()
                        self.dropped += 1
                        client.sendall(out)
                        raise OSError("dropped")
                    out += message
                client.sendall(out)
        except OSError:
            pass
        _hang_up(server, client)

    def close(self) -> None:
        self._listener.close()


def test_a_lost_commit_reply_records_one_row(server: PgServer, tmp_path: Path) -> None:
    url = server.createdb("lostreply")
    database = url.split("@/", 1)[1].split("?")[0]
    proxy = DropCommitReply(server.socket_dir, tmp_path)
    store = make_store(proxy.url(database), tmp_path / "trials", patience=30)
    try:
        session = NewSession(key=new_key(), command="pytest --mitosis", commit=None, dirty=False, debug=False)
        proxy.armed.set()
        store.begin_session(session)  # type: ignore[attr-defined]
        assert proxy.dropped == 1
        first = trial(key=new_key())
        proxy.armed.set()
        assert store.begin(first, [lock(1)]) == 1
        assert proxy.dropped == 2
        proxy.armed.set()
        store.finish(first.key, status="passed", main=0.5, metrics={}, folder=None, message=None)
        assert proxy.dropped == 3
        second = trial(key=new_key())
        assert store.begin(second, [lock(1)]) == 2  # the retried transaction's counter rolled back
    finally:
        store.close()
        proxy.close()
    rows = [(r["key"], r["iteration"], r["status"]) for r in _rows(server, database, "trials")]
    assert rows == [(first.key, 1, "passed"), (second.key, 2, "running")]
    assert [r["key"] for r in _rows(server, database, "sessions")] == [session.key]


# -- threads and signals on one SQLite connection ------------------------------------------------


def test_threads_never_share_a_transaction(tmp_path: Path) -> None:
    """Eight threads begin and finish trials on one store while the main thread beats and records
    sessions: with no lock, one thread's BEGIN meets another's open transaction."""
    store = SQLiteStore(tmp_path)
    errors: list[BaseException] = []
    keys: list[str] = []
    barrier = threading.Barrier(9)

    def work() -> None:
        barrier.wait()
        try:
            for _ in range(25):
                key = new_key()
                store.begin(trial(key=key, identity=f"id-{key}"), [])
                store.finish(key, status="passed", main=1.0, metrics={}, folder=None, message=None)
                keys.append(key)
        except BaseException as err:  # noqa: BLE001 - the test lists what each thread met
            errors.append(err)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    barrier.wait()
    sessions = []
    for _ in range(50):
        key = new_key()
        store.begin_session(NewSession(key=key, command="pytest", commit=None, dirty=False, debug=False))
        store.beat("session", key, None, {"done": 1})
        store.end_session(key, 0)
        sessions.append(key)
    for thread in threads:
        thread.join(timeout=PATIENCE)
    store.close()
    assert errors == []
    with sqlite3.connect(tmp_path / "mitosis.sqlite") as db:
        trials = dict(db.execute("SELECT key, status FROM trials").fetchall())
        ended = dict(db.execute("SELECT key, status FROM sessions").fetchall())
    assert trials == {key: "passed" for key in keys} and len(keys) == 200
    assert ended == {key: "ended" for key in sessions}


SIGNALS = """
import os, random, signal, sqlite3, sys, threading, time
from pathlib import Path
from pytest_mitosis.store.sqlite import SQLiteStore

folder = Path(sys.argv[1])
store = SQLiteStore(folder)
other = sqlite3.connect(folder / "mitosis.sqlite", timeout=0, isolation_level=None)
handled = threading.Event()


MAIN = threading.get_ident()
TERM = {signal.SIGTERM}


def shoot():  # one SIGTERM at a time, at a random instant of the main thread's writes
    while True:
        handled.wait()
        handled.clear()
        time.sleep(random.uniform(0.0002, 0.003))
        signal.pthread_kill(MAIN, signal.SIGTERM)  # to the main thread, whose mask decides when it lands


def stop(*_):
    raise KeyboardInterrupt  # as pytest-mitosis does with SIGTERM


signal.signal(signal.SIGTERM, stop)
# a signal lands only while a write runs (unblocked around it): one landing between two writes, in this
# script's own bookkeeping, would be this script's KeyboardInterrupt, not the store's (a loaded machine hits it)
signal.pthread_sigmask(signal.SIG_BLOCK, TERM)
threading.Thread(target=shoot, daemon=True).start()
interrupts = locked = failed = 0
handled.set()
while True:
    try:
        if interrupts == int(sys.argv[2]):
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            break
        signal.pthread_sigmask(signal.SIG_UNBLOCK, TERM)  # a pending signal is raised here, inside the try
        store.beat("trial", "k", None, {"phase": "step"})
        signal.pthread_sigmask(signal.SIG_BLOCK, TERM)  # one arriving meanwhile is raised by this call
    except KeyboardInterrupt:
        signal.pthread_sigmask(signal.SIG_BLOCK, TERM)
        interrupts += 1
        try:  # another process can write at once: nothing holds the write lock
            other.execute("BEGIN IMMEDIATE")
            other.execute("ROLLBACK")
        except sqlite3.OperationalError:
            locked += 1
        handled.set()
    except sqlite3.Error as err:  # e.g. "cannot start a transaction within a transaction"
        failed += 1
        print(err)
        handled.set()
print(f"interrupts={interrupts} locked={locked} failed={failed}", flush=True)
os._exit(0)
"""


def test_signals_never_leave_a_transaction_open(tmp_path: Path) -> None:
    script = tmp_path / "signals.py"
    script.write_text(textwrap.dedent(SIGNALS), encoding="utf-8")
    (tmp_path / "trials").mkdir()
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "trials"), "400"],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
        env={**os.environ},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.strip().splitlines()[-1] == "interrupts=400 locked=0 failed=0", done.stdout + done.stderr


#: a conftest of the investigation: before the trial's call (where its record is taken) the session says it is
#: there and waits on a FIFO, in a blocking read (never a sleep: the test tells SQLite's busy wait by its sleep)
HELD_CALL = """
import os
import signal


def pytest_runtest_call(item):
    open(os.environ["MITOSIS_TEST_READY"], "w").close()
    with open(os.environ["MITOSIS_TEST_FIFO"]) as fifo:
        fifo.read(1)
"""


@pytest.mark.kernel
def test_a_signal_held_back_while_the_record_is_taken_leaves_the_trial_interrupted(tmp_path: Path) -> None:
    """SIGTERM while a trial's record is being taken: the store's transaction holds the signal back until it
    ends, then raises it, and the record it had just taken stayed ``running`` (a ``-n 2`` sweep stopped by
    SIGTERM left one trial running in one run of five). Here the session waits for the store's write lock
    (held by this test) inside that transaction when SIGTERM comes; the lock is then released."""
    root = git_init(
        write_investigation(
            tmp_path / "inv",
            '[tool.mitosis.steps]\nsq = ["sq:run", "sq:lookup"]\n',
            {"sq": 'lookup = {"x": {"a": 1}}\n\ndef run(x):\n    return {"main": x * x}\n', "conftest": HELD_CALL},
        )
    )
    fifo, ready = tmp_path / "go", tmp_path / "ready"
    os.mkfifo(fifo)
    env = clean_env(MITOSIS_TEST_FIFO=str(fifo), MITOSIS_TEST_READY=str(ready))
    out = tmp_path / "out.txt"
    with open(out, "w") as log:
        proc = background(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis"],
            cwd=root,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    text = lambda: out.read_text(errors="replace")  # noqa: E731
    wait_until("the session at the trial's call", ready.exists, proc, text)
    lock = sqlite3.connect(root / "trials" / "mitosis.sqlite", isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    try:
        with open(fifo, "w") as go:
            go.write("x")
        wait_until(
            "the session in SQLite's busy wait, taking the record",
            lambda: Path(f"/proc/{proc.pid}/wchan").read_text() == "hrtimer_nanosleep",
            proc,
            text,
        )
        os.kill(proc.pid, signal.SIGTERM)
    finally:
        lock.execute("ROLLBACK")
        lock.close()
    assert proc.wait(timeout=PATIENCE) == pytest.ExitCode.INTERRUPTED, text()
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    rows = db.execute("SELECT status, message FROM trials").fetchall()
    sessions = db.execute("SELECT status FROM sessions").fetchall()
    db.close()
    assert rows == [("interrupted", "KeyboardInterrupt: ")], (rows, text())
    assert sessions == [("interrupted",)]
