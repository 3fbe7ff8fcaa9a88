"""The trial store: records, refusals of foreign files, interrupted trials, concurrency.

The tests that run sessions against a store are parametrized over both backends (``backend``:
the default SQLite file, and a database on a real PostgreSQL server named by ``store`` in
``[tool.mitosis]``); the refusals of foreign or damaged files, the WAL and the backup are
SQLite's own.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from pytest_mitosis.store import SCHEMA_VERSION

from .conftest import background, clean_env, git, git_init, run_pytest, wait_until, write_investigation
from .pg_server import PASSWORD, PgServer

MODULE = """
import os
import time

lookup = {"frequency": {"a": 1, "b": 2, "c": 3, "d": 4}}


def run(frequency, pause=0.0):
    time.sleep(pause)
    return {"main": frequency, "metrics": {"pid": os.getpid()}}
"""


def start_session(root: Path, *args: str) -> subprocess.Popen[bytes]:
    """``pytest --mitosis ARGS`` in the background, as its own process group (output discarded)."""
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", *args]
    return background(argv, cwd=root, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


PYPROJECT = """
[tool.mitosis]
trials-folder = "{folder}"
{store}

[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""


def in_step(trials: Path) -> bool:
    """Whether a staged trial is in its step ``exp``: the kernel writes ``outcome.json`` just before calling it."""
    for outcome in trials.glob(".staging/*/outcome.json"):
        try:
            if json.loads(outcome.read_text(encoding="utf-8")).get("step") == "exp":
                return True
        except (OSError, ValueError):  # replaced as it was read
            pass
    return False


def study(root: Path, folder: str = "trials", store: str | None = None) -> Path:
    line = f'store = "{store}"' if store else ""
    return git_init(write_investigation(root, PYPROJECT.format(folder=folder, store=line), {"exp": MODULE}))


def records(db_path: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(db_path)
    db.row_factory = sqlite3.Row
    return db.execute("SELECT * FROM trials ORDER BY started").fetchall()


class Backend:
    """Where a test's sessions record their trials, and how the test reads the rows back."""

    def __init__(self, kind: str, url: str | None) -> None:
        self.kind = kind
        self.url = url  # None: the trials folder's mitosis.sqlite

    def rows(self, trials: Path) -> list[dict[str, Any]]:
        """Every trial row, oldest first (``trials``: the trials folder, for the SQLite default)."""
        if self.url is None:
            path = trials / "mitosis.sqlite"
            return [dict(r) for r in records(path)] if path.exists() else []
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.url, row_factory=dict_row) as db:
            return list(db.execute("SELECT * FROM trials ORDER BY started").fetchall())

    def sessions(self, trials: Path) -> list[dict[str, Any]]:
        """Every session row, oldest first."""
        if self.url is None:
            db = sqlite3.connect(trials / "mitosis.sqlite")
            db.row_factory = sqlite3.Row
            try:
                return [dict(r) for r in db.execute("SELECT * FROM sessions ORDER BY started")]
            finally:
                db.close()
        import psycopg
        from psycopg.rows import dict_row

        with psycopg.connect(self.url, row_factory=dict_row) as db:
            return list(db.execute("SELECT * FROM sessions ORDER BY started").fetchall())

    def execute(self, trials: Path, *statements: str) -> None:
        """Run SQL statements on the store, as another program would."""
        if self.url is None:
            db = sqlite3.connect(trials / "mitosis.sqlite")
            for statement in statements:
                db.execute(statement)
            db.commit()
            db.close()
            return
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as db:
            for statement in statements:
                db.execute(statement)


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", None)
    server: PgServer = request.getfixturevalue("pg_server")
    return Backend("postgresql", server.createdb("store"))


SESSIONSTART_CONFTEST = """
import os
import time


def pytest_sessionstart(session):
    with open(os.environ["MITOSIS_TEST_SESSIONSTART"], "w") as stream:
        stream.write(repr(time.time()))
"""


def test_a_record_holds_the_trial_and_junit_carries_key_iteration_commit(tmp_path: Path, backend: Backend) -> None:
    root = study(tmp_path / "study", store=backend.url)
    (root / "conftest.py").write_text(SESSIONSTART_CONFTEST, encoding="utf-8")
    git(root, "add", "conftest.py")
    git(root, "commit", "-qm", "conftest: when the session starts")
    sessionstart = tmp_path / "sessionstart"
    run = run_pytest(
        root,
        "--mitosis",
        "-k",
        "b",
        "--mitosis-trials-folder",
        str(tmp_path / "elsewhere"),
        env=clean_env(MITOSIS_TEST_SESSIONSTART=str(sessionstart)),
    )
    assert run.ret == 0, run.out
    props = run.properties("exp[b]")
    head = git(root, "rev-parse", "HEAD").strip()
    assert props["mitosis.commit"] == head
    assert props["mitosis.iteration"] == "1"
    (row,) = backend.rows(tmp_path / "elsewhere")
    assert row["key"] == props["mitosis.key"]
    assert (row["experiment"], row["iteration"], row["status"], row["debug"]) == ("exp", 1, "passed", 0)
    assert row["name"] == "trial_exp-b-1"
    assert row["main"] == "2"
    assert '"commit": "' + head in row["git"]
    assert '"text": "b"' in row["params"] and '"value": 2' in row["params"]
    assert Path(row["folder"]) == Path(props["mitosis.html"]).parent
    assert row["ended"] >= row["started"]
    (session,) = backend.sessions(tmp_path / "elsewhere")
    assert row["session"] == props["mitosis.session"] == session["key"]
    xml = tmp_path / "study-junit.xml"
    assert session["command"] == (
        f"python -m pytest -p no:cacheprovider --mitosis -k b --mitosis-trials-folder {tmp_path / 'elsewhere'} "
        f"--junitxml={xml}"
    )
    assert (session["host"], session["pid"], session["commit"], session["dirty"], session["debug"]) == (
        socket.gethostname(),
        row["pid"],
        head,
        0,
        0,
    )
    assert (session["status"], session["exitstatus"]) == ("ended", 0)
    assert session["started"] <= row["started"] <= row["ended"] <= session["ended"]
    assert session["started"] <= float(sessionstart.read_text()), "the session's start, not its row's writing"


def test_a_session_with_a_failed_trial_ends_with_exit_status_1_and_hides_the_store_password(
    tmp_path: Path, backend: Backend, request: pytest.FixtureRequest
) -> None:
    root = study(tmp_path / "study")
    given: list[str] = []
    if backend.kind == "postgresql":  # the store named on the command line, with a password
        server: PgServer = request.getfixturevalue("pg_server")
        database = server.createdb(owner="alice").split("/")[3].split("?")[0]
        backend = Backend("postgresql", server.url(database, "alice", PASSWORD))
        given = [f"--mitosis-store={backend.url}"]
    run = run_pytest(root, "--mitosis", *given, "--mitosis-param=exp.frequency=c", "--mitosis-eval=exp.pause=None")
    assert run.ret == 1, run.out  # time.sleep(None) fails at once
    (session,) = backend.sessions(root / "trials")
    assert (session["status"], session["exitstatus"]) == ("ended", 1)
    (row,) = backend.rows(root / "trials")
    assert (row["status"], row["session"]) == ("failed", session["key"])
    assert run.properties("exp[c-pause_None]")["mitosis.session"] == session["key"]
    assert f"mitosis session {session['key']}: 1 trial (1 failed); " in run.out
    shown = "".join(shlex.quote(a.replace(PASSWORD, "***")) + " " for a in given)  # as a shell would take it
    assert PASSWORD not in session["command"]
    assert session["command"] == (
        f"python -m pytest -p no:cacheprovider --mitosis {shown}"
        f"--mitosis-param=exp.frequency=c --mitosis-eval=exp.pause=None --junitxml={tmp_path / 'study-junit.xml'}"
    )


def test_a_file_that_is_not_a_store_is_refused_and_left_untouched(tmp_path: Path) -> None:
    root = study(tmp_path / "study", folder="../shared")
    store = tmp_path / "shared" / "mitosis.sqlite"
    store.parent.mkdir()
    store.write_bytes(b"these are my notes, not a database\n" * 100)
    before = store.read_bytes()
    run = run_pytest(root, "--mitosis", junit=False)
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        f"ERROR: mitosis: the trial store {store} cannot be used: file is not a database. It is not a "
        "pytest-mitosis store or it is damaged; nothing was written to it. Move it aside (or pass "
        "--mitosis-trials-folder for a new folder) and run again."
    ) in run.out
    assert store.read_bytes() == before
    assert sorted(p.name for p in store.parent.iterdir()) == ["mitosis.sqlite"]


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    root = study(tmp_path / "study", folder="../shared")
    store = tmp_path / "shared" / "mitosis.sqlite"
    store.parent.mkdir()
    db = sqlite3.connect(store)
    db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.execute("INSERT INTO meta VALUES ('schema_version', '99')")
    db.commit()
    db.close()
    run = run_pytest(root, "--mitosis", junit=False)
    assert run.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        f"ERROR: mitosis: the trial store {store} has schema version 99, written by a newer pytest-mitosis; "
        "this one knows version 6. Upgrade pytest-mitosis (pip install -U pytest-mitosis); the store was left as it is."
    ) in run.out


