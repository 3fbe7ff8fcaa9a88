"""Bad ``[tool.mitosis]`` input: one clear paragraph under ``ERROR collecting``, tested verbatim.

Runs ``--collect-only`` in-process (no kernel starts), so these tests are fast.
"""

from __future__ import annotations

import textwrap

import pytest

GOOD_MODULE = """
lookup_dict = {"frequency": {"fast": 10, "slow": 1}}
not_nested = {"frequency": 10}

def run(amplitude, frequency):
    return {"main": amplitude}
"""

STEPS = '[tool.mitosis.steps]\nsine = ["sine_experiment:run", "sine_experiment:lookup_dict"]\n'


def collect_error(pytester: pytest.Pytester, pyproject: str, *args: str, module: str = GOOD_MODULE) -> str:
    pytester.makepyprojecttoml(textwrap.dedent(pyproject))
    pytester.makepyfile(sine_experiment=textwrap.dedent(module))
    result = pytester.runpytest("--mitosis", "--collect-only", "-p", "no:cacheprovider", *args)
    out = result.stdout.str()
    # A problem of the file or the command line stops collection; a problem of one experiment
    # makes that experiment an error item, listed after --collect-only (test_collection_isolation.py).
    if result.ret == pytest.ExitCode.TESTS_FAILED:
        assert "mitosis: experiments that cannot run" in out, out
    else:
        assert result.ret == pytest.ExitCode.INTERRUPTED, out
        assert "ERROR collecting pyproject.toml" in out, out
    assert "Traceback" not in out and "pytest_mitosis" not in out, out
    return out


def test_missing_steps_table(pytester: pytest.Pytester) -> None:
    out = collect_error(pytester, "[tool.mitosis]\ntrials-folder = 'trials'\n")
    path = pytester.path / "pyproject.toml"
    assert (
        f"{path}: no [tool.mitosis.steps] table. Register each experiment step as "
        'name = ["module:callable", "module:lookup_dict"], for example:\n\n'
        "    [tool.mitosis.steps]\n"
        '    sine = ["sine_experiment:run", "sine_experiment:lookup_dict"]'
    ) in out


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        (
            "42",
            'expected ["module:callable", "module:lookup_dict"], found 42. Write it as sine = '
            '["sine_experiment:run", "sine_experiment:lookup_dict"] (the lookup dict may be left out).',
        ),
        (
            '["sine_experiment.run"]',
            'expected the callable as "module:attribute" (for example "sine_experiment:run"), '
            "found 'sine_experiment.run'.",
        ),
        (
            '["sine_experiment:run", "sine_experiment:lookup_dict", "x:y"]',
            'expected ["module:callable", "module:lookup_dict"], found [\'sine_experiment:run\', '
            "'sine_experiment:lookup_dict', 'x:y'].",
        ),
    ],
)
def test_a_step_entry_of_the_wrong_form(pytester: pytest.Pytester, entry: str, message: str) -> None:
    out = collect_error(pytester, f"[tool.mitosis.steps]\nsine = {entry}\n")
    assert f"{pytester.path / 'pyproject.toml'}: [tool.mitosis.steps] sine: {message}" in out


def test_a_module_that_does_not_exist(pytester: pytest.Pytester) -> None:
    """A typo in the step's module: the fix is in pyproject.toml, and the message says so."""
    out = collect_error(pytester, '[tool.mitosis.steps]\nsine = ["sine_experimen:run"]\n')
    path = pytester.path / "pyproject.toml"
    assert (
        f"{path}: [tool.mitosis.steps] sine: there is no module 'sine_experimen' (from the callable "
        "'sine_experimen:run'). Did you mean 'sine_experiment'? If the name is misspelt, fix it in pyproject.toml "
        f"([tool.mitosis.steps] sine); otherwise make 'sine_experimen' importable from {pytester.path} (install it "
        "in this environment, or put it beside pyproject.toml)."
    ) in out
    assert "Fix the error in the module" not in out


