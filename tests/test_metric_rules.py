"""Direction and tolerance per metric (issue 25): ``higher-is-better`` and ``[tool.mitosis.tolerances]``.

One story of real sessions on one investigation: the directions of ``[tool.mitosis]`` decide
what the drift gate and ``best`` call worse, the command line overrides them, every trial
records the directions it was judged by; a timing metric marked ``ignore`` neither fails the
gate nor a reproduction, a per-metric ``rtol`` lets a small change through, and a series that
does not reproduce is described by its first difference.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mitosis.store import Reader

from .conftest import Run, git, git_init, run_pytest, write_investigation

MODULE = """
import time
from pathlib import Path

lookup = {{"model": {{"a": 1, "b": 2}}}}
SCALE = {scale}
BUMP = Path({bump!r})


def run(model):
    bump = float(BUMP.read_text())
    curve = [i / 10 for i in range(120)]
    curve[57] += bump
    main = model * SCALE
    return {{
        "main": main,
        "metrics": {{"f1": main / 10 * (1 + bump / 100), "fit_seconds": time.perf_counter(), "curve": curve}},
    }}
"""

PYPROJECT = """
[tool.mitosis]
higher-is-better = ["main", "f1"]

[tool.mitosis.tolerances]
fit_seconds = "ignore"
"metrics.f1" = { rtol = 0.05 }

