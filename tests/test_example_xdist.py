"""The shipped example, run as the README says, and under pytest-xdist (``-n 2``)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from .conftest import EXAMPLE, Run, git_init, run_pytest


@pytest.fixture(scope="module")
def example_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    root = tmp_path_factory.mktemp("example") / "sine"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("trials", "__pycache__"))
    git_init(root)
    return root, run_pytest(root, "--mitosis", "-n", "2")


def test_the_example_runs_both_trials_on_two_workers(example_run: tuple[Path, Run]) -> None:
    root, run = example_run
    assert run.ret == 0, run.out
    assert "2 passed" in run.out
    for name in ("sine[amplitude_4-fast]", "sine[amplitude_4-slow]"):
        props = run.properties(name)
        assert float(props["main"]) < 0.5
        assert Path(props["mitosis.html"]).is_file()
        assert Path(props["mitosis.html"]).parent.parent == root / "trials"


def test_the_summary_appears_once_on_the_controller(example_run: tuple[Path, Run]) -> None:
    _, run = example_run
    assert run.out.count("= mitosis trials =") == 1
    summary = run.out.split("= mitosis trials =")[1]
    assert summary.count("\n  sine[") == 2 and "\nexperiments from pyproject.toml\n" in summary


def test_under_xdist_one_session_row_holds_the_workers_trials(example_run: tuple[Path, Run]) -> None:
    import sqlite3

    root, run = example_run
    db = sqlite3.connect(f"file:{root / 'trials' / 'mitosis.sqlite'}?mode=ro", uri=True)
    try:
        (session,) = db.execute("SELECT key, status, exitstatus, pid FROM sessions").fetchall()
        trials = dict(db.execute("SELECT key, session FROM trials").fetchall())
    finally:
        db.close()
    key = session[0]
    assert session[1:3] == ("ended", 0)
    names = ("sine[amplitude_4-fast]", "sine[amplitude_4-slow]")
    assert {run.properties(n)["mitosis.key"]: run.properties(n)["mitosis.session"] for n in names} == trials
    assert set(trials.values()) == {key}, "the workers' trials carry the controller's key"
    assert f"mitosis session {key}: 2 trials (2 passed); python -m pytest_mitosis history --session {key}" in run.out