def test_a_submodule_typo_in_a_package_also_points_at_pyproject(pytester: pytest.Pytester) -> None:
    pytester.mkpydir("study")
    (pytester.path / "study" / "models.py").write_text("lookup = {}\n\ndef fit(alpha=1):\n    return {'main': alpha}\n")
    out = collect_error(pytester, '[tool.mitosis.steps]\nfit = ["study.modles:fit", "study.models:lookup"]\n')
    assert (
        "[tool.mitosis.steps] fit: there is no module 'study.modles' (from the callable 'study.modles:fit'). "
        "Did you mean 'study.models'? If the name is misspelt, fix it in pyproject.toml ([tool.mitosis.steps] fit); "
    ) in out
    out = collect_error(pytester, '[tool.mitosis.steps]\nfit = ["study.models:fit", "studdy.models:lookup"]\n')
    assert (
        "[tool.mitosis.steps] fit: there is no module 'studdy', so 'studdy.models' (from the lookup dict "
        "'studdy.models:lookup') cannot be imported. Did you mean 'study'?"
    ) in out
    assert "Fix the error in the module" not in out


def test_a_module_importing_a_missing_package_says_to_install_it(pytester: pytest.Pytester) -> None:
    out = collect_error(pytester, STEPS, module="import numpyy as np\n")
    assert "importing module 'sine_experiment' failed:" in out
    assert 'sine_experiment.py", line 1, in <module>' in out
    assert (
        "Module 'sine_experiment' exists, but it imports 'numpyy', which cannot be found in this environment ("
    ) in out
    assert "): install it, or fix that import in the module, and run again." in out
    assert "pyproject.toml ([tool.mitosis.steps]" not in out


def test_a_module_that_fails_to_import_shows_its_own_error(pytester: pytest.Pytester) -> None:
    broken = "import math\n\nvalue = math.sqrt(4)\nraise RuntimeError('the data file is missing')\n"
    out = collect_error(pytester, STEPS, module=broken)
    assert "importing module 'sine_experiment' failed:" in out
    assert 'sine_experiment.py", line 4, in <module>' in out
    assert "raise RuntimeError('the data file is missing')" in out
    assert "RuntimeError: the data file is missing" in out
    assert (
        "Module 'sine_experiment' exists but raised this while being imported. Fix the error in the module "
        "(the traceback above ends where it was raised) and run again."
    ) in out
    assert "importlib" not in out


def test_a_missing_attribute_lists_what_the_module_defines(pytester: pytest.Pytester) -> None:
    out = collect_error(
        pytester, '[tool.mitosis.steps]\nsine = ["sine_experiment:runn", "sine_experiment:lookup_dict"]\n'
    )
    assert (
        f"{pytester.path / 'pyproject.toml'}: [tool.mitosis.steps] sine: 'sine_experiment' has no attribute "
        "'runn' (from 'sine_experiment:runn'). It defines: lookup_dict, not_nested, run."
    ) in out


def test_a_lookup_that_is_not_a_dict_of_dicts(pytester: pytest.Pytester) -> None:
    out = collect_error(
        pytester, '[tool.mitosis.steps]\nsine = ["sine_experiment:run", "sine_experiment:not_nested"]\n'
    )
    assert (
        "[tool.mitosis.steps] sine: the lookup dict 'sine_experiment:not_nested' maps 'frequency' to 10; "
        'expected a dict of {variant name: value}, such as {"fast": 10, "slow": 1} (or {} while it has no '
        "variants)."
    ) in out


def test_a_lookup_that_is_not_a_dict(pytester: pytest.Pytester) -> None:
    out = collect_error(pytester, '[tool.mitosis.steps]\nsine = ["sine_experiment:run", "sine_experiment:run"]\n')
    assert (
        "[tool.mitosis.steps] sine: the lookup dict 'sine_experiment:run' is a function; expected a dict of "
        '{param: {variant: value}}, such as {"frequency": {"fast": 10, "slow": 1}}.'
    ) in out