[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""

RULES = "higher is better for main, f1, lower for the rest"


def mitosis(root: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "--trials-folder", "trials", *args],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    base = tmp_path_factory.mktemp("rules")
    bump = base / "bump.txt"  # outside the repository: what a rerun of the same code may see differently
    bump.write_text("0")
    root = git_init(write_investigation(base / "study", PYPROJECT, {"exp": MODULE.format(scale=1.0, bump=str(bump))}))
    runs: dict[str, Run] = {}
    runs["first"] = run_pytest(root, "--mitosis", "--mitosis-seed", "1")
    bump.write_text("1")  # f1 moves by 1% (within its rtol), the timing moves anyway
    runs["same"] = run_pytest(root, "--mitosis", "-k", "b", "--mitosis-compare=last", "--mitosis-seed", "1")
    runs["check"] = run_pytest(root, "--mitosis", "--mitosis-check")
    bump.write_text("0")
    (root / "exp.py").write_text(MODULE.format(scale=0.5, bump=str(bump)))
    git(root, "commit", "-qam", "main halves")
    runs["worse"] = run_pytest(root, "--mitosis", "-k", "a", "--mitosis-compare-fail=main:5%", "--mitosis-seed", "1")
    runs["cli"] = run_pytest(
        root, "--mitosis", "-k", "a", "--mitosis-compare-fail=main:5%", "--mitosis-lower-is-better=main",
        "--mitosis-seed", "1",
    )  # fmt: skip
    first_a = runs["first"].properties("exp[a]")["mitosis.key"]
    runs["reproduce"] = run_pytest(root, "--mitosis", "--mitosis-reproduce", first_a)
    bump.write_text("1")
    runs["series"] = run_pytest(root, "--mitosis", "--mitosis-reproduce", first_a)
    runs["typo"] = run_pytest(root, "--mitosis", "--mitosis-check", "--mitosis-higher-is-better=main,f2")
    return root, runs


@pytest.mark.kernel
def test_the_gate_calls_a_lower_main_worse_when_tool_mitosis_says_higher_is_better(
    story: tuple[Path, dict[str, Run]],
) -> None:
    _, runs = story
    run = runs["worse"]
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.out
    first = runs["first"].properties("exp[a]")["mitosis.key"]
    failure = run.testcase("exp[a]").find("failure")
    assert failure is not None
    assert (failure.text or "").startswith(
        f"main moved from 1.0 (trial_exp-a-1, key {first}) to 0.5 (-0.5, -50%): lower by more than the allowed 5%\n"
    ), failure.text
    compared = run.values("exp[a]", "mitosis.compare")
    assert not [c for c in compared if "fit_seconds" in c], "an ignored metric is not compared"


@pytest.mark.kernel
def test_the_command_line_overrides_the_direction_and_the_trial_records_it(story: tuple[Path, dict[str, Run]]) -> None:
    root, runs = story
    assert runs["cli"].ret == 0, runs["cli"].out
    with Reader(root / "trials") as reader:
        recorded = {r.name: r.directions for r in reader.trials("exp")}
    assert recorded["trial_exp-a-1"] == {"default": "lower", "higher": ["f1", "main"], "lower": []}
    assert recorded["trial_exp-a-3"] == {"default": "lower", "higher": ["f1"], "lower": []}, "--mitosis-lower-is-better"
    key = runs["cli"].properties("exp[a]")["mitosis.key"]
    assert "better: higher is better for f1, lower for the rest" in mitosis(root, "show", key).splitlines()
    history = mitosis(root, "history", "exp").splitlines()
    assert history[0].split()[-1] == "better"
    assert [line.rstrip().split("  ")[-1].strip() for line in history[1:] if key in line] == ["higher: f1"]


@pytest.mark.kernel
def test_best_ranks_by_the_direction_each_trial_recorded(story: tuple[Path, dict[str, Run]]) -> None:
    root, runs = story
    commit = runs["first"].properties("exp[a]")["mitosis.commit"]
    first = json.loads(mitosis(root, "best", "exp", "--commit", commit[:10], "--json"))
    assert first["higher_is_better"] is True, "[tool.mitosis] higher-is-better names main"
    assert [r["variants"] for r in first["rows"]] == ["b", "a"], "the higher main ranks first"
    # the latest commit's one passed trial was judged with --mitosis-lower-is-better=main: best reads that
    latest = mitosis(root, "best", "exp").splitlines()
    assert latest[0].endswith("main: lower is better"), latest[0]


@pytest.mark.kernel
def test_an_ignored_metric_and_a_change_within_tolerance_leave_main_and_metrics_unchanged(
    story: tuple[Path, dict[str, Run]],
) -> None:
    _, runs = story
    run = runs["same"]
    assert run.ret == 0, run.out
    first = runs["first"].properties("exp[b]")["mitosis.key"]
    assert run.values("exp[b]", "mitosis.compare") == [
        f"main and metrics unchanged since trial_exp-b-1, key {first}"
    ], "f1 moved by 1% (rtol 5%), fit_seconds is ignored"


@pytest.mark.kernel
def test_check_prints_the_rules_each_experiment_is_judged_by(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    run = runs["check"]
    assert run.ret == 0, run.out
    assert f"mitosis rules of exp: {RULES}; tolerances: f1 rtol=0.05, atol=0; fit_seconds ignored\n" in run.out
    typo = runs["typo"]
    assert typo.ret == 0, "a name no trial recorded yet is shown, and does not fail the check"
    assert (
        "mitosis rules of exp: higher is better for main, f1, f2, lower for the rest; tolerances: f1 rtol=0.05, "
        "atol=0; fit_seconds ignored\n"
        "  f2: no earlier passed trial of exp recorded this metric (its metrics: curve, f1, fit_seconds, main)\n"
    ) in typo.out, typo.out


@pytest.mark.kernel
def test_a_reproduction_that_differs_only_on_an_ignored_timing_passes(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    assert runs["reproduce"].ret == 0, runs["reproduce"].out


@pytest.mark.kernel
def test_a_series_mismatch_shows_its_first_difference_not_the_whole_lists(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    run = runs["series"]
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.out
    key = runs["first"].properties("exp[a]")["mitosis.key"]
    failure = run.testcase(f"reproduce[{key}]").find("failure")
    assert failure is not None
    text = failure.text or ""
    assert re.match(
        rf"reproduction of trial_exp-a-1 \(key {key}\) at commit [0-9a-f]{{12}} does not match its record exactly "
        r"\(per metric: f1 rtol=0\.05, atol=0; fit_seconds ignored\):\n"
        r"  metrics\.curve: the series differ first at index 57: recorded 5\.7, reproduced 6\.7 \(length 120\)\n"
        r"    recorded   \[\.\.\., 5\.5, 5\.6, 5\.7, 5\.8, 5\.9, \.\.\.\] \(from index 55\)\n"
        r"    reproduced \[\.\.\., 5\.5, 5\.6, 6\.7, 5\.8, 5\.9, \.\.\.\] \(from index 55\)\n"
        r"the environment matches",
        text,
    ), text
    assert "11.9" not in text, "never the whole series"


def test_names_after_a_bare_direction_flag_must_follow_an_equals_sign(tmp_path: Path) -> None:
    root = git_init(write_investigation(tmp_path / "study", PYPROJECT, {"exp": MODULE.format(scale=1, bump="x")}))
    run = run_pytest(root, "--mitosis", "--mitosis-check", "--mitosis-higher-is-better", "pyproject.toml")
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    assert (
        "--mitosis-higher-is-better pyproject.toml: the metric names go after '=' "
        "(--mitosis-higher-is-better=pyproject.toml); a bare --mitosis-higher-is-better means main and every "
        "metric: write it after the other arguments or before another option."
    ) in run.out
    node = run_pytest(root, "--mitosis-check", "--mitosis-higher-is-better", "pyproject.toml::exp")
    assert node.ret == pytest.ExitCode.USAGE_ERROR, node.out
    assert (
        "argument --mitosis-higher-is-better: expected metric names separated by commas after '=', such as "
        "=main,f1, got 'pyproject.toml::exp'"
    ) in node.out
    both = run_pytest(root, "--mitosis-check", "--mitosis-higher-is-better=f1", "--mitosis-lower-is-better=f1,main")
    assert both.ret == pytest.ExitCode.USAGE_ERROR, both.out
    assert "--mitosis-higher-is-better and --mitosis-lower-is-better both name f1: keep it in one of them." in both.out
    bare = run_pytest(root, "--mitosis-check", "--mitosis-higher-is-better", "-p", "no:randomly")
    assert "mitosis rules of exp: higher is better; tolerances:" in bare.out, bare.out
    names = run_pytest(root, "--mitosis-check", "--mitosis-higher-is-better=main", "--mitosis-lower-is-better")
    assert "mitosis rules of exp: higher is better for main, lower for the rest; tolerances:" in names.out, names.out
