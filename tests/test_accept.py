"""``python -m pytest_mitosis accept KEY``: a new value the drift gate refused, made the baseline on purpose.

One investigation, one story: a trial passes; a committed change moves main past the gate's limit
(the failure says what changed); the researcher accepts it; the next trial is compared with the
accepted one and passes. ``history``, ``show`` and the store's row say who accepted it, when and
why. What cannot become a baseline is refused with the reason, and nothing is written.
"""

from __future__ import annotations

import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import Run, clean_env, git, git_init, run_pytest, write_investigation

pytestmark = pytest.mark.kernel

MODULE = """
lookup = {{"frequency": {{"a": 1, "bad": 0}}}}
FACTOR = {factor}


def run(frequency):
    return {{"main": FACTOR * frequency / frequency if frequency else 1 / frequency}}
"""

PYPROJECT = """
[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]
"""

GATE = ("--mitosis", "--mitosis-compare-fail=main:5%", "--mitosis-seed", "1")


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", *args], cwd=root, env=clean_env(), capture_output=True, text=True
    )


def change(root: Path, factor: float) -> None:
    (root / "exp.py").write_text(MODULE.format(factor=factor), encoding="utf-8")
    git(root, "commit", "-qam", f"factor {factor}")


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run], dict[str, str]]:
    root = write_investigation(tmp_path_factory.mktemp("accept") / "study", PYPROJECT, {})
    (root / "exp.py").write_text(MODULE.format(factor=1.0), encoding="utf-8")
    git_init(root)
    runs: dict[str, Run] = {}
    keys: dict[str, str] = {}
    runs["first"] = run_pytest(root, *GATE)  # a passes (main 1.0); bad fails in its step
    keys["first"], keys["bad"] = (runs["first"].properties(f"exp[{v}]")["mitosis.key"] for v in ("a", "bad"))
    change(root, 1.5)
    runs["moved"] = run_pytest(root, *GATE, "-k", "a and not bad")
    keys["moved"] = runs["moved"].properties("exp[a]")["mitosis.key"]
    return root, runs, keys


def test_a_gate_failure_says_what_changed_and_how_to_accept(story: tuple[Path, dict[str, Run], dict[str, str]]) -> None:
    _, runs, keys = story
    run = runs["moved"]
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.out
    failure = run.testcase("exp[a]").find("failure")
    assert failure is not None
    lines = (failure.text or "").splitlines()
    assert lines[0] == (
        f"main moved from 1.0 (trial_exp-a-1, key {keys['first']}) to 1.5 (+0.5, +50%): higher by more than the "
        "allowed 5%"
    )
    assert lines[1] == f"what changed since trial_exp-a-1 (key {keys['first']}):"
    assert re.fullmatch(r"  code: commit [0-9a-f]{8} -> [0-9a-f]{8}: exp\.py \(modified\)", lines[2]), lines
    assert lines[3:6] == ["  parameters: identical", "  environment: identical", "  seed: identical (1)"]
    assert (
        lines[6] == f"if the new value is right, make it the baseline: python -m pytest_mitosis accept {keys['moved']}"
    )


def test_accept_records_the_baseline_and_the_next_trial_compares_with_it(
    story: tuple[Path, dict[str, Run], dict[str, str]],
) -> None:
    root, _, keys = story
    done = cli(root, "accept", keys["moved"][:6], "-m", "the new normalisation is right")
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(
        rf"accept: trial trial_exp-a-2 \(key {keys['moved']}\) is now the drift gate's baseline for its identity, "
        rf"in place of {keys['first']}; recorded on \d{{4}}-\d\d-\d\d \d\d:\d\d by \S+@\S+: the new normalisation "
        r"is right\. The next trial of this identity is compared with it\.\n",
        done.stdout,
    ), done.stdout
    again = cli(root, "accept", keys["moved"])
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(f"accept: trial trial_exp-a-2 (key {keys['moved']}) was accepted on ")
    assert again.stdout.endswith(": the new normalisation is right; nothing changed.\n")
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    try:
        rows = db.execute("SELECT trial, reason, baseline FROM acceptances").fetchall()
        status = db.execute("SELECT status FROM trials WHERE key=?", (keys["moved"],)).fetchone()
    finally:
        db.close()
    assert rows == [(keys["moved"], "the new normalisation is right", keys["first"])], "one row, the first call's"
    assert status == ("failed",), "the trial's own record is left as it ran"

    history = cli(root, "history", "exp")
    assert history.returncode == 0, history.stderr
    row = next(line for line in history.stdout.splitlines() if line.startswith(keys["moved"]))
    assert re.search(r"\bfailed \(accepted\)\s+1\.5\b", row), history.stdout
    show = cli(root, "show", keys["moved"])
    assert re.search(
        rf"^accepted as the drift gate's baseline in place of {keys['first']} on \d{{4}}-\d\d-\d\d \d\d:\d\d by "
        r"\S+@\S+: the new normalisation is right$",
        show.stdout,
        re.M,
    ), show.stdout

    after = run_pytest(root, *GATE, "-k", "a and not bad")
    assert after.ret == 0, after.out
    assert after.properties("exp[a]")["mitosis.compare"] == (
        f"main and metrics unchanged since trial_exp-a-2, key {keys['moved']}, accepted"
    )
    assert re.search(
        r"^  exp\[a\] +PASSED  #3 key \w+  main 1\.5 \(unchanged from the accepted baseline\)$", after.out, re.M
    )
    # the report says it too: the accepted trial's failure reads "drift gate, accepted" (its page is refreshed)
    page = (root / "trials" / "report" / "experiments" / "exp.html").read_text(encoding="utf-8")
    assert "drift gate, accepted" in page


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        (
            "first",
            "it passed, so the drift gate already compares the next trial of its identity with it (or with a newer "
            "passed trial); there is nothing to accept.",
        ),
        ("bad", "it has no main (it failed before its steps returned), so there is no result to accept."),
    ],
)
def test_what_cannot_be_a_baseline_is_refused_with_the_reason(
    story: tuple[Path, dict[str, Run], dict[str, str]], which: str, reason: str
) -> None:
    root, _, keys = story
    store = root / "trials" / "mitosis.sqlite"
    before = store.read_bytes()
    done = cli(root, "accept", keys[which])
    assert done.returncode == 2
    name = "trial_exp-a-1" if which == "first" else "trial_exp-bad-1"
    assert done.stderr == f"pytest-mitosis: trial {name} (key {keys[which]}) cannot be accepted: {reason}\n"
    assert done.stdout == ""
    assert store.read_bytes() == before, "nothing written"


def test_accepting_an_unknown_key_lists_the_newest_trials(story: tuple[Path, dict[str, Run], dict[str, str]]) -> None:
    root, _, keys = story
    done = cli(root, "accept", "ffffffff")
    assert done.returncode == 2
    assert done.stderr.startswith(
        f"pytest-mitosis: no trial has a key starting with 'ffffffff' in {root / 'trials' / 'mitosis.sqlite'}. "
        "The newest trials:\n"
    )
    assert keys["first"] in done.stderr
