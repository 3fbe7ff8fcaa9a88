"""The command line: options that imply --mitosis, both spellings of path options, the sweep size guard.

Everything here runs without a kernel: collection, usage errors, and the guard (which refuses
before the first kernel would start).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from .conftest import run_pytest, write_investigation

MODULE = """
lookup = {"frequency": {"fast": 10, "slow": 1, "medium": 5}}


def run(frequency, amplitude=1.0):
    return {"main": amplitude * frequency}
"""

PYPROJECT = """
[tool.mitosis.steps]
sine = ["study:run", "study:lookup"]

[tool.pytest.ini_options]
"""


def make(pytester: pytest.Pytester, ini: str = "", pyproject: str = PYPROJECT) -> None:
    pytester.makepyprojecttoml(textwrap.dedent(pyproject) + ini)
    pytester.makepyfile(study=textwrap.dedent(MODULE))


def ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if "::" in line and not line.startswith(("ERROR", "FAILED"))]


ALL = ["pyproject.toml::sine[fast]", "pyproject.toml::sine[slow]", "pyproject.toml::sine[medium]"]

# -- point 12: every --mitosis-* option typed on the command line implies --mitosis ---------------


@pytest.mark.parametrize(
    "option",
    [
        "--mitosis-seed=3",
        "--mitosis-debug",
        "--mitosis-timeout=60",
        "--mitosis-max-cell-output=2MB",
        "--mitosis-resume",
        "--mitosis-progress-every=5",
        "--mitosis-store-patience=0",
        "--mitosis-param=sine.frequency=slow",
    ],
)
def test_a_mitosis_option_implies_mitosis(pytester: pytest.Pytester, option: str) -> None:
    make(pytester)
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider", option)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert ids(result) == (["pyproject.toml::sine[slow]"] if "param" in option else ALL)


def test_check_without_mitosis_checks(pytester: pytest.Pytester) -> None:
    make(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "--mitosis-check")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED, out  # not a git repository: blocked, not "no tests ran"
    assert "pyproject.toml::sine[fast]  blocked: not in a git repository (see the message above)" in out
    assert "mitosis check: 3 trials: 0 new, 0 repeats, 3 blocked" in out


def test_reproduce_without_mitosis_reproduces(pytester: pytest.Pytester) -> None:
    """``--mitosis-reproduce`` alone turns mitosis on: it looks for the trial in the store (none here)."""
    make(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "--mitosis-reproduce", "abc123")
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.INTERRUPTED, out
    assert f"mitosis: experiments from {pytester.path / 'pyproject.toml'}" in out
    error = out.split("ERROR collecting pyproject.toml", 1)[1].split("\n")[1]
    store = pytester.path / "trials" / "mitosis.sqlite"
    assert error.startswith(f"no trial store at {store}. Run trials with pytest --mitosis first, or name "), out
    assert "pytest --mitosis-trials-folder DIR" in out and "pytest --mitosis-store URL" in out, "pytest's own options"
    assert "Traceback" not in out and "INTERNALERROR" not in out


def test_options_from_addopts_do_not_imply_mitosis(pytester: pytest.Pytester) -> None:
    make(pytester, ini='addopts = "--mitosis-timeout=60"\n')
    pytester.makepyfile(test_plain="def test_it(): pass")
    result = pytester.runpytest("--collect-only", "-q", "-p", "no:cacheprovider")
    assert ids(result) == ["test_plain.py::test_it"]


def test_a_trial_node_id_without_mitosis_says_to_add_it(pytester: pytest.Pytester) -> None:
    make(pytester)
    result = pytester.runpytest("-p", "no:cacheprovider", "pyproject.toml::sine[slow]")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: pyproject.toml::sine[[]slow[]] names a trial of pytest-mitosis, which collects pyproject.toml only "
            "with --mitosis: run pytest --mitosis 'pyproject.toml::sine[[]slow[]]'"
        ]
    )


# -- point 14: --mitosis-trials-folder DIR and --mitosis-config PATH, with a space or with '=' -----


def test_trials_folder_outside_the_project_with_a_space(pytester: pytest.Pytester) -> None:
    root = pytester.mkdir("study")
    pytester.mkdir("elsewhere")
    (root / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (root / "study.py").write_text(textwrap.dedent(MODULE))
    import os

    os.chdir(root)
    for spelling in (["--mitosis-trials-folder", "../elsewhere"], ["--mitosis-trials-folder=../elsewhere"]):
        result = pytester.runpytest("--mitosis", "--collect-only", "-q", "-p", "no:cacheprovider", *spelling)
        out = result.stdout.str()
        assert result.ret == pytest.ExitCode.OK, (spelling, out)
        assert ids(result) == ALL, spelling


def test_an_absolute_trials_folder_without_a_pytest_table(pytester: pytest.Pytester) -> None:
    root = pytester.mkdir("study")
    elsewhere = pytester.mkdir("elsewhere")
    (root / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT).replace("[tool.pytest.ini_options]\n", ""))
    (root / "study.py").write_text(textwrap.dedent(MODULE))
    import os

    os.chdir(root)
    for spelling in (["--mitosis-trials-folder", str(elsewhere)], [f"--mitosis-trials-folder={elsewhere}"]):
        result = pytester.runpytest("--mitosis", "--collect-only", "-p", "no:cacheprovider", *spelling)
        out = result.stdout.str()
        assert result.ret == pytest.ExitCode.OK, (spelling, out, result.stderr.str())
        assert f"trials folder {elsewhere}" in out
        assert f"rootdir: {root}" in result.stdout.lines


def test_a_sub_package_config_with_a_pytest_table_with_a_space(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    sub = pytester.mkdir("sub")
    (sub / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (sub / "study.py").write_text(textwrap.dedent(MODULE))
    seen = []
    for spelling in (["--mitosis-config", "sub/pyproject.toml"], ["--mitosis-config=sub/pyproject.toml"]):
        result = pytester.runpytest(
            "--mitosis", "--collect-only", "-q", "-p", "no:cacheprovider", "-k", "slow", *spelling
        )
        assert result.ret == pytest.ExitCode.OK, result.stdout.str()
        seen.append(ids(result))
    # the rootdir stays the enclosing project, so node ids are the same with both spellings
    assert seen == [["sub/pyproject.toml::sine[slow]"]] * 2


def test_the_private_pytest_api_the_rootdir_fix_needs_is_there(pytester: pytest.Pytester) -> None:
    """pytest_layer/rootdir.py re-chooses the rootdir through pytest's private API (there is no public way):
    a pytest release that changes it fails here, saying what to do, rather than in a user's session."""
    from pytest_mitosis.pytest_layer.rootdir import CHECKED_PYTEST, private_api_problem

    problem = private_api_problem(pytester.parseconfig())
    assert problem is None, (
        f"pytest {pytest.__version__}: {problem}. pytest_mitosis/pytest_layer/rootdir.py was checked against "
        f"pytest {CHECKED_PYTEST}: adapt _redo_setup and private_api_problem to this pytest, then update "
        "CHECKED_PYTEST and the pytest pin in pyproject.toml"
    )