def test_an_experiment_naming_an_unknown_step(pytester: pytest.Pytester) -> None:
    out = collect_error(pytester, STEPS + '[tool.mitosis.experiments]\nsine = ["sine", "fit"]\n')
    assert (
        f"{pytester.path / 'pyproject.toml'}: [tool.mitosis.experiments] sine: unknown step 'fit'; "
        "the steps of [tool.mitosis.steps] are: sine."
    ) in out


def test_narrowing_to_an_unknown_variant_lists_the_valid_ones(pytester: pytest.Pytester) -> None:
    out = collect_error(
        pytester,
        STEPS + '[tool.mitosis.experiments]\nsine = { steps = ["sine"], params = { "sine.frequency" = "medium" }, '
        'eval = { "sine.amplitude" = "4" } }\n',
    )
    assert (
        f"{pytester.path / 'pyproject.toml'}: [tool.mitosis.experiments] sine params: sine.frequency has no "
        "variant 'medium' in sine_experiment:lookup_dict; the variants are: fast, slow."
    ) in out


def test_narrowing_to_an_unknown_variant_on_the_command_line(pytester: pytest.Pytester) -> None:
    out = collect_error(
        pytester, STEPS, "--mitosis-param", "sine.frequency=medium", "--mitosis-eval", "sine.amplitude=4"
    )
    assert (
        "--mitosis-param: sine.frequency has no variant 'medium' in sine_experiment:lookup_dict; "
        "the variants are: fast, slow."
    ) in out


def test_an_eval_expression_that_does_not_parse(pytester: pytest.Pytester) -> None:
    out = collect_error(pytester, STEPS, "--mitosis-eval", "sine.amplitude=4)")
    assert (
        "--mitosis-eval: the eval expression '4)' for sine.amplitude does not parse (unmatched ')'). "
        "Eval params are Python expressions: 4, .05, '\"lorenz\"', np.ones(3)."
    ) in out


def test_a_required_parameter_without_a_value_shows_both_ways_to_supply_it(pytester: pytest.Pytester) -> None:
    out = collect_error(pytester, STEPS)
    assert (
        f"{pytester.path / 'pyproject.toml'}: experiment 'sine', step 'sine' (sine_experiment:run): parameter "
        "'amplitude' has no default and no value. Give it one on the command line, --mitosis-eval "
        "sine.amplitude=EXPR, or in the experiment table, [tool.mitosis.experiments] sine = { steps = [...], "
        'eval = { "sine.amplitude" = "EXPR" } } or add \'amplitude\' to its lookup dict '
        "(sine_experiment:lookup_dict)."
    ) in out


def test_a_command_line_parameter_for_an_unknown_step_or_parameter(pytester: pytest.Pytester) -> None:
    out = collect_error(pytester, STEPS, "--mitosis-eval", "sine.amplitude=4", "--mitosis-eval", "sin.amplitude=4")
    assert "--mitosis-eval sin.amplitude=4: unknown step 'sin'; the steps of" in out
    out = collect_error(pytester, STEPS, "--mitosis-eval", "sine.amplitude=4", "--mitosis-param", "sine.freq=slow")
    assert (
        "--mitosis-param sine.freq=slow: step 'sine' (sine_experiment:run) has no parameter 'freq'; "
        "its parameters are: amplitude, frequency."
    ) in out