def test_a_session_killed_mid_trial_leaves_an_interrupted_record_and_no_finished_folder(
    tmp_path: Path, backend: Backend
) -> None:
    root = study(tmp_path / "study", store=backend.url)
    proc = start_session(root, "-k", "a", "--mitosis-eval=exp.pause=60")
    wait_until("trial a in its step", lambda: in_step(root / "trials"), proc)
    os.killpg(proc.pid, signal.SIGKILL)  # pytest and its kernel, mid-trial
    proc.wait()
    (row,) = backend.rows(root / "trials")
    assert row["status"] == "running"  # readable, and not complete
    later = run_pytest(root, "--mitosis", "-k", "b")
    assert later.ret == 0, later.out
    by_name = {r["name"]: r for r in backend.rows(root / "trials")}
    assert by_name["trial_exp-a-pause_60-1"]["status"] == "interrupted"
    assert by_name["trial_exp-a-pause_60-1"]["folder"] is None
    assert by_name["trial_exp-b-1"]["status"] == "passed"
    assert not list((root / "trials").glob("trial_exp-a-*")), "an unfinished trial never gets its final folder"


def test_sessions_starting_together_use_the_trials_folder_the_first_one_creates(tmp_path: Path) -> None:
    """Sessions started at the same moment on a fresh study all find no trials folder: one creates it,
    with its .gitignore, and the others use it instead of refusing it ("cannot be used: File exists",
    which the concurrency test below met one run in a few)."""
    from pytest_mitosis.execution.artifacts import prepare_trials_folder

    def prepare(folder: Path, barrier: threading.Barrier, errors: list[OSError]) -> None:
        barrier.wait()
        try:
            prepare_trials_folder(folder)
        except OSError as err:
            errors.append(err)

    for attempt in range(20):
        folder = tmp_path / f"study-{attempt}" / "trials"
        barrier = threading.Barrier(6)
        errors: list[OSError] = []
        threads = [threading.Thread(target=prepare, args=(folder, barrier, errors)) for _ in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        assert [p.name for p in folder.iterdir()] == [".gitignore"], "no temporary file left"
        assert (folder / ".gitignore").read_text(encoding="utf-8").endswith("\n*\n")


@pytest.mark.slow
def test_concurrent_sessions_and_workers_share_one_store_safely(tmp_path: Path, backend: Backend) -> None:
    """A ``-n 2`` session and two plain ones at the same moment (four writers): no lock errors, 0 lost,
    0 duplicated."""
    root = study(tmp_path / "study", store=backend.url)
    argvs = [
        ["--mitosis", "-n", "2"],
        ["--mitosis"],
        ["--mitosis"],
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=root,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for args in argvs
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out
        assert "database is locked" not in out.lower() and "operationalerror" not in out.lower(), out
    rows = backend.rows(root / "trials")
    assert len(rows) == 12, "no trial lost"
    assert all(r["status"] == "passed" for r in rows)
    iterations = Counter((r["identity"], r["iteration"]) for r in rows)
    assert max(iterations.values()) == 1, "no iteration number was handed out twice"
    assert sorted(Counter(r["name"].rsplit("-", 1)[0] for r in rows).values()) == [3, 3, 3, 3]
    assert sorted({r["iteration"] for r in rows}) == [1, 2, 3]
    folders = [r["folder"] for r in rows]
    assert len(set(folders)) == 12
    on_disk = sorted(str(p) for p in (root / "trials").iterdir() if p.name.startswith("trial_"))
    assert on_disk == sorted(folders), "every artifact folder is referenced by exactly one record"


def test_a_trials_folder_whose_path_has_uri_characters_is_read_correctly(tmp_path: Path) -> None:
    from pytest_mitosis.store import NewTrial, Reader, SQLiteStore

    folder = tmp_path / "odd?name#50%" / "trials"
    store = SQLiteStore(folder)
    store.begin(
        NewTrial(
            "k1",
            "exp",
            "[]",
            "a",
            "trial_exp-a",
            "pyproject.toml::exp[a]",
            False,
            {"commit": None},
            1,
            {},
            [{"name": "exp", "function": "m:f", "lookup": None}],
            [],
        ),
        (),
    )
    store.finish("k1", status="passed", main=1, metrics={}, folder=None, message=None)
    store.close()
    assert [r.key for r in Reader(folder).trials()] == ["k1"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["odd?name#50%"], "nothing written beside it"


def test_the_readers_refuse_a_store_from_a_newer_version(tmp_path: Path) -> None:
    from pytest_mitosis.store import Reader, RecordsError, SQLiteStore

    SQLiteStore(tmp_path / "trials").close()
    db = sqlite3.connect(tmp_path / "trials" / "mitosis.sqlite")
    db.execute("UPDATE meta SET value='99' WHERE name='schema_version'")
    db.commit()
    db.close()
    with pytest.raises(RecordsError, match="has schema version 99, written by a newer pytest-mitosis; this one reads"):
        Reader(tmp_path / "trials")


def _rows(path: Path) -> list[tuple[str, str]]:
    """``(variant, status)`` of every trial (names also carry eval values: trial_exp-b-pause60-1)."""
    db = sqlite3.connect(path)
    found = db.execute("SELECT name, status FROM trials ORDER BY name").fetchall()
    db.close()
    return [(name.split("-")[1], status) for name, status in found]


def test_after_each_session_the_store_file_alone_carries_every_finished_trial(tmp_path: Path) -> None:
    root = study(tmp_path / "study")
    assert run_pytest(root, "--mitosis", "-k", "a or b", junit=False).ret == 0
    failing = run_pytest(
        root, "--mitosis", "--mitosis-param=exp.frequency=c", "--mitosis-eval=exp.pause='not a number'", junit=False
    )
    assert failing.ret == pytest.ExitCode.TESTS_FAILED, failing.out  # a session that ends with a failed trial
    trials = root / "trials"
    wal = trials / "mitosis.sqlite-wal"
    assert not wal.exists() or wal.stat().st_size == 0, "the WAL was folded into the main file"
    copy = tmp_path / "copied-alone"
    copy.mkdir()
    shutil.copyfile(trials / "mitosis.sqlite", copy / "mitosis.sqlite")  # what rsync of the one file does
    assert _rows(copy / "mitosis.sqlite") == [("a", "passed"), ("b", "passed"), ("c", "failed")]
    listed = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "history", "--trials-folder", str(copy)],
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert listed.returncode == 0 and listed.stdout.count("\n") == 4, listed.stdout + listed.stderr


def test_a_backup_taken_while_a_session_runs_is_one_consistent_file(tmp_path: Path) -> None:
    root = study(tmp_path / "study")
    assert run_pytest(root, "--mitosis", "-k", "a", junit=False).ret == 0
    proc = start_session(root, "-k", "b", "--mitosis-eval=exp.pause=60")
    try:
        wait_until(
            "the second trial running", lambda: ("b", "running") in _rows(root / "trials" / "mitosis.sqlite"), proc
        )
        dest = tmp_path / "backups"
        dest.mkdir()
        done = subprocess.run(
            [sys.executable, "-m", "pytest_mitosis", "backup", str(dest)],
            cwd=root,
            capture_output=True,
            text=True,
            env=clean_env(),
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout == f"backup: {dest / 'mitosis.sqlite'}\n"
        assert sorted(p.name for p in dest.iterdir()) == ["mitosis.sqlite"], "one self-contained file"
        assert (dest / "mitosis.sqlite").read_bytes()[18:20] == b"\x01\x01", "a rollback-journal file, not WAL"
        assert _rows(dest / "mitosis.sqlite") == [("a", "passed"), ("b", "running")]
        again = subprocess.run(
            [sys.executable, "-m", "pytest_mitosis", "backup", str(dest / "mitosis.sqlite")],
            cwd=root,
            capture_output=True,
            text=True,
            env=clean_env(),
        )
        assert again.returncode == 2
        assert again.stderr == (
            f"pytest-mitosis: {dest / 'mitosis.sqlite'} exists already; choose a new file name "
            "(the backup never overwrites a file).\n"
        )
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _empty_beside_trial_folders(trials: Path) -> str:
    (trials / "trial_exp-a-1_0123abcd").mkdir(parents=True)
    (trials / "mitosis.sqlite").write_bytes(b"")
    return (
        f"ERROR: mitosis: the trial store {trials / 'mitosis.sqlite'} is empty (0 bytes), but {trials} holds 1 "
        "trial folder (trial_exp-a-1_0123abcd): the store that recorded them was truncated or lost, and a new one "
        "would number trials from 1 again beside them. Restore the store from a copy or backup, or move the trial "
        "folders and the empty file aside; nothing was written."
    )


def _drop(trials: Path, *tables: str) -> None:
    from pytest_mitosis.store import SQLiteStore

    SQLiteStore(trials).close()
    db = sqlite3.connect(trials / "mitosis.sqlite")
    for table in tables:
        db.execute(f"DROP TABLE {table}")
    db.commit()
    db.close()


def _missing_beside_trial_folders(trials: Path) -> str:
    (trials / "trial_exp-a-1_0123abcd").mkdir(parents=True)
    (trials / "trial_exp-b-1_4567cdef").mkdir()
    return (
        f"ERROR: mitosis: the trial store {trials / 'mitosis.sqlite'} does not exist, but {trials} holds 2 "
        "trial folders (trial_exp-a-1_0123abcd, ...): the store that recorded them was truncated or lost, and a new "
        "one would number trials from 1 again beside them. Restore the store from a copy or backup, or move the "
        "trial folders aside; nothing was written."
    )


def _tables_gone(trials: Path) -> str:
    _drop(trials, "trials", "locks", "sessions")
    return (
        f"ERROR: mitosis: the trial store {trials / 'mitosis.sqlite'} cannot be used: the tables trials, locks, sessions are "
        "gone (damaged, or edited by hand); nothing was written to it. Restore it from a copy or backup, or move it "
        "aside (or pass --mitosis-trials-folder for a new folder) and run again."
    )


def _every_table_gone(trials: Path) -> str:
    _drop(trials, "acceptances", "trials", "locks", "environments", "meta", "sessions", "beats")
    return (
        f"ERROR: mitosis: the trial store {trials / 'mitosis.sqlite'} cannot be used: it is a SQLite database "
        "without any table (not a store, or one whose tables were dropped). It is not a pytest-mitosis store or it "
        "is damaged; nothing was written to it."
    )


def _foreign_sqlite(trials: Path) -> str:
    trials.mkdir()
    db = sqlite3.connect(trials / "mitosis.sqlite")
    db.execute("CREATE TABLE notes (day TEXT, text TEXT)")
    db.execute("INSERT INTO notes VALUES ('monday', 'my lab notes')")
    db.commit()
    db.close()
    return (
        f"ERROR: mitosis: the trial store {trials / 'mitosis.sqlite'} cannot be used: it has the tables notes but "
        "none of pytest-mitosis's. It is not a pytest-mitosis store or it is damaged; nothing was written to it."
    )


def _store_is_a_directory(trials: Path) -> str:
    (trials / "mitosis.sqlite").mkdir(parents=True)
    return (
        f"ERROR: mitosis: the trial store {trials / 'mitosis.sqlite'} is a directory, not a file. Move that "
        "directory aside (pytest-mitosis creates the store there), or choose another trials folder "
        "(--mitosis-trials-folder DIR)."
    )


def _trials_folder_is_a_file(trials: Path) -> str:
    trials.write_text("not a folder\n")
    return (
        f"ERROR: mitosis: the trials folder {trials} cannot be used: it exists and is not a folder. Point "
        "--mitosis-trials-folder (or trials-folder in [tool.mitosis]) at a folder you can write, or move what is in "
        "the way."
    )


def _immutable_trials_folder(trials: Path) -> str:
    trials.mkdir()
    if subprocess.run(["chattr", "+i", str(trials)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here: as root, nothing else makes a folder unwritable")
    return (
        f"ERROR: mitosis: the trials folder {trials} is not writable for this user: trials and the store are "
        "written there. Make it writable (chmod u+w, or chattr -i if it is immutable), or choose another trials "
        "folder (--mitosis-trials-folder DIR)."
    )


UNUSABLE = {
    f.__name__.lstrip("_"): f
    for f in (
        _empty_beside_trial_folders,
        _missing_beside_trial_folders,
        _tables_gone,
        _every_table_gone,
        _foreign_sqlite,
        _store_is_a_directory,
        _trials_folder_is_a_file,
        _immutable_trials_folder,
    )
}


def _state(path: Path) -> dict[str, bytes | None]:
    if path.is_file():
        return {"": path.read_bytes()}
    return {str(p.relative_to(path)): p.read_bytes() if p.is_file() else None for p in sorted(path.rglob("*"))}


@pytest.mark.parametrize("case", list(UNUSABLE))
def test_an_unusable_store_or_trials_folder_is_refused_and_left_byte_identical(case: str, tmp_path: Path) -> None:
    root = study(tmp_path / "study", folder="../shared")
    trials = tmp_path / "shared"
    expected = UNUSABLE[case](trials)
    try:
        before = _state(trials)
        run = run_pytest(root, "--mitosis", junit=False)
        after = _state(trials)
    finally:
        subprocess.run(["chattr", "-i", str(trials)], capture_output=True)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    assert expected in run.out
    assert "INTERNALERROR" not in run.out and "Traceback" not in run.out
    assert after == before, "nothing was written: not the header, not a -wal or -shm beside it"


def test_a_session_ended_by_ctrl_c_leaves_the_store_in_one_file(tmp_path: Path) -> None:
    root = study(tmp_path / "study")
    assert run_pytest(root, "--mitosis", "-k", "a", junit=False).ret == 0
    proc = start_session(root, "--mitosis-param=exp.frequency=b", "--mitosis-eval=exp.pause=60")
    store = root / "trials" / "mitosis.sqlite"
    try:
        wait_until("trial b in its step", lambda: ("b", "running") in _rows(store) and in_step(root / "trials"), proc)
        os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl-C does, inside the step's sleep
        proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    copy = tmp_path / "copied-alone"
    copy.mkdir()
    shutil.copyfile(store, copy / "mitosis.sqlite")
    found = dict(_rows(copy / "mitosis.sqlite"))
    assert found["a"] == "passed"
    assert found["b"] == "interrupted", "finalised, and in the main file"


HOOK_STORE = """
import pytest
from pytest_mitosis.store import SQLiteStore


@pytest.hookimpl(optionalhook=True)
def pytest_mitosis_make_store(config, folder):
    return SQLiteStore(folder, path=folder.parent / "elsewhere.sqlite")
"""


def test_the_session_reads_back_the_store_a_plugin_made(tmp_path: Path) -> None:
    """The end-of-session report reads the store the session wrote, not ``<trials>/mitosis.sqlite``."""
    root = study(tmp_path / "study")
    (root / "conftest.py").write_text(HOOK_STORE, encoding="utf-8")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "a store of our own")
    run = run_pytest(root, "--mitosis", "-k", "a")
    assert run.ret == 0, run.out
    key = run.properties("exp[a]")["mitosis.key"]
    assert [r["key"] for r in records(root / "elsewhere.sqlite")] == [key]
    assert not (root / "trials" / "mitosis.sqlite").exists()
    index = (root / "trials" / "report" / "index.html").read_text(encoding="utf-8")
    assert f"trials/{key}.html" in index


def test_a_relative_sqlite_store_url_is_read_like_the_other_paths(tmp_path: Path) -> None:
    """Command line: from the current directory; ini key: from the rootdir; [tool.mitosis]: from the pyproject."""
    root = study(tmp_path / "study", store="sqlite:///../table.sqlite")
    sub = root / "sub"
    sub.mkdir()
    assert run_pytest(root, "--mitosis-check", junit=False).ret == 0
    assert (tmp_path / "table.sqlite").is_file()
    ini = run_pytest(root, "--mitosis-check", "-o", "mitosis_store=sqlite:///ini/s.sqlite", junit=False)
    assert ini.ret == 0, ini.out
    assert f"\nmitosis: store sqlite:///{root / 'ini' / 's.sqlite'}\n" in ini.out, "the header names it, absolute"
    assert (root / "ini" / "s.sqlite").is_file()
    shutil.rmtree(root / "ini")  # another session's store in the work tree would make it dirty
    cli = run_pytest(
        sub, "--mitosis-check", "--mitosis-store", "sqlite:///here.sqlite", "--rootdir", str(root), junit=False
    )
    assert cli.ret == 0, cli.out
    assert (sub / "here.sqlite").is_file()
    assert not (root / "trials" / "mitosis.sqlite").exists(), "the default store was never made"


def _old_store(trials: Path, backend: Backend) -> str:
    """A store as pytest-mitosis wrote it before sessions were recorded (schema version 1), with one trial."""
    from pytest_mitosis.store import NewTrial, make_store

    store = make_store(backend.url, trials)
    store.begin(
        NewTrial(
            "0ld0ld00", "exp", "[]", "a", "trial_exp-a", "pyproject.toml::exp[a]", False, {"commit": None}, 1, {},
            [{"name": "exp", "function": "m:f", "lookup": None}], [],
        ),
        (),
    )  # fmt: skip
    store.finish("0ld0ld00", status="passed", main=1, metrics={}, folder=None, message=None)
    store.close()
    backend.execute(
        trials,
        "DROP TABLE acceptances",
        "DROP TABLE beats",
        "DROP TABLE sessions",
        "DROP INDEX trials_session",
        "ALTER TABLE trials DROP COLUMN session",
        "ALTER TABLE trials DROP COLUMN directions",
        "ALTER TABLE trials DROP COLUMN job",
        "UPDATE meta SET value='1' WHERE name='schema_version'",
    )
    if backend.url is None:
        db = sqlite3.connect(trials / "mitosis.sqlite")
        db.execute("VACUUM")  # one file, no WAL: what a closed store of version 1 looks like
        db.close()
    return "0ld0ld00"


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", *args], cwd=cwd, env=clean_env(), capture_output=True, text=True
    )


def test_reading_a_store_from_before_sessions_writes_nothing_and_finds_no_sessions(
    tmp_path: Path, backend: Backend
) -> None:
    from pytest_mitosis.store import Reader

    trials = tmp_path / "trials"
    old = _old_store(trials, backend)
    before = (trials / "mitosis.sqlite").read_bytes() if backend.url is None else None
    with Reader(trials, backend.url) as reader:
        assert reader.sessions() == []
        assert [(r.key, r.session) for r in reader.trials()] == [(old, None)]
        assert list(reader.trials(session="0123abcd")) == []
    store = ["--store", backend.url] if backend.url else []
    where = trials / "mitosis.sqlite" if backend.url is None else backend.url
    listed = _cli(tmp_path, "history", "--trials-folder", str(trials), *store, "--session")
    assert (listed.returncode, listed.stdout) == (0, f"no sessions recorded in {where}\n"), listed.stderr
    bad = _cli(tmp_path, "history", "--trials-folder", str(trials), *store, "--session", "abcd")
    assert bad.returncode == 2
    assert bad.stderr == (
        f"pytest-mitosis: no session has a key starting with 'abcd': {where} was written before pytest-mitosis "
        "recorded sessions (it has none yet).\n"
    )
    if backend.url is None:
        assert (trials / "mitosis.sqlite").read_bytes() == before, "byte-identical"
    else:
        with Reader(trials, backend.url) as reader:
            assert reader._source.version == 1, "the schema version is unchanged"
        assert backend.rows(trials)[0].get("session", "absent") == "absent", "no column was added"


def test_a_store_from_before_sessions_gains_them_when_a_session_opens_it(tmp_path: Path, backend: Backend) -> None:
    from pytest_mitosis.store import NewSession, Reader, make_store

    trials = tmp_path / "trials"
    old = _old_store(trials, backend)
    (before,) = backend.rows(trials)
    store = make_store(backend.url, trials)
    store.begin_session(NewSession("5e55104a", "pytest --mitosis", "0" * 40, dirty=False, debug=True))  # type: ignore[attr-defined]
    store.end_session("5e55104a", 1)  # type: ignore[attr-defined]
    store.close()
    (after,) = backend.rows(trials)
    assert after == {**before, "session": None, "directions": None, "job": None}, "the old trial is kept as it was"
    with Reader(trials, backend.url) as reader:
        assert reader._source.version == SCHEMA_VERSION
        (session,) = reader.sessions()
        assert [r.key for r in reader.trials()] == [old]
    assert (session.key, session.status, session.exitstatus, session.debug, session.trials) == (
        "5e55104a",
        "ended",
        1,
        True,
        {},
    )
    assert session.state == "exit 1 (tests failed)"


def _shape(trials: Path, backend: Backend) -> list[tuple[Any, ...]]:
    """Every column (table, name, type, nullable, default) and index name of the store, sorted."""
    if backend.url is None:
        db = sqlite3.connect(trials / "mitosis.sqlite")
        try:
            tables = [t for (t,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            found: list[tuple[Any, ...]] = [
                (t, c[1], c[2], c[3], c[4], c[5]) for t in tables for c in db.execute(f"PRAGMA table_info({t})")
            ]
            found += [("index", n) for (n,) in db.execute("SELECT name FROM sqlite_master WHERE type='index'")]
        finally:
            db.close()
        return sorted(found, key=repr)
    import psycopg

    with psycopg.connect(backend.url) as db:
        found = list(
            db.execute(
                "SELECT table_name, column_name, data_type, is_nullable, column_default FROM "
                "information_schema.columns WHERE table_schema = current_schema()"
            ).fetchall()
        )
        found += [
            ("index", n) for (n,) in db.execute("SELECT indexname FROM pg_indexes WHERE schemaname = current_schema()")
        ]
    return sorted(found, key=repr)


def test_an_upgraded_store_has_the_shape_of_a_new_one(
    tmp_path: Path, backend: Backend, request: pytest.FixtureRequest
) -> None:
    """One schema, one list of migrations: a version-1 store brought to the current version has the same
    columns (types, nullability, defaults, in order) and indexes as a store created now."""
    from pytest_mitosis.store import make_store

    old = tmp_path / "old"
    _old_store(old, backend)
    make_store(backend.url, old).close()
    upgraded = _shape(old, backend)
    if backend.url is not None:
        server: PgServer = request.getfixturevalue("pg_server")
        fresh_backend = Backend("postgresql", server.createdb())
    else:
        fresh_backend = backend
    make_store(fresh_backend.url, tmp_path / "new").close()
    fresh = _shape(tmp_path / "new", fresh_backend)
    if backend.url is not None:  # a PostgreSQL store made before version 4 keeps its iteration constraint's index
        fresh = [row for row in fresh if row != ("index", "trials_iteration")]
        upgraded = [row for row in upgraded if row != ("index", "trials_iteration")]
    assert upgraded == fresh


GATE_MESSAGE = (
    "main moved from 1 (trial_exp-a-1, key 0ld0ld00) to 2 (+1, +100%): higher by more than the allowed 5%\n\n"
    "notebook: x.html"
)


def _finished(store: Any, *trials: tuple[str, str, Any, str | None]) -> None:
    """Record each ``(key, status, main, message)`` as a finished trial of one identity, in order."""
    from pytest_mitosis.store import NewTrial

    for key, status, main, message in trials:
        store.begin(
            NewTrial(
                key, "exp", "[]", "a", "trial_exp-a", "pyproject.toml::exp[a]", False, {"commit": None}, 1, {},
                [{"name": "exp", "function": "m:f", "lookup": None}], [],
            ),
            (),
        )  # fmt: skip
        store.finish(key, status=status, main=main, metrics={}, folder=None, message=message)


def test_a_store_from_before_acceptances_is_read_as_it_is_then_gains_them(tmp_path: Path, backend: Backend) -> None:
    """Schema 3 → 4: a reader leaves a version-3 store as it is; a writer adds the ``acceptances`` table, and
    ``accept`` records a gate-failed trial as the baseline (once: a second call changes nothing)."""
    from pytest_mitosis.store import NotAcceptable, Reader, make_store

    trials = tmp_path / "trials"
    store = make_store(backend.url, trials)
    _finished(
        store,
        ("0ld0ld00", "passed", 1, None),
        ("9a7e0000", "failed", 2, GATE_MESSAGE),
        ("57e90000", "failed", None, "ZeroDivisionError: division by zero"),
    )
    store.close()
    backend.execute(
        trials,
        "DROP TABLE acceptances",
        "ALTER TABLE trials DROP COLUMN directions",
        "ALTER TABLE trials DROP COLUMN job",
        "UPDATE meta SET value='3' WHERE name='schema_version'",
    )
    with Reader(trials, backend.url) as reader:
        assert reader._source.version == 3
        assert [r.accepted for r in reader.trials()] == [None, None, None]
    with Reader(trials, backend.url) as reader:
        assert reader._source.version == 3, "reading never upgrades"
    store = make_store(backend.url, trials)
    try:
        assert store.previous("exp", "[]").key == "0ld0ld00"  # type: ignore[union-attr]
        with pytest.raises(NotAcceptable) as passed:
            store.accept("0ld0ld00", "ann", "lab1", "")  # type: ignore[attr-defined]
        assert str(passed.value) == (
            "mitosis: trial trial_exp-a-1 (key 0ld0ld00) cannot be accepted: it passed, so the drift gate already "
            "compares the next trial of its identity with it (or with a newer passed trial); there is nothing to "
            "accept."
        )
        with pytest.raises(NotAcceptable) as crashed:
            store.accept("57e90000", "ann", "lab1", "")  # type: ignore[attr-defined]
        assert str(crashed.value) == (
            "mitosis: trial trial_exp-a-3 (key 57e90000) cannot be accepted: it has no main (it failed before its "
            "steps returned), so there is no result to accept."
        )
        done = store.accept("9a7e0000", "ann", "lab1", "the new loss is right")  # type: ignore[attr-defined]
        assert (done.baseline, done.accepted_by, done.already) == ("0ld0ld00", "ann", False)
        again = store.accept("9a7e0000", "bob", "lab2", "")  # type: ignore[attr-defined]
        assert (again.accepted_by, again.reason, again.already) == ("ann", "the new loss is right", True)
        previous = store.previous("exp", "[]")
        assert previous is not None and (previous.key, previous.main, previous.accepted) == ("9a7e0000", 2, True)
        _finished(store, ("b4d00000", "failed", 3, GATE_MESSAGE), ("1a5e0000", "passed", 3, None))
        with pytest.raises(NotAcceptable) as older:
            store.accept("b4d00000", "ann", "lab1", "")  # type: ignore[attr-defined]
        assert str(older.value) == (
            "mitosis: trial trial_exp-a-4 (key b4d00000) cannot be accepted: a newer trial of its identity, "
            "trial_exp-a-5 (key 1a5e0000), is the drift gate's baseline (the gate compares with the newest passed "
            "or accepted trial). Accept a trial newer than it, or run the identity again."
        )
    finally:
        store.close()
    with Reader(trials, backend.url) as reader:
        assert reader._source.version == SCHEMA_VERSION
        accepted = {r.key: r.accepted for r in reader.trials()}
    assert [k for k, v in accepted.items() if v is not None] == ["9a7e0000"]
    # migrate takes the acceptance along with its trial
    from pytest_mitosis.store.migrate import migrate
    from pytest_mitosis.store.url import parse

    source = parse(backend.url) if backend.url else parse(f"sqlite:///{trials / 'mitosis.sqlite'}")
    migrate(source, parse(f"sqlite:///{tmp_path / 'copy.sqlite'}"))
    with Reader(tmp_path, f"sqlite:///{tmp_path / 'copy.sqlite'}") as reader:
        copied = {r.key: r.accepted for r in reader.trials() if r.accepted is not None}
    assert list(copied) == ["9a7e0000"] and copied["9a7e0000"] == accepted["9a7e0000"]
    record = accepted["9a7e0000"]
    assert record is not None and (record.by, record.host, record.reason, record.baseline) == (
        "ann", "lab1", "the new loss is right", "0ld0ld00",
    )  # fmt: skip


def test_a_store_url_naming_someone_elses_database_is_refused_and_left_byte_identical(tmp_path: Path) -> None:
    """The refusals of foreign files hold for any file name a store URL gives, not only mitosis.sqlite."""
    notes = tmp_path / "notes.db"
    expected = _foreign_sqlite(tmp_path / "lab")  # a foreign database, then under another name
    (tmp_path / "lab" / "mitosis.sqlite").rename(notes)
    before = notes.read_bytes()
    root = study(tmp_path / "study", store=f"sqlite:///{notes}")
    run = run_pytest(root, "--mitosis", junit=False)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    assert expected.replace(str(tmp_path / "lab" / "mitosis.sqlite"), str(notes)) in run.out
    assert notes.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lab", "notes.db", "study"], "no -wal or -shm beside it"


@pytest.mark.parametrize("given", ["pyproject.toml", "."])
def test_a_trials_folder_that_is_the_pyproject_or_holds_it_is_refused_saying_so(tmp_path: Path, given: str) -> None:
    """Not exit 5 "no tests ran" without a word: the trials folder is never collected, and here it was the code."""
    root = study(tmp_path / "study")
    pyproject = root / "pyproject.toml"
    before = pyproject.read_bytes()
    run = run_pytest(root, "--mitosis", f"--mitosis-trials-folder={given}", junit=False)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    folder = (root / given).resolve()
    assert (
        f"ERROR: mitosis: the trials folder {folder} {'is' if given != '.' else 'holds'} the investigation's "
        f"pyproject.toml ({pyproject}): trial folders and the store go into a folder of their own, never over or "
        "around the code. Point --mitosis-trials-folder (or trials-folder in [tool.mitosis]) at a new folder, such "
        f"as {root / 'trials'}." in run.out
    )
    assert pyproject.read_bytes() == before
    assert not (root / "mitosis.sqlite").exists() and not list(root.glob("trial_*"))
    assert git(root, "status", "--porcelain") == ""


def test_a_run_into_trials_debug_then_into_trials_as_a_mitosis_script_does(tmp_path: Path) -> None:
    """``-F trials/debug`` first, then ``-F trials``: the second is not refused as a lost store, git stays quiet,
    and ``history`` where the store is missing or empty points to the one a level down that holds the trials."""
    root = study(tmp_path / "study")
    trials = root / "trials"
    first = run_pytest(root, "--mitosis", "--mitosis-trials-folder=trials/debug", "-k", "a", junit=False)
    assert first.ret == 0, first.out
    (trial,) = (trials / "debug").glob("trial_exp-a-1_*")
    assert git(root, "status", "--porcelain", "--untracked-files=all") == "", "trials/ ignores itself too"
    assert (trials / ".gitignore").read_text(encoding="utf-8").endswith("\n*\n")

    pointer = (
        f"{trials / 'debug' / 'mitosis.sqlite'} holds 1 trial: python -m pytest_mitosis --trials-folder trials/debug "
        "history"
    )
    missing = _cli(root, "history")
    assert missing.returncode == 2
    assert missing.stderr.rstrip("\n").endswith(f"pytest --mitosis-store URL).\n{pointer}"), missing.stderr

    second = run_pytest(root, "--mitosis", "--mitosis-check", "--mitosis-trials-folder=trials", junit=False)
    assert second.ret == 0, second.out
    assert "truncated or lost" not in second.out and "mitosis check: 4 " in second.out
    assert (trials / "mitosis.sqlite").is_file() and trial.is_dir()
    assert git(root, "status", "--porcelain", "--untracked-files=all") == "", "no mitosis.sqlite shown untracked"

    empty = _cli(root, "history")
    assert empty.returncode == 0, empty.stderr
    assert empty.stdout == f"no trials in {trials / 'mitosis.sqlite'}\n{pointer}\n"
    below = _cli(root, "--trials-folder", "trials/debug", "history")  # the command as printed
    assert below.returncode == 0 and "exp" in below.stdout and trial.name.rsplit("_", 1)[1] in below.stdout


def test_a_trials_lookups_of_earlier_trials_are_index_searches(tmp_path: Path) -> None:
    """Each trial looks up earlier trials: its experiment's previous one (the package warning), its identity's
    previous one with the same inputs (non-determinism) and its baseline (the drift gate). In a store of 10,000
    trials, sorting every trial of the experiment made each trial 5 ms slower than in a new store (issue 28).
    SQLite's plan, which does not depend on the machine's speed, says each is an index search with no sort."""
    from pytest_mitosis.store import make_store
    from pytest_mitosis.store.queries import BASELINE_SQL, PREVIOUS_IN_EXPERIMENT, SAME_INPUTS_BEFORE

    make_store(None, tmp_path).close()
    db = sqlite3.connect(tmp_path / "mitosis.sqlite")
    expected = {
        PREVIOUS_IN_EXPERIMENT: ("exp", "k", 0.0),
        SAME_INPUTS_BEFORE: ("exp", "id", "c", 1, "k", 0.0),
        BASELINE_SQL: ("exp", "id", "k"),
    }
    plans = {sql: [row[3] for row in db.execute(f"EXPLAIN QUERY PLAN {sql}", args)] for sql, args in expected.items()}
    db.close()
    assert plans[PREVIOUS_IN_EXPERIMENT][0] == (
        "SEARCH t USING INDEX trials_experiment_started (experiment=? AND started<?)"
    )
    assert plans[SAME_INPUTS_BEFORE][0] == (
        "SEARCH trials USING INDEX trials_identity_started (experiment=? AND identity=? AND started<?)"
    )
    assert plans[BASELINE_SQL][0] == "SEARCH t USING INDEX trials_identity_started (experiment=? AND identity=?)"
    for plan in plans.values():
        assert not [step for step in plan if "TEMP B-TREE" in step or step.startswith("SCAN t")], plan
