"""The clean-repository guard and debug mode, on real git repositories."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from .conftest import git, git_init, run_pytest, write_investigation

MODULE = """
import logging

logger = logging.getLogger(__name__)
lookup = {"frequency": {"fast": 10, "slow": 1}}


def run(frequency, amplitude=1):
    logger.debug("a debug line")
    logger.info("an info line")
    return {"main": frequency * amplitude}
"""

PYPROJECT = """
[tool.mitosis.steps]
sine = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""


@pytest.fixture
def study(tmp_path: Path) -> Path:
    return git_init(write_investigation(tmp_path / "study", PYPROJECT, {"exp": MODULE}))


def refused(root: Path, *args: str) -> str:
    run = run_pytest(root, "--mitosis", *args, junit=False)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    assert "passed" not in run.out and "failed" not in run.out
    assert not (root / "trials").exists(), "no trial ran and nothing was written"
    return run.out


DEBUG_HINT = "or pass --mitosis-debug to run anyway as a debug trial (kept apart, never a reproducible result)."


def test_a_modified_or_untracked_file_refuses_the_whole_session(study: Path) -> None:
    (study / "exp.py").write_text(MODULE + "\n# tweak\n")
    (study / "notes.py").write_text("x = 1\n")
    out = refused(study)
    assert (
        f"ERROR: mitosis: the git repository {study} has uncommitted changes, so the commit a trial records "
        "would not say what ran:\n  modified: exp.py\n  untracked: notes.py\n"
        "Commit them, stash them (git stash --include-untracked), add files that cannot change a result to "
        f".gitignore (or to the mitosis_dirty_ignore ini key), {DEBUG_HINT}"
    ) in out


def test_the_refusal_is_the_same_under_xdist(study: Path) -> None:
    (study / "notes.py").write_text("x = 1\n")
    out = refused(study, "-n", "2")
    assert f"ERROR: mitosis: the git repository {study} has uncommitted changes" in out
    assert "  untracked: notes.py\n" in out


def test_a_staged_change_is_dirty_and_long_lists_are_cut_at_ten(study: Path) -> None:
    for i in range(12):
        (study / f"data_{i:02}.py").write_text("")
    git(study, "add", "data_00.py")
    out = refused(study)
    assert "  added: data_00.py\n  untracked: data_01.py\n" in out
    assert "  untracked: data_09.py\n  ... and 2 more\n" in out


def test_collect_only_is_not_refused(study: Path) -> None:
    (study / "notes.py").write_text("x = 1\n")
    run = run_pytest(study, "--mitosis", "--collect-only", "-q", junit=False)
    assert run.ret == 0
    assert "pyproject.toml::sine[slow]" in run.out


def test_not_a_git_repository_is_refused(tmp_path: Path) -> None:
    root = write_investigation(tmp_path / "loose", PYPROJECT, {"exp": MODULE})
    out = refused(root)
    assert (
        f"ERROR: mitosis: {root} is not in a git repository, so a trial could not record the commit that ran. "
        f"Run `git init` there and commit the investigation, {DEBUG_HINT}"
    ) in out


def test_a_repository_without_a_commit_is_refused(tmp_path: Path) -> None:
    root = write_investigation(tmp_path / "fresh", PYPROJECT, {"exp": MODULE})
    git(root, "init", "-q")
    out = refused(root)
    assert f"ERROR: mitosis: the git repository {root} has no commit yet. Commit the investigation, {DEBUG_HINT}" in out


def test_a_dirty_submodule_is_dirty(tmp_path: Path, study: Path) -> None:
    library = git_init(write_investigation(tmp_path / "library", "[project]\nname = 'lib'\n", {"helpers": "X = 1\n"}))
    git(study, "-c", "protocol.file.allow=always", "submodule", "add", "-q", str(library), "lib")
    git(study, "commit", "-q", "-m", "add the experiment library")
    (study / "lib" / "helpers.py").write_text("X = 2\n")
    out = refused(study)
    assert "  modified: lib\n" in out


def test_an_ini_pattern_can_declare_more_files_harmless(study: Path) -> None:
    (study / "scratch.tmp").write_text("")
    (study / "pyproject.toml").write_text(PYPROJECT + 'mitosis_dirty_ignore = ["*.tmp", "__pycache__/"]\n')
    git(study, "commit", "-qam", "ignore tmp files")
    run = run_pytest(study, "--mitosis", "--collect-only", "-q", junit=False)
    assert run.ret == 0
    (study / "__pycache__").mkdir(exist_ok=True)
    (study / "__pycache__" / "exp.cpython-311.pyc").write_bytes(b"")
    (study / "pkg.egg-info").mkdir()
    (study / "pkg.egg-info" / "PKG-INFO").write_text("")
    out = refused(study)  # egg-info is no longer in the (replaced) list
    assert "  untracked: pkg.egg-info/PKG-INFO" in out
    assert "scratch.tmp" not in out and "__pycache__" not in out


@pytest.fixture(scope="module")
def two_clean_runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[object]]:
    """Two sessions in a row: the trials folder, bytecode and junit XML inside the repo never make it dirty."""
    root = git_init(write_investigation(tmp_path_factory.mktemp("clean") / "study", PYPROJECT, {"exp": MODULE}))
    runs = []
    for _ in range(2):
        runs.append(run_pytest(root, "--mitosis", "-k", "slow", f"--junitxml={root / 'report.xml'}", junit=False))
    return root, runs


def test_what_the_plugin_and_pytest_write_never_makes_the_tree_dirty(two_clean_runs: tuple[Path, list]) -> None:
    root, runs = two_clean_runs
    assert [r.ret for r in runs] == [0, 0], runs[1].out
    assert "#2 key" in runs[1].out
    assert (root / "trials" / "mitosis.sqlite").is_file()


@pytest.fixture(scope="module")
def debug_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, object]:
    root = write_investigation(tmp_path_factory.mktemp("debug") / "loose", PYPROJECT, {"exp": MODULE})
    return root, run_pytest(root, "--mitosis", "--mitosis-debug", "-k", "slow")


def test_debug_mode_runs_without_a_repository_and_says_so(debug_run: tuple[Path, object]) -> None:
    root, run = debug_run
    assert run.ret == 0, run.out  # type: ignore[attr-defined]
    assert "mitosis: DEBUG MODE: guards waived; trials kept apart in the debug folder" in run.out  # type: ignore[attr-defined]
    props = run.properties("sine[slow]")  # type: ignore[attr-defined]
    assert "mitosis.iteration" not in props
    html = Path(props["mitosis.html"])
    assert html.parent.parent == root / "trials" / "debug"
    assert html.name == "trial_sine-slow.html"
    assert "a debug line" in (html.parent / "experiment.log").read_text(), "debug mode logs at DEBUG"
    assert "Debug trial" in html.read_text()


def test_debug_trials_are_flagged_in_the_store_and_lock_nothing(debug_run: tuple[Path, object]) -> None:
    root, _ = debug_run
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    rows = db.execute("SELECT debug, iteration, status, git FROM trials").fetchall()
    assert [(r[0], r[1], r[2]) for r in rows] == [(1, None, "passed")]
    assert json.loads(rows[0][3])["commit"] is None
    assert db.execute("SELECT COUNT(*) FROM locks").fetchone() == (0,)
