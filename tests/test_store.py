"""The SQLite trial store: records, refusals of foreign files, interrupted trials, concurrency."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from .conftest import clean_env, git, git_init, run_pytest, write_investigation

MODULE = """
import os
import time

lookup = {"frequency": {"a": 1, "b": 2, "c": 3, "d": 4}}


def run(frequency, pause=0.0):
    time.sleep(pause)
    return {"main": frequency, "metrics": {"pid": os.getpid()}}
"""

PYPROJECT = """
[tool.mitosis]
trials-folder = "{folder}"

[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""


def study(root: Path, folder: str = "trials") -> Path:
    return git_init(write_investigation(root, PYPROJECT.format(folder=folder), {"exp": MODULE}))


def records(db_path: Path) -> list[sqlite3.Row]:
    db = sqlite3.connect(db_path)
    db.row_factory = sqlite3.Row
    return db.execute("SELECT * FROM trials ORDER BY started").fetchall()


def test_a_record_holds_the_trial_and_junit_carries_key_iteration_commit(tmp_path: Path) -> None:
    root = study(tmp_path / "study")
    run = run_pytest(root, "--mitosis", "-k", "b", "--mitosis-trials-folder", str(tmp_path / "elsewhere"))
    assert run.ret == 0, run.out
    props = run.properties("exp[b]")
    head = git(root, "rev-parse", "HEAD").strip()
    assert props["mitosis.commit"] == head
    assert props["mitosis.iteration"] == "1"
    (row,) = records(tmp_path / "elsewhere" / "mitosis.sqlite")
    assert row["key"] == props["mitosis.key"]
    assert (row["experiment"], row["iteration"], row["status"], row["debug"]) == ("exp", 1, "passed", 0)
    assert row["name"] == "trial_exp-b-1"
    assert row["main"] == "2"
    assert '"commit": "' + head in row["git"]
    assert '"text": "b"' in row["params"] and '"value": 2' in row["params"]
    assert Path(row["folder"]) == Path(props["mitosis.html"]).parent
    assert row["ended"] >= row["started"]


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
        "this one knows version 1. Upgrade pytest-mitosis (pip install -U pytest-mitosis); the store was left as it is."
    ) in run.out


def test_a_session_killed_mid_trial_leaves_an_interrupted_record_and_no_finished_folder(tmp_path: Path) -> None:
    root = study(tmp_path / "study")
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "-k", "a", "--mitosis-eval=exp.pause=60"]
    proc = subprocess.Popen(argv, cwd=root, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    db_path = root / "trials" / "mitosis.sqlite"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if db_path.exists() and (root / "trials" / ".staging").exists() and any((root / "trials" / ".staging").iterdir()):
            staged = next((root / "trials" / ".staging").iterdir())
            if (staged / "outcome.json").exists() and '"step": "exp"' in (staged / "outcome.json").read_text():
                break
        time.sleep(0.2)
    else:
        os.killpg(proc.pid, signal.SIGKILL)
        pytest.fail("the trial never started")
    os.killpg(proc.pid, signal.SIGKILL)  # pytest and its kernel, mid-trial
    proc.wait()
    (row,) = records(db_path)
    assert row["status"] == "running"  # readable, and not complete
    later = run_pytest(root, "--mitosis", "-k", "b")
    assert later.ret == 0, later.out
    by_name = {r["name"]: r for r in records(db_path)}
    assert by_name["trial_exp-a-pause_60-1"]["status"] == "interrupted"
    assert by_name["trial_exp-a-pause_60-1"]["folder"] is None
    assert by_name["trial_exp-b-1"]["status"] == "passed"
    assert not list((root / "trials").glob("trial_exp-a-*")), "an unfinished trial never gets its final folder"


def test_concurrent_sessions_and_workers_share_one_store_safely(tmp_path: Path) -> None:
    """``-n 4`` plus two more sessions at the same moment: no lock errors, unique iterations."""
    root = study(tmp_path / "study")
    argvs = [
        ["--mitosis", "-n", "4"],
        ["--mitosis"],
        ["--mitosis"],
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
            cwd=root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for args in argvs
    ]
    outputs = [p.communicate(timeout=600)[0] for p in procs]
    for proc, out in zip(procs, outputs):
        assert proc.returncode == 0, out
        assert "database is locked" not in out.lower() and "operationalerror" not in out.lower(), out
    rows = records(root / "trials" / "mitosis.sqlite")
    assert len(rows) == 12
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
    store.begin(NewTrial("k1", "exp", "[]", "a", "trial_exp-a", "pyproject.toml::exp[a]", False, {"commit": None}, 1,
                         {}, [{"name": "exp", "function": "m:f", "lookup": None}], []), ())
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
