"""One broken experiment never blocks the others, and node ids that match nothing say what exists.

Most cases collect only (in-process, no kernel); one real session (git repository, one kernel)
shows the good experiment running beside the broken ones.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from .conftest import Run, git_init, run_pytest, write_investigation

STUDY = """
lookup = {"frequency": {"fast": 10, "slow": 1}}
not_nested = {"frequency": 10}


def run(frequency, amplitude=1.0):
    return {"main": amplitude * frequency}


def needs(x):
    return {"main": x}
"""

BROKEN = """
import math

value = math.sqrt(4)
raise RuntimeError('the data file is missing')
"""

PYPROJECT = """
[tool.mitosis.steps]
good = ["study:run", "study:lookup"]
needs = ["study:needs"]
broken = ["broken_module:run"]
malformed = 42
badlookup = ["study:run", "study:not_nested"]
plain = ["study:needs"]

[tool.mitosis.experiments]
good = ["good"]
needs = ["needs"]
broken = ["broken"]
malformed = ["malformed"]
badlookup = ["badlookup"]
badtable = { steps = ["good"], nokey = 1 }
"""

EXPECTED_IDS = [
    "pyproject.toml::good[fast]",
    "pyproject.toml::good[slow]",
    "pyproject.toml::needs",
    "pyproject.toml::broken",
    "pyproject.toml::malformed",
    "pyproject.toml::badlookup",
    "pyproject.toml::badtable",
]


def messages(path: Path) -> dict[str, list[str]]:
    """For each broken experiment, lines its error must contain (today's messages, unchanged)."""
    pyproject = path / "pyproject.toml"
    return {
        "needs": [
            f"{pyproject}: experiment 'needs', step 'needs' (study:needs): parameter 'x' has no default and no value."
        ],
        "broken": [
            f"{pyproject}: [tool.mitosis.steps] broken: importing module 'broken_module' failed:",
            "RuntimeError: the data file is missing",
            "Module 'broken_module' exists but raised this while being imported. Fix the error in the module "
            "(the traceback above ends where it was raised) and run again.",
        ],
        "malformed": [
            f'{pyproject}: [tool.mitosis.steps] malformed: expected ["module:callable", "module:lookup_dict"], found 42.'
        ],
        "badlookup": [
            f"{pyproject}: [tool.mitosis.steps] badlookup: the lookup dict 'study:not_nested' maps 'frequency' to 10;"
        ],
        "badtable": [
            f"{pyproject}: [tool.mitosis.experiments] badtable: unknown key 'nokey'; the keys are: steps, params, eval, "
            "expect, higher-is-better, tolerances, slurm."
        ],
    }


def make(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml(textwrap.dedent(PYPROJECT))
    pytester.makepyfile(study=textwrap.dedent(STUDY), broken_module=textwrap.dedent(BROKEN))


def ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if line.startswith("pyproject.toml::")]


def test_every_good_experiment_collects_and_each_broken_one_is_its_own_item(pytester: pytest.Pytester) -> None:
    make(pytester)
    result = pytester.runpytest("--mitosis", "--collect-only", "-q", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert ids(result) == EXPECTED_IDS
    # --collect-only still exits non-zero and shows every reason, in one section
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "mitosis: experiments that cannot run" in out
    assert "Interrupted" not in out and "ERROR collecting" not in out and "Traceback" not in out
    for name, lines in messages(pytester.path).items():
        assert f"ERROR pyproject.toml::{name}" in out
        for line in lines:
            assert line in out, (name, line)


def test_k_deselects_the_broken_experiments(pytester: pytest.Pytester) -> None:
    make(pytester)
    result = pytester.runpytest("--mitosis", "--collect-only", "-q", "-p", "no:cacheprovider", "-k", "good and slow")
    assert ids(result) == ["pyproject.toml::good[slow]"]
    assert result.ret == pytest.ExitCode.OK
    assert "cannot run" not in result.stdout.str()


def test_a_command_line_mistake_still_stops_the_whole_collection(pytester: pytest.Pytester) -> None:
    make(pytester)
    result = pytester.runpytest(
        "--mitosis", "--collect-only", "-p", "no:cacheprovider", "--mitosis-param", "good.frequency=medium"
    )
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED
    assert "ERROR collecting pyproject.toml" in out
    assert (
        "--mitosis-param: good.frequency has no variant 'medium' in study:lookup; the variants are: fast, slow." in out
    )


def test_a_node_id_of_an_unknown_experiment_lists_the_experiments(pytester: pytest.Pytester) -> None:
    make(pytester)
    result = pytester.runpytest("--mitosis", "--collect-only", "-p", "no:cacheprovider", "pyproject.toml::nosuch")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    pyproject = pytester.path / "pyproject.toml"
    result.stderr.fnmatch_lines(
        [
            f"ERROR: not found: {pyproject}::nosuch",
            f"{pyproject} has no experiment 'nosuch'; the experiments are: good, needs, broken, malformed, badlookup, badtable.",
        ]
    )
    assert "found no collectors" not in result.stderr.str() and "no match in any of" not in result.stderr.str()


def test_a_node_id_of_a_step_that_is_not_an_experiment_says_how_to_run_it(pytester: pytest.Pytester) -> None:
    make(pytester)
    result = pytester.runpytest("--mitosis", "--collect-only", "-p", "no:cacheprovider", "pyproject.toml::plain")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "'plain' is a step of [[]tool.mitosis.steps[]] but not an experiment; the experiments are: good, needs, "
            "broken, malformed, badlookup, badtable. Run the step on its own with --mitosis-steps plain."
        ]
    )


