"""Reproduction as a test: recorded trials re-run at their commit in a temporary worktree."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from .conftest import Run, clean_env, git, git_init, run_pytest, write_investigation

MODULE = """
import os
import random

lookup = {"frequency": {"a": 1, "b": 2}}
OFFSET = 0


def run(frequency, noisy=False):
    value = frequency + random.random() + OFFSET
    if noisy:  # what the seed does not decide (a clock, a GPU): here, what the session says
        value += int(os.environ.get("MITOSIS_TEST_NOISE", "0"))
    return {"main": value, "metrics": {"frequency": frequency}}
"""

PYPROJECT = """
[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    base = tmp_path_factory.mktemp("repro")
    root = git_init(write_investigation(base / "study", PYPROJECT, {"exp": MODULE}))
    runs: dict[str, Run] = {}
    runs["recorded"] = run_pytest(root, "--mitosis", "--mitosis-seed", "11")
    runs["noisy"] = run_pytest(root, "--mitosis", "-k", "a", "--mitosis-eval=+exp.noisy=True")
    (root / "exp.py").write_text(MODULE.replace("OFFSET = 0", "OFFSET = 100"))
    git(root, "commit", "-qam", "a later change that moves every result")
    (root / "scratch.txt").write_text("uncommitted work in progress\n")  # never touched by a reproduction
    fake = base / "site" / "fakepkg-2.0.dist-info"
    fake.mkdir(parents=True)
    (fake / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 2.0\n")
    keys = [runs["recorded"].properties(n)["mitosis.key"] for n in ("exp[a]", "exp[b]")]
    runs["by-key"] = run_pytest(root, "--mitosis", "--mitosis-reproduce", keys[0][:6], keys[1])
    noisy = runs["noisy"].properties("exp[a]")["mitosis.key"]
    runs["differs"] = run_pytest(
        root,
        "--mitosis",
        "--mitosis-reproduce",
        noisy,
        env=clean_env(PYTHONPATH=str(fake.parent), MITOSIS_TEST_NOISE="500"),
    )
    runs["tolerant"] = run_pytest(
        root,
        "--mitosis",
        "--mitosis-reproduce",
        noisy,
        "--mitosis-atol",
        "1000",
        env=clean_env(MITOSIS_TEST_NOISE="700"),
    )
    runs["unknown"] = run_pytest(root, "--mitosis", "--mitosis-reproduce", "zzzz", junit=False)
    # the user's uncommitted work was never touched by the reproductions (asserted again below)
    (root.parent / "scratch-after-reproductions.txt").write_text((root / "scratch.txt").read_text())
    (root / "scratch.txt").unlink()
    runs["compare"] = run_pytest(root, "--mitosis", "-k", "a", "--mitosis-compare=last")
    return root, runs


def test_recorded_trials_reproduce_at_their_commit(story: tuple[Path, dict[str, Run]]) -> None:
    root, runs = story
    recorded, again = runs["recorded"], runs["by-key"]
    assert again.ret == 0, again.out
    for name in ("exp[a]", "exp[b]"):
        key = recorded.properties(name)["mitosis.key"]
        props = again.properties(f"reproduce[{key}]")
        assert props["main"] == recorded.properties(name)["main"], "the old code and the recorded seed ran"
        assert props["mitosis.reproduces"] == key
        assert props["mitosis.commit"] == recorded.properties(name)["mitosis.commit"]
    assert (root.parent / "scratch-after-reproductions.txt").read_text() == "uncommitted work in progress\n"
    assert "OFFSET = 100" in (root / "exp.py").read_text(), "the user's work tree is never touched"
    assert git(root, "worktree", "list").count("\n") == 1, "the temporary worktree is removed"


def test_a_reproduction_is_a_trial_linked_to_the_original(story: tuple[Path, dict[str, Run]]) -> None:
    root, runs = story
    key = runs["recorded"].properties("exp[a]")["mitosis.key"]
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    rows = db.execute("SELECT name, status, verdict FROM trials WHERE reproduces = ?", (key,)).fetchall()
    assert rows == [("trial_exp-a-3", "passed", "reproduced")]


def test_a_result_that_does_not_reproduce_fails_with_both_values_and_the_environment(
    story: tuple[Path, dict[str, Run]],
) -> None:
    _, runs = story
    run = runs["differs"]
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    key = runs["noisy"].properties("exp[a]")["mitosis.key"]
    failure = run.testcase(f"reproduce[{key}]").find("failure")
    assert failure is not None
    text = failure.text or ""
    assert re.match(
        rf"reproduction of trial_exp-a-2 \(key {key}\) at commit [0-9a-f]{{12}} does not match its record exactly:\n"
        r"  main: recorded [0-9.]+, reproduced [0-9.]+\n"
        r"the environment differs from the recorded one:\n"
        r"  package added: fakepkg 2\.0\n",
        text,
    ), text
    assert "reproduction of trial_exp-a-2" in run.out
    # the terminal summary's line says what differs, not the sentence that introduces it
    assert re.search(
        rf"^  reproduce\[{key}\] +FAILED  .*\n    main: recorded [0-9.]+, reproduced [0-9.]+\n", run.out, re.M
    ), run.out


def test_tolerances_accept_small_differences(story: tuple[Path, dict[str, Run]]) -> None:
    """A reproduction 700 away from its record passes with ``--mitosis-atol 1000``, and is recorded reproduced."""
    root, runs = story
    run = runs["tolerant"]
    assert run.ret == 0, run.out
    recorded = runs["noisy"].properties("exp[a]")
    key = recorded["mitosis.key"]
    props = run.properties(f"reproduce[{key}]")
    assert props["mitosis.reproduces"] == key
    assert float(props["main"]) - float(recorded["main"]) == pytest.approx(700), "it differs, within the tolerance"
    assert re.search(rf"^  reproduce\[{key}\] +PASSED  #\d+ key {props['mitosis.key']}  ", run.out, re.M), run.out
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    row = db.execute("SELECT status, verdict, main FROM trials WHERE key = ?", (props["mitosis.key"],)).fetchone()
    db.close()
    assert row == ("passed", "reproduced", props["main"]), row


def test_an_unknown_key_lists_the_candidates(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    run = runs["unknown"]
    assert run.ret == pytest.ExitCode.INTERRUPTED
    assert "--mitosis-reproduce zzzz: no trial has a key starting with 'zzzz' in " in run.out
    assert "The newest trials:" in run.out


def test_an_experiment_name_or_all_selects_the_latest_trial_of_each_identity(tmp_path: Path) -> None:
    root = git_init(write_investigation(tmp_path / "study", PYPROJECT, {"exp": MODULE}))
    assert run_pytest(root, "--mitosis", junit=False).ret == 0
    assert run_pytest(root, "--mitosis", "-k", "a", junit=False).ret == 0
    listed = run_pytest(root, "--mitosis", "--mitosis-reproduce", "exp", "--collect-only", "-q", junit=False)
    ids = [line for line in listed.out.splitlines() if line.startswith("pyproject.toml::reproduce[")]
    assert len(ids) == 2
    everything = run_pytest(root, "--mitosis", "--mitosis-reproduce", "all", "--collect-only", "-q", junit=False)
    assert sorted(line for line in everything.out.splitlines() if "reproduce[" in line) == sorted(ids)


def test_a_reproduction_never_becomes_the_drift_baseline(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    compared = runs["compare"].values("exp[a]", "mitosis.compare")
    assert any(c.startswith("main moved from ") and "(trial_exp-a-2, key " in c for c in compared), compared


def test_an_eval_expression_runs_again_only_when_declared_literal_or_vouched_for(tmp_path: Path) -> None:
    pyproject = PYPROJECT.replace(
        "[tool.pytest.ini_options]",
        """[tool.mitosis.experiments]
exp = ["exp"]
declared = { steps = ["exp"], eval = { "exp.noisy" = "bool(0)" } }

[tool.pytest.ini_options]""",
    )
    root = git_init(write_investigation(tmp_path / "study", pyproject, {"exp": MODULE}))
    typed = run_pytest(
        root, "--mitosis", "-k", "not declared", "--mitosis-param=exp.frequency=a", "--mitosis-eval=exp.noisy=bool(0)"
    )
    declared = run_pytest(root, "--mitosis", "-k", "declared", "--mitosis-param=exp.frequency=a")
    assert typed.ret == declared.ret == 0, typed.out + declared.out
    (typed_key,) = [v for n, v in _properties(typed) if n == "mitosis.key"]
    (declared_key,) = [v for n, v in _properties(declared) if n == "mitosis.key"]
    refused = run_pytest(root, "--mitosis", "--mitosis-reproduce", typed_key)
    assert refused.ret == pytest.ExitCode.TESTS_FAILED
    assert (
        "the eval expression 'bool(0)' for exp.noisy is not declared for experiment 'exp' there and is not a plain "
        "literal, so it is not evaluated from a store; if you have read it and trust it, add --mitosis-eval "
        "exp.noisy=bool(0) to vouch for it"
    ) in refused.out
    vouched = run_pytest(root, "--mitosis", "--mitosis-reproduce", typed_key, "--mitosis-eval=exp.noisy=bool(0)")
    assert vouched.ret == 0, vouched.out
    again = run_pytest(root, "--mitosis", "--mitosis-reproduce", declared_key)
    assert again.ret == 0, again.out


def _properties(run: Run) -> list[tuple[str, str]]:
    assert run.junit is not None
    return [(p.get("name", ""), p.get("value", "")) for p in run.junit.iter("property")]