def test_the_installed_pytest_is_one_the_package_declares() -> None:
    """The pin that guards rootdir.py's private API: the suite runs only on a pytest the package accepts."""
    from packaging.requirements import Requirement

    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    declared = tomllib.loads((Path(__file__).parent.parent / "pyproject.toml").read_text())["project"]["dependencies"]
    (pin,) = [Requirement(d) for d in declared if Requirement(d).name == "pytest"]
    assert pin.specifier.contains(pytest.__version__), f"pytest {pytest.__version__} is outside {pin}"
    assert any(spec.operator == "<" for spec in pin.specifier), f"{pin}: no upper bound guards rootdir.py"


# -- point 8: the sweep size guard ------------------------------------------------------------------

REFUSAL = (
    "ERROR: mitosis: this session would run 3 trials, more than mitosis_max_trials (2), and none was selected:",
    "  sine  3 trials",
    "Select the trials to run with -k \"sine and fast\", -m, node ids ('pyproject.toml::sine[[]fast[]]') or --lf, "
    "or narrow axes with --mitosis-param STEP.PARAM=VARIANT; or raise the limit with --mitosis-max-trials 3 "
    "(ini mitosis_max_trials; 0: no limit). `pytest --mitosis --collect-only -q` lists the trials, "
    "`pytest --mitosis --mitosis-check` checks them without running any.",
)


