"""Summaries that stay short at 120 trials: the Markdown summary, the terminal summary, ``show``.

The 120-trial summaries are built from summary rows directly (as the controller builds them
from the trials' reports): running 120 kernels would test nothing more. One small real session
checks what a user sees of the same views: the terminal summary (digits, relative paths, line
width), the Markdown file's structure, and ``show`` of a failed trial.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import pytest_mitosis
from pytest_mitosis.views.ci import markdown_summary
from pytest_mitosis.views.summary import SummaryRow, distinct_digits, natural, number_text, summary_lines

from .conftest import Run, clean_env, git_init, run_pytest, write_investigation

GATE = "higher by more than the allowed 0.1%"


def sweep_rows() -> list[SummaryRow]:
    """120 trials of ``fit[mM-nN]`` at their second iteration: 3 failed by the drift gate (each change said
    with "the seed changed too"), 2 raised, the rest unchanged since the previous trial."""
    rows = []
    for i in range(120):
        name = f"m{i // 10}-n{i % 10}"
        main = 0.2 - i / 10000  # 0.19870000000000002 and the like: 17 digits where 4 tell them apart
        common: dict[str, Any] = {
            "nodeid": f"pyproject.toml::fit[{name}]",
            "html": f"/w/trials/trial_fit-{name}-2/trial_fit-{name}-2.html",
            "iteration": 2,
            "key": f"{i:08x}",
            "commit": "c0ffee",
        }
        if i in (7, 42, 99):
            text = (
                f"main moved from {main - 0.001!r} (trial_fit-{name}-1, key {i + 4096:08x}) to {main!r} "
                f"(+0.001, +0.5%): {GATE}; the seed changed too (1 -> 2), which alone may explain it"
            )
            rows.append(
                SummaryRow(outcome="failed", main=main, comparisons=(text,), message=f"{text}\n\nnotebook: x", **common)
            )
        elif i in (13, 77):
            message = "step 'fit' (study:fit) raised ValueError: bad data\nTraceback (most recent call last):"
            rows.append(SummaryRow(outcome="failed", main=None, message=message, **common))
        else:
            unchanged = f"main and metrics unchanged since trial_fit-{name}-1, key {i + 4096:08x}"
            rows.append(
                SummaryRow(
                    outcome="passed", main=main, comparisons=(unchanged,), metrics=(("loss", main / 2),), **common
                )
            )
    return rows


def visible(markdown: str) -> list[str]:
    """The lines GitHub shows unfolded: those outside ``<details>`` blocks."""
    lines, depth = [], 0
    for line in markdown.splitlines():
        if line.startswith("<details>"):
            depth += 1
        elif line.startswith("</details>"):
            depth -= 1
        elif depth == 0:
            lines.append(line)
    return lines


def test_the_markdown_summary_of_120_trials_leads_with_regressions_and_failures_in_under_40_lines() -> None:
    text = markdown_summary(
        sweep_rows(), compare=True, report="trials/report/index.html", seed=2, exitstatus=1, session="5e55"
    )
    shown = visible(text)
    assert len(shown) < 40, len(shown)
    assert shown == [
        "## mitosis: 115 passed, 5 failed (120 trials)",
        "",
        "commit `c0ffee`, seed 2, session `5e55`, pytest exit status 1",
        "",
        "### Regressions (3)",
        "",
        f"- `fit[m0-n7]`: main 0.1983 → 0.1993 (+0.5%): {GATE} (since trial\\_fit-m0-n7-1, key 00001007)",
        f"- `fit[m4-n2]`: main 0.1948 → 0.1958 (+0.5%): {GATE} (since trial\\_fit-m4-n2-1, key 0000102a)",
        f"- `fit[m9-n9]`: main 0.1891 → 0.1901 (+0.5%): {GATE} (since trial\\_fit-m9-n9-1, key 00001063)",
        "",
        "### Failures (2)",
        "",
        "- `fit[m1-n3]`: step 'fit' (study:fit) raised ValueError: bad data",
        "- `fit[m7-n7]`: step 'fit' (study:fit) raised ValueError: bad data",
        "",
        "| experiment | trials | passed | failed | best main |",
        "|---|---|---|---|---|",
        "| `fit` | 120 | 115 | 5 | 0.1881 `fit[m11-n9]` |",
        "",
        "Note: the seed changed since the trials compared with (1 → 2): that alone may explain a change.",
        "",
        "Report: `trials/report/index.html`",
        "",
        "",  # between the two folded blocks
    ]
    assert text.count("the seed changed") == 1, "said once, not per row"


def test_the_folded_table_has_one_line_per_trial_failures_first_then_by_id() -> None:
    text = markdown_summary(sweep_rows(), compare=True, report=None)
    table = text.split("<details><summary>All 120 trials</summary>\n\n", 1)[1].split("\n\n</details>", 1)[0]
    lines = table.splitlines()
    assert lines[:9] == [
        "| trial | outcome | main | change | iteration / key |",
        "|---|---|---|---|---|",
        "| `fit[m0-n7]` | failed | 0.1993 | main +0.5% | #2 `00000007` |",
        "| `fit[m4-n2]` | failed | 0.1958 | main +0.5% | #2 `0000002a` |",
        "| `fit[m9-n9]` | failed | 0.1901 | main +0.5% | #2 `00000063` |",
        "| `fit[m1-n3]` | failed | – | – | #2 `0000000d` |",
        "| `fit[m7-n7]` | failed | – | – | #2 `0000004d` |",
        "| `fit[m0-n0]` | passed | 0.2 | unchanged | #2 `00000000` |",
        "| `fit[m0-n1]` | passed | 0.1999 | unchanged | #2 `00000001` |",
    ]
    assert len(lines) == 2 + 120
    assert lines[-1] == "| `fit[m11-n9]` | passed | 0.1881 | unchanged | #2 `00000077` |", "m11 after m9"
    details = text.split("<details><summary>Metrics, comparisons and warnings of each trial</summary>\n\n", 1)[1]
    assert (
        "| `fit[m0-n0]` | loss = 0.1 | main and metrics unchanged since trial\\_fit-m0-n0-1, key 00001000 | – |"
        in details
    )
    assert (
        f"| `fit[m0-n7]` | – | main moved from 0.1983 (trial\\_fit-m0-n7-1, key 00001007) to 0.1993 (+0.001, +0.5%): {GATE} | – |"
        in details
    )
    assert "| `fit[m11-n9]` | loss = 0.09405 |" in details  # a metric's digits: those that tell its values apart


def test_main_shows_the_significant_digits_that_tell_the_values_apart() -> None:
    assert distinct_digits([0.1234, 0.1239]) == 4
    assert distinct_digits([0.1234, 0.1239, 0.1234]) == 4  # equal values count once
    assert distinct_digits([0.1999, 0.2]) == 4  # 0.2 - 0.1999 is not quite 0.0001 in floats
    assert distinct_digits([0.25, 2.0]) == 4  # never fewer than 4, as best prints them
    assert distinct_digits([0.12345, 0.12349]) == 5
    assert distinct_digits([1.0, 1.0 + 1e-15]) == 16
    assert distinct_digits(["text", None, float("nan"), True]) == 4
    assert distinct_digits([0.99997, 0.9]) == 5, "an R² just under 1 never reads 1"
    assert distinct_digits([0.99997, 0.99992]) == 5 and distinct_digits([-0.99997]) == 5
    assert [number_text(v, 4) for v in (0.12340000000000001, 2.0, 123456.7, 7, None, "a\nb", float("nan"))] == [
        "0.1234", "2", "123457", "7", "-", "a\\nb", "nan",
    ]  # fmt: skip
    assert number_text(0.1 + 0.2, 17) == "0.30000000000000004"  # all the digits: the shortest exact text


def test_the_terminal_summary_of_120_trials_lists_failures_and_one_line_for_the_rest() -> None:
    lines = summary_lines(sweep_rows(), here=Path("/w"), source="pyproject.toml")
    assert lines == [
        "experiments from pyproject.toml",
        "fit: 120 trials: 115 passed, 5 failed; best main 0.1881 (fit[m11-n9])",
        "  fit[m0-n7]  FAILED  #2 key 00000007  main 0.1993 (+0.5%)",
        f"    main 0.1983 → 0.1993 (+0.5%): {GATE}",
        "    trials/trial_fit-m0-n7-2/trial_fit-m0-n7-2.html",
        "  fit[m1-n3]  FAILED  #2 key 0000000d  main -",
        "    step 'fit' (study:fit) raised ValueError: bad data",
        "    trials/trial_fit-m1-n3-2/trial_fit-m1-n3-2.html",
        "  fit[m4-n2]  FAILED  #2 key 0000002a  main 0.1958 (+0.5%)",
        f"    main 0.1948 → 0.1958 (+0.5%): {GATE}",
        "    trials/trial_fit-m4-n2-2/trial_fit-m4-n2-2.html",
        "  fit[m7-n7]  FAILED  #2 key 0000004d  main -",
        "    step 'fit' (study:fit) raised ValueError: bad data",
        "    trials/trial_fit-m7-n7-2/trial_fit-m7-n7-2.html",
        "  fit[m9-n9]  FAILED  #2 key 00000063  main 0.1901 (+0.5%)",
        f"    main 0.1891 → 0.1901 (+0.5%): {GATE}",
        "    trials/trial_fit-m9-n9-2/trial_fit-m9-n9-2.html",
        "  (115 passed not listed: -v lists them)",
        "note: the seed changed since the trials compared with (1 → 2): that alone may explain a change",
    ]
    every = summary_lines(sweep_rows(), here=Path("/elsewhere"), verbose=True)
    assert len([line for line in every if line.startswith("  fit[")]) == 120
    assert "  fit[m0-n1]   PASSED  #2 key 00000001  main 0.1999 (unchanged)" in every  # all shown: 4 digits
    assert "    /w/trials/trial_fit-m1-n3-2/trial_fit-m1-n3-2.html" in every  # not under the current folder


PYPROJECT = """
[tool.mitosis.steps]
fit = ["study:fit", "study:lookup"]
bad = ["study:bad"]