def test_a_node_id_of_an_unknown_trial_lists_the_trials(pytester: pytest.Pytester) -> None:
    make(pytester)
    result = pytester.runpytest("--mitosis", "--collect-only", "-p", "no:cacheprovider", "pyproject.toml::good[medium]")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "experiment 'good' has no trial 'good[[]medium[]]'; its trials are: good[[]fast[]], good[[]slow[]]. "
            'Select several with -k, e.g. -k "good and VARIANT".'
        ]
    )


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """One real session: the good experiment (narrowed to one kernel) beside five broken ones."""
    root = tmp_path_factory.mktemp("isolation") / "study"
    git_init(write_investigation(root, PYPROJECT, {"study": STUDY, "broken_module": BROKEN}))
    return root, run_pytest(root, "--mitosis", "--deselect", "pyproject.toml::good[fast]")


def test_the_good_experiment_runs_beside_the_broken_ones(session: tuple[Path, Run]) -> None:
    root, run = session
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.out
    case = run.testcase("good[slow]")
    assert case.find("failure") is None and case.find("error") is None
    assert run.properties("good[slow]")["main"] == "1.0"
    assert "1 passed, 1 deselected, 5 errors" in run.out


def test_each_broken_experiment_errors_at_setup_with_its_message(session: tuple[Path, Run]) -> None:
    root, run = session
    for name, lines in messages(root).items():
        assert f"ERROR at setup of experiment {name}" in run.out or f"_ ERROR at setup of {name} _" in run.out, name
        error = run.testcase(name).find("error")
        assert error is not None, name
        text = error.get("message", "") + (error.text or "")
        assert f"experiment {name!r} cannot run:" in text
        for line in lines:
            assert line in text, (name, line)
    assert "Traceback (most recent call last)" not in run.out
    assert "pytest_mitosis/" not in run.out


def test_the_check_counts_each_broken_experiment_as_blocked(pytester: pytest.Pytester) -> None:
    make(pytester)
    result = pytester.runpytest("--mitosis-check", "-p", "no:cacheprovider", "-k", "not good")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "pyproject.toml::needs  blocked: cannot be collected:\n" + messages(pytester.path)["needs"][0] in out
    assert "mitosis check: 5 trials: 0 new, 0 repeats, 5 blocked" in out