def test_more_trials_than_the_limit_are_refused_before_any_kernel(pytester: pytest.Pytester) -> None:
    make(pytester, ini="mitosis_max_trials = 2\n")
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(list(REFUSAL))
    assert not (pytester.path / "trials").exists()


def test_the_default_limit_is_100(pytester: pytest.Pytester) -> None:
    module = (
        "lookup = {'a': {f'a{i}': i for i in range(11)}, 'b': {f'b{i}': i for i in range(10)}}\n\n"
        "def run(a, b):\n    return {'main': a + b}\n"
    )
    pytester.makepyprojecttoml('[tool.mitosis.steps]\ngrid = ["study:run", "study:lookup"]\n')
    pytester.makepyfile(study=module)
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*would run 110 trials, more than mitosis_max_trials (100)*", "  grid  110 trials"])


@pytest.mark.parametrize(
    "selection",
    [
        ["-k", "sine"],
        ["-m", "mitosis"],
        ["pyproject.toml::sine"],
        ["--mitosis-param", "sine.frequency=slow"],
        ["--mitosis-max-trials", "3"],
        ["--mitosis-max-trials=0"],
    ],
)
def test_a_selection_or_a_raised_limit_passes_the_guard(pytester: pytest.Pytester, selection: list[str]) -> None:
    make(pytester, ini="mitosis_max_trials = 2\n")
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider", *selection)
    # past the guard, the next refusal is the clean-repository guard (no kernel needed to tell)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "mitosis_max_trials" not in err
    assert "is not in a git repository" in err


def test_narrowing_one_experiments_axis_leaves_the_others_counted(pytester: pytest.Pytester) -> None:
    """--mitosis-param narrows one step's axis; an experiment without that step keeps its sweep."""
    module = (
        "lookup = {'frequency': {'fast': 10, 'slow': 1}, 'n': {f'n{i}': i for i in range(5)}}\n\n"
        "def sine(frequency):\n    return {'main': frequency}\n\n"
        "def grid(n):\n    return {'main': n}\n"
    )
    pytester.makepyprojecttoml(
        '[tool.mitosis.steps]\nsine = ["study:sine", "study:lookup"]\ngrid = ["study:grid", "study:lookup"]\n\n'
        "[tool.pytest.ini_options]\nmitosis_max_trials = 4\n"
    )
    pytester.makepyfile(study=module)
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider", "--mitosis-param", "sine.frequency=slow")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*would run 6 trials, more than mitosis_max_trials (4)*", "  sine  1 trial", "  grid  5 trials"]
    )


def test_collect_only_and_check_are_never_limited(pytester: pytest.Pytester) -> None:
    make(pytester, ini="mitosis_max_trials = 2\n")
    result = pytester.runpytest("--mitosis", "--collect-only", "-q", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.OK and ids(result) == ALL
    result = pytester.runpytest("--mitosis", "--mitosis-check", "-p", "no:cacheprovider")
    assert "mitosis check: 3 trials" in result.stdout.str()
    assert "mitosis_max_trials" not in result.stderr.str()


def test_a_selection_from_addopts_is_not_a_choice(pytester: pytest.Pytester) -> None:
    make(pytester, ini='mitosis_max_trials = 2\naddopts = "-m mitosis"\n')
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(list(REFUSAL))


def test_a_bad_limit_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, ini='mitosis_max_trials = "many"\n')
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: ini key mitosis_max_trials: expected a number of trials (0: no limit), got 'many'"]
    )