[tool.mitosis.experiments]
fit = ["fit"]
bad = ["bad"]
"""

STUDY = """
lookup = {"x": {"a": 0.1234, "b": 0.1239}}


def fit(x):
    return {"main": x + 1e-13, "metrics": {"half": x / 2}}


def bad():
    raise ValueError("no data\\nsecond line")
"""


@pytest.fixture(scope="module")
def small(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, str]:
    """One session of three trials, run in the investigation folder: two close mains, one failure."""
    root = git_init(write_investigation(tmp_path_factory.mktemp("small") / "study", PYPROJECT, {"study": STUDY}))
    run = run_pytest(root, "--mitosis", "--mitosis-summary=ci/summary.md")
    return root, run, (root / "ci" / "summary.md").read_text(encoding="utf-8")


def _terminal(run: Run) -> list[str]:
    return run.out.split("= mitosis trials =", 1)[1].split("\n", 1)[1].split("\nmitosis session ")[0].splitlines()


@pytest.mark.kernel
def test_a_real_terminal_summary_groups_by_experiment_with_digits_and_relative_paths(
    small: tuple[Path, Run, str],
) -> None:
    root, run, _ = small
    assert run.ret == 1, run.out
    keys = {name: run.properties(name)["mitosis.key"] for name in ("fit[a]", "fit[b]", "bad")}
    assert _terminal(run) == [
        "experiments from pyproject.toml",
        "bad: 1 trial: 1 failed",
        f"  bad  FAILED  #1 key {keys['bad']}  main -",
        "    step 'bad' (study:bad) raised ValueError: no data",
        f"    trials/trial_bad-1_{keys['bad']}/trial_bad-1.html",
        "fit: 2 trials: 2 passed; best main 0.1234 (fit[a])",
        f"  fit[a]  PASSED  #1 key {keys['fit[a]']}  main 0.1234",
        f"  fit[b]  PASSED  #1 key {keys['fit[b]']}  main 0.1239",
        "report: trials/report/index.html",
    ]
    assert (root / "trials" / f"trial_bad-1_{keys['bad']}" / "trial_bad-1.html").is_file()
    assert all(len(line) <= 80 for line in _terminal(run))
    assert "summary: " + str(root / "ci" / "summary.md") in run.out


@pytest.mark.kernel
def test_a_real_markdown_summary_is_written_with_its_parts(small: tuple[Path, Run, str]) -> None:
    root, run, text = small
    key = run.properties("bad")["mitosis.key"]
    assert text.startswith("## mitosis: 2 passed, 1 failed (3 trials)\n")
    assert "\n### Failures (1)\n\n- `bad`: step 'bad' (study:bad) raised ValueError: no data\n\n" in text
    assert "### Regressions" not in text
    assert "| `fit` | 2 | 2 | 0 | 0.1234 `fit[a]` |\n" in text
    assert "| `bad` | 1 | 0 | 1 | – |\n" in text
    folded = text.split("<details><summary>All 3 trials</summary>\n\n", 1)[1].split("\n\n</details>\n", 1)[0]
    assert folded.splitlines() == [
        "| trial | outcome | main | iteration / key |",
        "|---|---|---|---|",
        f"| `bad` | failed | – | #1 `{key}` |",
        f"| `fit[a]` | passed | 0.1234 | #1 `{run.properties('fit[a]')['mitosis.key']}` |",
        f"| `fit[b]` | passed | 0.1239 | #1 `{run.properties('fit[b]')['mitosis.key']}` |",
    ]
    assert "| `fit[a]` | half = 0.0617 | – | – |" in text
    assert f"\nReport: `{root / 'trials' / 'report' / 'index.html'}`\n\n<details>" in text
    assert text.endswith("</details>\n")


def _show(root: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "show", *args],
        cwd=root,
        capture_output=True,
        text=True,
        env=clean_env(),
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.kernel
def test_show_puts_the_outcome_and_the_failure_first_and_the_packages_last(small: tuple[Path, Run, str]) -> None:
    root, run, _ = small
    key = run.properties("bad")["mitosis.key"]
    lines = _show(root, key).splitlines()
    assert lines[:4] == [
        f"trial trial_bad-1 (key {key})",
        "status: failed   main: -",
        "message:",
        "  step 'bad' (study:bad) raised ValueError: no data",
    ]
    assert lines.index("parameters:") > lines.index("message:")
    assert re.fullmatch(rf"  packages: \d+ installed \(show {key} --packages lists them\)", lines[-1]), lines[-1]
    assert f"    pytest-mitosis {pytest_mitosis.__version__}" not in lines
    every = _show(root, key, "--packages").splitlines()
    assert every[:4] == lines[:4]
    assert f"    pytest-mitosis {pytest_mitosis.__version__}" in every
    assert every.index(f"    pytest-mitosis {pytest_mitosis.__version__}") > every.index("environment:")


def test_decimal_variant_ids_sort_by_their_numbers() -> None:
    ids = ["fit[noise_0.5]", "fit[noise_0.05]", "fit[noise_0.2]", "fit[noise_0.0]", "fit[n10]", "fit[n2]"]
    assert sorted(ids, key=natural) == [
        "fit[n2]", "fit[n10]", "fit[noise_0.0]", "fit[noise_0.05]", "fit[noise_0.2]", "fit[noise_0.5]",
    ]  # fmt: skip
