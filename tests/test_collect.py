"""Collection: trial ids, selection with -k and -m, narrowing, eval axes, testpaths. No kernels."""

from __future__ import annotations

import textwrap

import pytest

MODULE = """
lookup_dict = {"frequency": {"fast": 10, "slow": 1}, "noise": {"low": 0.01, "high": 0.5}, "unused": {"a": 1}}
fit_lookup = {"alpha": {"small": 0.1, "big": 10.0}}


def run(amplitude, frequency, noise=0.0, plot=False):
    return {"main": amplitude, "data": [amplitude]}


def fit(data, alpha=1.0, *, method="lsq"):
    return {"main": data[0] * alpha}
"""

PYPROJECT = """
[tool.mitosis.steps]
sine = ["study:run", "study:lookup_dict"]
fit = ["study:fit", "study:fit_lookup"]

[tool.mitosis.experiments]
sine = { steps = ["sine"], eval = { "sine.amplitude" = "4" } }
pipeline = { steps = ["sine", "fit"], params = { "sine.noise" = "low" }, eval = { "sine.amplitude" = ["1", "2"] } }
"""


def collect(pytester: pytest.Pytester, *args: str, pyproject: str = PYPROJECT, ini: str = "") -> list[str]:
    pytester.makepyprojecttoml(textwrap.dedent(pyproject) + "\n[tool.pytest.ini_options]\n" + ini)
    pytester.makepyfile(study=textwrap.dedent(MODULE))
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", *args)
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED), result.stdout.str()
    return [line for line in result.stdout.lines if "::" in line]


def test_one_item_per_trial_with_variant_names_in_step_then_signature_order(pytester: pytest.Pytester) -> None:
    assert collect(pytester, "--mitosis") == [
        "pyproject.toml::sine[amplitude_4-fast-low]",
        "pyproject.toml::sine[amplitude_4-fast-high]",
        "pyproject.toml::sine[amplitude_4-slow-low]",
        "pyproject.toml::sine[amplitude_4-slow-high]",
        "pyproject.toml::pipeline[amplitude_1-fast-low-small]",
        "pyproject.toml::pipeline[amplitude_1-fast-low-big]",
        "pyproject.toml::pipeline[amplitude_1-slow-low-small]",
        "pyproject.toml::pipeline[amplitude_1-slow-low-big]",
        "pyproject.toml::pipeline[amplitude_2-fast-low-small]",
        "pyproject.toml::pipeline[amplitude_2-fast-low-big]",
        "pyproject.toml::pipeline[amplitude_2-slow-low-small]",
        "pyproject.toml::pipeline[amplitude_2-slow-low-big]",
    ]


def test_k_selects_by_variant_names(pytester: pytest.Pytester) -> None:
    assert collect(pytester, "--mitosis", "-k", "sine and slow") == [
        "pyproject.toml::sine[amplitude_4-slow-low]",
        "pyproject.toml::sine[amplitude_4-slow-high]",
    ]


def test_command_line_narrows_and_overrides_the_table(pytester: pytest.Pytester) -> None:
    ids = collect(
        pytester,
        "--mitosis",
        "--mitosis-param=sine.frequency=slow",
        "--mitosis-param=sine.noise=high",
        "--mitosis-param=sine.noise=low",
        "--mitosis-eval=sine.amplitude=3",
        "--mitosis-eval=+sine.plot=True",
    )
    assert ids == [
        "pyproject.toml::sine[amplitude_3-slow-high]",
        "pyproject.toml::sine[amplitude_3-slow-low]",
        "pyproject.toml::pipeline[amplitude_3-slow-high-small]",
        "pyproject.toml::pipeline[amplitude_3-slow-high-big]",
        "pyproject.toml::pipeline[amplitude_3-slow-low-small]",
        "pyproject.toml::pipeline[amplitude_3-slow-low-big]",
    ]


def test_repeating_an_eval_param_on_the_command_line_makes_an_axis(pytester: pytest.Pytester) -> None:
    ids = collect(
        pytester,
        "--mitosis",
        "-k",
        "sine",
        "--mitosis-eval=sine.amplitude=1",
        "--mitosis-eval=sine.amplitude=2",
        "--mitosis-param=sine.noise=low",
        "--mitosis-param=sine.frequency=fast",
    )
    assert ids == ["pyproject.toml::sine[amplitude_1-fast-low]", "pyproject.toml::sine[amplitude_2-fast-low]"]


def test_items_carry_the_mitosis_marker(pytester: pytest.Pytester) -> None:
    assert len(collect(pytester, "--mitosis", "-m", "mitosis")) == 12
    assert collect(pytester, "--mitosis", "-m", "not mitosis") == []


def test_without_mitosis_pyproject_is_not_collected(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_it(): pass")
    assert collect(pytester) == ["test_plain.py::test_it"]


def test_trials_are_collected_beside_testpaths(pytester: pytest.Pytester) -> None:
    tests = pytester.mkdir("tests")
    (tests / "test_plain.py").write_text("def test_it(): pass\n")
    ids = collect(pytester, "--mitosis", "-k", "test_it or (sine and fast and low)", ini='testpaths = ["tests"]\n')
    assert ids == ["tests/test_plain.py::test_it", "pyproject.toml::sine[amplitude_4-fast-low]"]
    assert collect(pytester, ini='testpaths = ["tests"]\n') == ["tests/test_plain.py::test_it"]


def test_the_trials_folder_is_never_walked_for_tests(pytester: pytest.Pytester) -> None:
    """Beside the study's own tests, pytest does not walk the trials folder (a long study's thousands of
    notebooks and pages made every session's collection slower); without --mitosis it is pytest's to walk."""
    pytester.makepyfile(test_plain="def test_it(): pass")
    folder = pytester.mkdir("trials") / "trial_sine-fast-1_0123abcd"
    folder.mkdir()
    (folder / "test_left_in_trials.py").write_text("def test_walked(): pass\n")
    ids = collect(pytester, "--mitosis", "-k", "test_ or (sine and fast and low)")
    assert ids == ["pyproject.toml::sine[amplitude_4-fast-low]", "test_plain.py::test_it"]
    assert "trials/trial_sine-fast-1_0123abcd/test_left_in_trials.py::test_walked" in collect(pytester)


def test_naming_pyproject_collects_only_trials(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_it(): pass")
    ids = collect(pytester, "--mitosis", "pyproject.toml", "-k", "sine and fast and low")
    assert ids == ["pyproject.toml::sine[amplitude_4-fast-low]"]


def test_node_ids_on_the_command_line_select_one_trial(pytester: pytest.Pytester) -> None:
    ids = collect(pytester, "--mitosis", "pyproject.toml::pipeline[amplitude_2-slow-low-big]")
    assert ids == ["pyproject.toml::pipeline[amplitude_2-slow-low-big]"]


def test_mitosis_config_reads_a_sub_package_pyproject(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    sub = pytester.mkdir("sub")
    (sub / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (sub / "study.py").write_text(textwrap.dedent(MODULE))
    result = pytester.runpytest(
        "--collect-only", "-q", "--mitosis", "--mitosis-config=sub/pyproject.toml", "-k", "sine and slow"
    )
    assert [line for line in result.stdout.lines if "::" in line] == [
        "sub/pyproject.toml::sine[amplitude_4-slow-low]",
        "sub/pyproject.toml::sine[amplitude_4-slow-high]",
    ]
