"""The whole-sweep check, the plan line, the metric-drift gate and hypotheses."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .conftest import Run, git, git_init, run_pytest

MODULE = """
lookup = {{"frequency": {{"a": 1, "b": {b}}}}}
FACTOR = {factor}


def run(frequency):
    return {{"main": frequency * FACTOR, "metrics": {{"double": 2 * frequency * FACTOR}}}}
"""

PYPROJECT = """
[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.mitosis.experiments]
exp = {{ steps = ["exp"], expect = "{expect}" }}

[tool.pytest.ini_options]
"""


def write(root: Path, b: int = 2, factor: float = 1.0, expect: str = "main < 2") -> None:
    (root / "exp.py").write_text(MODULE.format(b=b, factor=factor))
    (root / "pyproject.toml").write_text(PYPROJECT.format(expect=expect))


def commit(root: Path, **kwargs: object) -> None:
    write(root, **kwargs)  # type: ignore[arg-type]
    git(root, "commit", "-qam", "change")


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    root = tmp_path_factory.mktemp("gates") / "study"
    root.mkdir()
    write(root)
    git_init(root)
    runs: dict[str, Run] = {}
    runs["first"] = run_pytest(root, "--mitosis", "-k", "a", "--mitosis-seed", "1")
    runs["check"] = run_pytest(root, "--mitosis", "--mitosis-check")
    runs["both"] = run_pytest(root, "--mitosis", "--mitosis-compare=last", "--mitosis-seed", "1")
    commit(root, factor=1.1)
    runs["worse"] = run_pytest(root, "--mitosis", "-k", "a", "--mitosis-compare-fail=main:5%", "--mitosis-seed", "1")
    runs["better"] = run_pytest(
        root,
        "--mitosis",
        "-k",
        "a",
        "--mitosis-compare-fail=main:5%",
        "--mitosis-higher-is-better",
        "--mitosis-seed",
        "2",
    )
    commit(root, factor=1.1, b=20)
    runs["check-blocked"] = run_pytest(root, "--mitosis", "--mitosis-check")
    commit(root, factor=1.1, expect="main < 3")
    runs["new-hypothesis"] = run_pytest(root, "--mitosis", "-k", "a")
    return root, runs


def test_check_lists_new_and_repeat_trials_without_running_any(story: tuple[Path, dict[str, Run]]) -> None:
    root, runs = story
    run = runs["check"]
    assert run.ret == 0, run.out
    assert re.search(r"^pyproject\.toml::exp\[a\]  repeat \(iteration 2\)$", run.out, re.M)
    assert re.search(r"^pyproject\.toml::exp\[b\]  new$", run.out, re.M)
    assert "mitosis check: 2 trials: 1 new, 1 repeat, 0 blocked" in run.out
    assert run.junit is not None and not list(run.junit.iter("testcase")), "no trial ran"


def test_check_fails_a_redefined_variant_before_any_kernel(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    run = runs["check-blocked"]
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.out
    assert re.search(
        r"^pyproject\.toml::exp\[b\]  blocked: variant 'b' of exp\.frequency was 2 in trial_exp-b-1 "
        r"\(key [0-9a-f]{8}\), is now 20$",
        run.out,
        re.M,
    ), run.out
    assert re.search(r"^pyproject\.toml::exp\[a\]  repeat \(iteration 5\)$", run.out, re.M)
    assert "1 new" not in run.out and "0 new, 1 repeat, 1 blocked" in run.out


def test_check_reports_a_dirty_tree_as_blocked(tmp_path: Path) -> None:
    root = tmp_path / "study"
    root.mkdir()
    write(root)
    git_init(root)
    (root / "scratch.py").write_text("")
    run = run_pytest(root, "--mitosis", "--mitosis-check", junit=False)
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    assert "  untracked: scratch.py" in run.out
    assert "pyproject.toml::exp[a]  blocked: the git tree has uncommitted changes (listed above)" in run.out


def test_an_ordinary_run_prints_the_plan_before_the_first_trial_runs(story: tuple[Path, dict[str, Run]]) -> None:
    """The plan is the line after pytest's count of collected items, before the first trial starts (its
    kernel may already be waiting: it is launched while pytest collects) and before any outcome."""
    _, runs = story
    for name, plan, first in [
        ("first", "mitosis plan: 1 trial: 1 new, 0 repeats, 0 blocked", "mitosis [1/1] exp[a]: started"),
        ("both", "mitosis plan: 2 trials: 1 new, 1 repeat, 0 blocked", "mitosis [1/2] exp[a]: started"),
    ]:
        lines = runs[name].out.splitlines()
        collected = next(i for i, line in enumerate(lines) if line.startswith("collected "))
        assert lines[collected + 1] == plan, runs[name].out
        started = lines.index(first)
        assert started > collected + 1, "the plan comes first"
        assert not [line for line in lines[: started + 1] if "PASSED" in line or "FAILED" in line or line == "."]
        assert not [line for line in lines[:started] if line.startswith("mitosis [")], "no trial before the plan"


def test_compare_shows_the_change_since_the_previous_trial(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    run = runs["both"]
    assert run.ret == 1  # b is refuted by the hypothesis, see below
    compare = run.properties("exp[a]")["mitosis.compare"]
    assert re.fullmatch(r"main and metrics unchanged since trial_exp-a-1, key [0-9a-f]{8}", compare)
    assert run.properties("exp[b]")["mitosis.compare"] == "no earlier passed trial of this identity to compare with"
    # verdict and comparison folded into the trial's own line of the summary, never lines of their own
    assert re.search(r"\n  exp\[a\]  PASSED  #2 key [0-9a-f]{8}  main 1 \(unchanged\)  hypothesis holds\n", run.out), (
        run.out
    )
    assert re.search(r"\n  exp\[b\]  FAILED  #1 key [0-9a-f]{8}  main 2 \(new\)  hypothesis refuted\n", run.out), (
        run.out
    )
    assert "exp[a]: compare:" not in run.out and "exp[a]: hypothesis" not in run.out


def test_a_metric_that_got_worse_beyond_the_limit_fails_the_trial(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    run = runs["worse"]
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    failure = run.testcase("exp[a]").find("failure")
    assert failure is not None
    key = run.properties("exp[a]")["mitosis.key"]
    found = re.match(
        r"main moved from 1\.0 \(trial_exp-a-2, key [0-9a-f]{8}\) to 1\.1 \(\+0\.1, \+10%\): higher by more than "
        r"the allowed 5%\n"
        # what changed since the baseline, as diff groups it: the commit and its files, then the rest
        r"what changed since trial_exp-a-2 \(key [0-9a-f]{8}\):\n"
        r"  code: commit (?P<old>[0-9a-f]{8}) -> (?P<new>[0-9a-f]{8}): exp\.py \(modified\)\n"
        r"  parameters: identical\n  environment: identical\n  seed: identical \(1\)\n"
        rf"if the new value is right, make it the baseline: python -m pytest_mitosis accept {key}\n"
        r"\nnotebook: /.*trial_exp-a-3\.html",
        failure.text or "",
    )
    assert found is not None and found["old"] != found["new"], failure.text
    assert run.properties("exp[a]")["main"] == "1.1", "the metric is still recorded"
    # the terminal summary: the change that failed it, in the digits that tell the two values apart, and its page
    summary = run.out.split("= mitosis trials =", 1)[1]
    assert re.search(
        r"\nexp: 1 trial: 1 failed\n  exp\[a\]  FAILED  #3 key ([0-9a-f]{8})  main 1\.1 \(\+10%; double moved\)  hypothesis holds\n"
        r"    main 1 → 1\.1 \(\+10%\): higher by more than the allowed 5%\n"
        r"    trials/trial_exp-a-3_\1/trial_exp-a-3\.html\n",
        summary,
    ), summary


def test_with_higher_is_better_an_increase_passes(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    run = runs["better"]
    assert run.ret == 0, run.out
    compared = run.values("exp[a]", "mitosis.compare")
    assert any(
        re.fullmatch(
            r"main moved from 1\.0 \(trial_exp-a-2, key [0-9a-f]{8}\) to 1\.1 \(\+0\.1, \+10%\); "
            r"the seed changed too \(1 -> 2\), which alone may explain it",
            c,
        )
        for c in compared
    ), compared
    # the terminal says it once, below the trials
    assert (
        "\nnote: the seed changed since the trials compared with (1 → 2): that alone may explain a change\n" in run.out
    )


def test_a_hypothesis_is_checked_and_reported(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    run = runs["both"]
    assert run.properties("exp[a]")["mitosis.expect"] == "main < 2"
    assert run.properties("exp[a]")["mitosis.verdict"] == "holds"
    props = run.properties("exp[b]")
    assert (props["mitosis.verdict"], props["main"]) == ("refuted", "2.0")
    failure = run.testcase("exp[b]").find("failure")
    assert failure is not None and (failure.text or "").startswith("hypothesis 'main < 2' is refuted: main = 2.0\n")


def test_a_changed_hypothesis_is_refused_like_a_redefined_variant(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    run = runs["new-hypothesis"]
    error = run.testcase("exp[a]").find("error")
    assert error is not None
    assert ("mitosis: experiment 'exp': its hypothesis was 'main < 2' when trial trial_exp-a-1 (key ") in (
        error.text or ""
    )
    assert (
        "and is now 'main < 3'. A hypothesis is declared before the trials that test it: declare the new one as a "
        "new experiment in [tool.mitosis.experiments], or run with --mitosis-debug."
    ) in (error.text or "")


def test_bad_limits_and_hypotheses_are_clear_errors(tmp_path: Path) -> None:
    root = tmp_path / "study"
    root.mkdir()
    write(root, expect="main is small")
    run = run_pytest(root, "--mitosis", "--collect-only", junit=False)
    assert (
        "[tool.mitosis.experiments] exp expect: expected a comparison of main or a metric with a number, such as "
        '"main < 0.05" or "accuracy >= 0.9", found \'main is small\'.'
    ) in run.out
    run = run_pytest(root, "--mitosis", "--mitosis-compare-fail=main", junit=False)
    assert (
        "argument --mitosis-compare-fail: expected NAME:LIMIT such as main:5% (relative) or main:0.01 (absolute), "
        "got 'main'"
    ) in run.out