def test_malformed_toml_in_a_config_named_on_the_command_line(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml("[tool.pytest.ini_options]\n")
    sub = pytester.mkdir("sub")
    (sub / "pyproject.toml").write_text("[tool.mitosis.steps\nsine = 1\n")
    result = pytester.runpytest("--mitosis", "--collect-only", "--mitosis-config=sub/pyproject.toml")
    result.stdout.fnmatch_lines(
        [
            "*ERROR collecting sub/pyproject.toml*",
            f"{sub / 'pyproject.toml'}: is not valid TOML (Expected ']' at the end of a table declaration "
            "(at line 1, column 20)). Fix the file and run again.",
        ]
    )
    assert result.ret == pytest.ExitCode.INTERRUPTED


def test_a_bad_option_value_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--mitosis", "--mitosis-param", "frequency")
    result.stderr.fnmatch_lines(
        [
            "*argument --mitosis-param: expected [[]+[]]STEP.PARAM=VARIANT, for example sine.frequency=slow, got 'frequency'"
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result = pytester.runpytest("--mitosis", "--mitosis-timeout", "soon")
    result.stderr.fnmatch_lines(["*argument --mitosis-timeout: expected a positive number of seconds, got 'soon'"])


def test_no_pyproject_at_all(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\n")
    result = pytester.runpytest("--mitosis", "--collect-only")
    result.stderr.fnmatch_lines(
        [
            f"ERROR: --mitosis: no pyproject.toml at {pytester.path / 'pyproject.toml'} (from the rootdir). "
            "Run pytest from the investigation's directory, or pass --mitosis-config PATH/TO/pyproject.toml."
        ]
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR


def test_variant_names_whose_ids_collide_are_refused(pytester: pytest.Pytester) -> None:
    module = (
        "lookup = {'a': {'x-y': 1, 'x': 2}, 'b': {'z': 1, 'y-z': 2}}\n\ndef run(a, b):\n    return {'main': a + b}\n"
    )
    out = collect_error(
        pytester, '[tool.mitosis.steps]\nexp = ["sine_experiment:run", "sine_experiment:lookup"]\n', module=module
    )
    assert (
        f"{pytester.path / 'pyproject.toml'}: experiment 'exp': two trials would both be exp[x-y-z] "
        "(x-y + z, and x + y-z). Rename a variant so that ids stay distinct (a '-' inside a variant name is what "
        "makes them collide)."
    ) in out


@pytest.mark.parametrize(
    ("table", "key", "message"),
    [
        (
            "[tool.mitosis.tolerances]\nmain = { rtol = -1 }\n",
            "[tool.mitosis.tolerances] main rtol",
            "expected a number >= 0, found -1.",
        ),
        (
            '[tool.mitosis.tolerances]\nfit_seconds = "skip"\n',
            "[tool.mitosis.tolerances] fit_seconds",
            "expected { rtol = 0.01, atol = 0 } (either may be left out) or \"ignore\", found 'skip'.",
        ),
        (
            "[tool.mitosis.tolerances]\nf1 = { rtol = 0.1 }\n'metrics.f1' = { atol = 0.1 }\n",
            "[tool.mitosis.tolerances]",
            "'f1' and 'metrics.f1' name the same metric (f1); keep one of them.",
        ),
        (
            "[tool.mitosis]\nhigher-is-better = 3\n",
            "[tool.mitosis] higher-is-better",
            'expected true (main and every metric), false, or a list of metric names such as ["main", "f1"], found 3.',
        ),
    ],
)
def test_a_bad_direction_or_tolerance_names_the_key_and_what_was_expected(
    pytester: pytest.Pytester, table: str, key: str, message: str
) -> None:
    """Rules of [tool.mitosis] judge every experiment: a bad one stops the session before collection."""
    out = collect_error(pytester, STEPS + table)
    assert f"{pytester.path / 'pyproject.toml'}: {key}: {message}" in out


def test_a_bad_tolerance_of_one_experiment_breaks_that_experiment_only(pytester: pytest.Pytester) -> None:
    table = '[tool.mitosis.experiments.sine]\nsteps = ["sine"]\ntolerances = { main = { rtol = "1%" } }\n'
    out = collect_error(pytester, STEPS + table)
    assert (
        f"{pytester.path / 'pyproject.toml'}: [tool.mitosis.experiments] sine tolerances main rtol: "
        "expected a number >= 0, found '1%'."
    ) in out