@pytest.mark.parametrize(
    ("args", "ini", "message"),
    [
        (
            [],
            'mitosis_heartbeat_every = "often"\n',
            "ERROR: ini key mitosis_heartbeat_every: expected a number of seconds (0 or more), got 'often'",
        ),
        ([], 'mitosis_progress_every = "-1"\n', "ERROR: ini key mitosis_progress_every: *"),
        (["--mitosis-progress-every=never"], "", "*error: argument --mitosis-progress-every: *"),
        (
            ["--mitosis-resume", "--mitosis-debug"],
            "",
            "ERROR: --mitosis-resume skips trials that passed at the current commit, and debug trials never count as "
            "passed: drop --mitosis-debug (commit the investigation first), or drop --mitosis-resume.",
        ),
    ],
)
def test_bad_long_sweep_settings_are_usage_errors(
    pytester: pytest.Pytester, args: list[str], ini: str, message: str
) -> None:
    make(pytester, ini=ini)
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])


def test_a_bad_store_patience_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, ini='mitosis_store_patience = "a while"\n')
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["ERROR: ini key mitosis_store_patience: expected a number of seconds (0 or more), got 'a while'"]
    )
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider", "--mitosis-store-patience=-5")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        ["*error: argument --mitosis-store-patience: expected a number of seconds (0 or more), got '-5'"]
    )


def test_a_bad_cell_output_size_is_a_usage_error(pytester: pytest.Pytester) -> None:
    make(pytester, ini='mitosis_max_cell_output = "lots"\n')
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "ERROR: ini key mitosis_max_cell_output: expected a size such as 4MB, 500kB or 1MiB "
            "(or a number of bytes; 0: no limit), got 'lots'"
        ]
    )
    result = pytester.runpytest("--mitosis", "-p", "no:cacheprovider", "--mitosis-max-cell-output=4 parsecs")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*error: argument --mitosis-max-cell-output: expected a size such as 4MB, 500kB or 1MiB "
            "(or a number of bytes; 0: no limit), got '4 parsecs'",
        ]
    )


def test_the_guard_holds_under_xdist(tmp_path: Path) -> None:
    root = write_investigation(tmp_path / "study", PYPROJECT + "mitosis_max_trials = 2\n", {"study": MODULE})
    run = run_pytest(root, "--mitosis", "-n", "2", junit=False)
    assert run.ret == pytest.ExitCode.USAGE_ERROR, run.out
    assert REFUSAL[0] in run.out and REFUSAL[1] in run.out
    assert "[gw0]" not in run.out  # refused on the controller, before the workers start trials


def test_lf_with_nothing_failed_last_time_is_not_a_selection(pytester: pytest.Pytester) -> None:
    make(pytester, ini="mitosis_max_trials = 2\n")
    result = pytester.runpytest("--mitosis", "--lf")  # cache enabled: nothing failed before, so --lf runs all
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(list(REFUSAL))


def test_a_variant_typo_stops_the_session_even_when_its_step_is_only_in_broken_experiments(
    pytester: pytest.Pytester,
) -> None:
    """`pipeline` (data then fit) is broken by a typo in fit's path; `--mitosis-param data.noise=nosuch`
    names a step that loaded: the typo is the command's, so nothing runs (the others neither)."""
    pytester.makepyprojecttoml(
        "[tool.mitosis.steps]\n"
        'data = ["study:data", "study:lookup"]\n'
        'fit = ["study.fitt:fit"]\n'
        'other = ["study:other"]\n\n'
        "[tool.mitosis.experiments]\n"
        'pipeline = ["data", "fit"]\n'
        'other = ["other"]\n'
    )
    pytester.makepyfile(
        study="lookup = {'noise': {'low': 0.1}}\n\ndef data(noise):\n    return {'main': noise, 'data': 1}\n\n"
        "def other():\n    return {'main': 0}\n"
    )
    result = pytester.runpytest(
        "--mitosis", "--collect-only", "-q", "-p", "no:cacheprovider", "--mitosis-param", "data.noise=nosuch"
    )
    assert result.ret != pytest.ExitCode.OK
    out = result.stdout.str() + result.stderr.str()
    assert "--mitosis-param: data.noise has no variant 'nosuch' in study:lookup; the variants are: low." in out, out
    assert "pyproject.toml::other" not in result.stdout.lines
