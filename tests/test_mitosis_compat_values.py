"""A real mitosis investigation runs unchanged (issue 12, points 1, 3, 4, 5): what its values do.

Empty lookup entries, estimators whose ``get_params()`` raises, ``...`` inside a variant, and
eval values in trial names. Collection is checked in-process (``--collect-only``, no kernel);
what a trial does with such values is checked in real sessions that share one investigation.
"""

from __future__ import annotations

import json
import re
import sqlite3
import textwrap
from pathlib import Path

import numpy  # noqa: F401 - imported once here: pytester's in-process runs cannot import it a second time
import pytest

from .conftest import Run, clean_env, git_init, run_pytest, write_investigation

# -- collection: empty lookup entries (point 1) -------------------------------------------------

SHARED = """
lookup = {
    "frequency": {"fast": 10, "slow": 1},
    "diff_series": {},
    "skinny_specs": {},
}


def run(frequency, diff_series=None, skinny_specs=(1, 2)):
    return {"main": frequency}


def needs(frequency, skinny_specs):
    return {"main": frequency}
"""

STEPS = """
[tool.mitosis.steps]
sine = ["study:run", "study:lookup"]
"""


def collect(pytester: pytest.Pytester, pyproject: str, *args: str, module: str = SHARED) -> tuple[int, list[str], str]:
    pytester.makepyprojecttoml(textwrap.dedent(pyproject))
    pytester.makepyfile(study=textwrap.dedent(module))
    result = pytester.runpytest("--mitosis", "--collect-only", "-q", "-p", "no:cacheprovider", *args)
    out = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in out and "Traceback" not in out, out
    return result.ret, [line for line in result.stdout.lines if "::" in line], out


def test_an_empty_lookup_entry_is_a_lookup_param_without_variants(pytester: pytest.Pytester) -> None:
    ret, ids, out = collect(pytester, STEPS)
    assert ret == pytest.ExitCode.OK, out
    assert ids == ["pyproject.toml::sine[fast]", "pyproject.toml::sine[slow]"]


def test_naming_a_variant_of_an_empty_entry_says_it_has_none(pytester: pytest.Pytester) -> None:
    ret, ids, out = collect(pytester, STEPS, "--mitosis-param", "sine.diff_series=smooth")
    assert ret != pytest.ExitCode.OK and ids == []
    assert (
        "--mitosis-param: sine.diff_series has no variants: its entry 'diff_series' in the lookup dict study:lookup "
        "is empty ({}), so there is no variant 'smooth' to choose. Add the variant there, or give the value as an "
        "eval param (--mitosis-eval sine.diff_series=EXPR)."
    ) in out


def test_naming_a_variant_of_an_empty_entry_in_the_experiment_table(pytester: pytest.Pytester) -> None:
    table = (
        STEPS + '[tool.mitosis.experiments]\nsine = { steps = ["sine"], params = { "sine.skinny_specs" = "wide" } }\n'
    )
    ret, _, out = collect(pytester, table)
    assert ret != pytest.ExitCode.OK
    assert (
        f"{pytester.path / 'pyproject.toml'}: [tool.mitosis.experiments] sine params: sine.skinny_specs has no "
        "variants: its entry 'skinny_specs' in the lookup dict study:lookup is empty ({}), so there is no variant "
        "'wide' to choose."
    ) in out


def test_an_eval_value_for_a_param_with_an_empty_entry_is_used(pytester: pytest.Pytester) -> None:
    ret, ids, out = collect(pytester, STEPS, "--mitosis-eval", "sine.diff_series='fd'", "-k", "slow")
    assert ret == pytest.ExitCode.OK, out
    assert ids == ["pyproject.toml::sine[slow-diff_series_fd]"]


def test_a_required_parameter_whose_entry_is_empty_is_a_clear_error(pytester: pytest.Pytester) -> None:
    ret, ids, out = collect(pytester, '[tool.mitosis.steps]\nneeds = ["study:needs", "study:lookup"]\n')
    # the broken experiment is an error item of its own (the other experiments would still run)
    assert ret != pytest.ExitCode.OK and set(ids) == {"pyproject.toml::needs", "ERROR pyproject.toml::needs"}, out
    assert (
        f"{pytester.path / 'pyproject.toml'}: experiment 'needs', step 'needs' (study:needs): parameter 'skinny_specs' "
        "has no default, and its entry in the lookup dict study:lookup is empty ({}), so it has no variant to take. "
        "Add a variant there ('skinny_specs': {\"name\": value}), or give it a value on the command line, "
        "--mitosis-eval needs.skinny_specs=EXPR, or in the experiment table, [tool.mitosis.experiments] needs = "
        '{ steps = [...], eval = { "needs.skinny_specs" = "EXPR" } }.'
    ) in out


# -- collection: eval values in trial ids (point 5) ---------------------------------------------

ODES = """
import numpy as np

SYSTEM = "lorenz"
lookup = {"diff": {"sfd": 1, "fd": 2}}


def data(noise_abs, t_end=10, system="lorenz", x0=None, shift=0, plot=False):
    return {"main": noise_abs, "data": t_end}


def odes(series, diff, weights=None):
    return {"main": series}
"""

ODES_STEPS = """
[tool.mitosis.steps]
data = ["study:data"]
odes = ["study:odes", "study:lookup"]
"""
DATA = ODES_STEPS + '[tool.mitosis.experiments]\ndata = ["data"]\n'


def test_tracked_eval_values_not_at_their_default_name_the_trial(pytester: pytest.Pytester) -> None:
    table = ODES_STEPS + textwrap.dedent("""
        [tool.mitosis.experiments]
        data_odes = { steps = ["data", "odes"], eval = { "data.noise_abs" = "0.2", "data.t_end" = "10" } }
    """)
    ret, ids, out = collect(pytester, table, module=ODES)
    assert ret == pytest.ExitCode.OK, out
    # noise_abs has no default: always named; t_end=10 is the default: not named
    assert ids == ["pyproject.toml::data_odes[noise_abs_0.2-sfd]", "pyproject.toml::data_odes[noise_abs_0.2-fd]"]
    ret, ids, out = collect(
        pytester,
        table,
        "--mitosis-eval",
        "data.t_end=20",
        "--mitosis-eval",
        "data.system='rossler'",
        "--mitosis-eval",
        "data.x0=np.ones(3)",
        "--mitosis-eval",
        "data.shift=-1.5",
        "--mitosis-eval",
        "+data.plot=True",
        "--mitosis-param",
        "odes.diff=fd",
        module=ODES,
    )
    assert ret == pytest.ExitCode.OK, out
    assert ids == ["pyproject.toml::data_odes[noise_abs_0.2-t_end_20-system_rossler-x0_np.ones_3-shift_-1.5-fd]"]


def test_eval_values_at_the_default_and_untracked_ones_are_left_out_unless_they_make_an_axis(
    pytester: pytest.Pytester,
) -> None:
    ret, ids, out = collect(
        pytester,
        DATA,
        "--mitosis-eval",
        "data.noise_abs=0.1",
        "--mitosis-eval",
        "data.system=SYSTEM",
        "--mitosis-eval",
        "+data.plot=True",
        "--mitosis-eval",
        "+data.plot=False",
        module=ODES,
    )
    assert ret == pytest.ExitCode.OK, out
    # SYSTEM evaluates to the default "lorenz"; plot is untracked, but its two values tell two trials apart
    assert ids == ["pyproject.toml::data[noise_abs_0.1-plot_True]", "pyproject.toml::data[noise_abs_0.1-plot_False]"]


def test_k_selects_by_the_short_form_of_an_eval_value(pytester: pytest.Pytester) -> None:
    args = (
        "--mitosis-eval",
        "data.noise_abs=0.2",
        "--mitosis-eval",
        "data.noise_abs=0.3",
        "--mitosis-eval",
        "data.noise_abs=-1",
        "--mitosis-eval",
        "data.system='lorenz 96'",
    )
    ret, ids, out = collect(pytester, DATA, *args, "-k", "noise_abs_0.2", module=ODES)
    assert ret == pytest.ExitCode.OK, out
    assert ids == ["pyproject.toml::data[noise_abs_0.2-system_lorenz_96]"]
    _, ids, _ = collect(pytester, DATA, *args, "-k", "noise_abs_-1", module=ODES)
    assert ids == ["pyproject.toml::data[noise_abs_-1-system_lorenz_96]"]
    _, ids, _ = collect(pytester, DATA, *args, "pyproject.toml::data[noise_abs_0.3-system_lorenz_96]", module=ODES)
    assert ids == ["pyproject.toml::data[noise_abs_0.3-system_lorenz_96]"]


def test_long_and_look_alike_expressions_stay_short_and_distinct(pytester: pytest.Pytester) -> None:
    long = "np.linspace(0, 1, 100) * 2 + np.ones(100)"
    ret, ids, out = collect(
        pytester,
        DATA,
        "--mitosis-eval",
        f"data.noise_abs={long}",
        "--mitosis-eval",
        "data.noise_abs='a b'",
        "--mitosis-eval",
        "data.noise_abs='a_b'",
        module=ODES,
    )
    assert ret == pytest.ExitCode.OK, out
    assert len(ids) == 3 and len(set(ids)) == 3
    cut, spaced, underscored = (re.fullmatch(r"pyproject\.toml::data\[(.*)\]", i).group(1) for i in ids)  # type: ignore[union-attr]
    assert re.fullmatch(r"noise_abs_np\.linspace_0_1_1_[0-9a-f]{6}", cut), cut
    assert re.fullmatch(r"noise_abs_a_b_[0-9a-f]{6}", spaced) and re.fullmatch(
        r"noise_abs_a_b_[0-9a-f]{6}", underscored
    )
    _, again, _ = collect(pytester, DATA, "--mitosis-eval", f"data.noise_abs={long}", module=ODES)
    assert again == [ids[0]], "the same expression always gives the same id"


def test_an_eval_part_colliding_with_a_variant_name_is_refused(pytester: pytest.Pytester) -> None:
    module = "lookup = {'a': {'p-x_1': 1, 'p': 2}}\n\ndef run(a, x=0):\n    return {'main': a}\n"
    ret, ids, out = collect(
        pytester,
        '[tool.mitosis.steps]\nexp = ["study:run", "study:lookup"]\n',
        "--mitosis-eval",
        "exp.x=0",
        "--mitosis-eval",
        "exp.x=1",
        module=module,
    )
    assert ret != pytest.ExitCode.OK and set(ids) == {"pyproject.toml::exp", "ERROR pyproject.toml::exp"}, out
    assert (
        f"{pytester.path / 'pyproject.toml'}: experiment 'exp': two trials would both be exp[p-x_1] (p-x_1, and "
        "p + x_1 (eval exp.x=1)). Rename a variant, or write an eval expression differently, so that ids stay "
        "distinct (a '-' inside a variant name, or expressions that differ only in characters an id cannot hold, "
        "make them collide)."
    ) in out


# -- real sessions: one investigation with the values a mitosis user has -------------------------

INVESTIGATION = '''
import os
import random


class Leaf:
    def __init__(self, degree):
        self.degree = degree


class Composite:
    """scikit-learn style: get_params reads self.inner, stored as self.inner_, so it raises AttributeError."""

    def __init__(self, inner=None, alpha=1.0):
        self.inner_ = inner
        self.alpha = alpha

    def get_params(self, deep=True):
        marker = os.environ.get("FINGERPRINTED")
        if marker:
            with open(marker, "a") as stream:
                stream.write(type(self).__name__ + "\\n")
        return {"inner": self.inner, "alpha": self.alpha}


class Opaque(Composite):
    """Its fallback fails too: it holds a random generator, whose state vars() cannot show."""

    def __init__(self):
        super().__init__(Leaf(1))
        self.rng = random.Random(0)


class Lazy:
    def __getattr__(self, name):
        raise RuntimeError("lazy attribute " + name + " failed to load")


class Prefs:
    def __init__(self, xlim):
        self.xlim = xlim


lookup = {
    "model": {"composite": Composite(Leaf(2), alpha=0.5), "opaque": Opaque(), "lazy": Lazy()},
    "style": {"plain": Prefs(xlim=(0, ...))},
    "diff_series": {},
}


def fit(model, style, diff_series=None):
    return {"main": 1.0 if diff_series is None else -1.0}


def odes(noise_abs, t_end=10, diff_series=None):
    if noise_abs < 0:
        raise ValueError("negative noise")
    return {"main": noise_abs * t_end + (0 if diff_series is None else 1000)}
'''

SESSION_PYPROJECT = """
[tool.mitosis.steps]
fit = ["study:fit", "study:lookup"]
odes = ["study:odes", "study:lookup"]

[tool.mitosis.experiments]
fit = ["fit"]
odes = { steps = ["odes"], eval = { "odes.noise_abs" = "0.2" } }

[tool.pytest.ini_options]
"""

OPAQUE = (
    "mitosis: experiment 'fit', step 'fit', parameter 'model' (variant 'opaque'): the value: its get_params() raised "
    "AttributeError: 'Opaque' object has no attribute 'inner', and describing it by its attributes instead failed: "
    ".rng: a Random cannot be fingerprinted exactly, so its meaning cannot be locked. Give it a value that can be "
    "compared exactly, or mark the parameter untracked with a leading + (--mitosis-param +fit.model=opaque) if it "
    "cannot change a result."
)
LAZY = re.compile(
    r"mitosis: experiment 'fit', step 'fit', parameter 'model' \(variant 'lazy'\): the value: describing a Lazy raised "
    r"RuntimeError: lazy attribute \w+ failed to load, so its meaning cannot be locked\. .* \(--mitosis-param "
    r"\+fit\.model=lazy\) if it cannot change a result\."
)
EVALS = ("--mitosis-eval", "odes.noise_abs=0.2", "--mitosis-eval", "odes.noise_abs=-1")


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    """The sessions of one investigation, in order; each test reads what they left."""
    base = tmp_path_factory.mktemp("compat")
    root = git_init(write_investigation(base / "study", SESSION_PYPROJECT, {"study": INVESTIGATION}))
    runs: dict[str, Run] = {}

    def marked(name: str) -> dict[str, str]:
        return clean_env(FINGERPRINTED=str(base / f"{name}.marker"))

    runs["fit"] = run_pytest(root, "--mitosis", "-k", "fit", "-rA", env=marked("fit"))
    runs["check"] = run_pytest(root, "--mitosis", "--mitosis-check", "-k", "fit")
    runs["debug"] = run_pytest(root, "--mitosis", "--mitosis-debug", "-k", "fit and (opaque or lazy)")
    runs["xdist"] = run_pytest(root, "--mitosis", "-n", "2", "-k", "fit and (opaque or lazy)")
    runs["plus"] = run_pytest(root, "--mitosis", "--mitosis-param=+fit.model=opaque", "-k", "fit", env=marked("plus"))
    runs["odes"] = run_pytest(root, "--mitosis", "-k", "odes", *EVALS, cache=True)
    runs["lf"] = run_pytest(root, "--mitosis", "--lf", *EVALS, cache=True)
    runs["default"] = run_pytest(root, "--mitosis", "-k", "noise_abs_0.2", *EVALS, "--mitosis-eval", "odes.t_end=10")
    runs["t_end"] = run_pytest(
        root, "--mitosis", "-k", "odes", "--mitosis-eval", "odes.noise_abs=0.2", "--mitosis-eval", "odes.t_end=20"
    )
    return root, runs


def refusal(run: Run, name: str) -> str:
    error = run.testcase(name).find("error")
    assert error is not None, f"{name} was not refused at setup"
    return error.get("message", "") + "\n" + (error.text or "")


def no_crash(run: Run) -> None:
    assert "INTERNALERROR" not in run.out and "Traceback" not in run.out, run.out
    assert run.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED), run.out


def test_a_failing_get_params_refuses_only_its_own_trial(sessions: tuple[Path, dict[str, Run]]) -> None:
    root, runs = sessions
    run = runs["fit"]
    no_crash(run)
    assert re.search(r"\b1 passed, 1 deselected, 2 errors\b", run.out), run.out
    # the pure-Python estimator whose get_params raises falls back to its whole state, and runs
    assert run.properties("fit[composite-plain]")["main"] == "1.0"
    assert OPAQUE in refusal(run, "fit[opaque-plain]")
    assert LAZY.search(refusal(run, "fit[lazy-plain]")), refusal(run, "fit[lazy-plain]")
    assert "ERROR at setup of trial: fit[opaque-plain]" in run.out
    assert re.search(r"^  fit\[opaque-plain\] +ERROR +\(not run\)", run.out, re.M), run.out
    assert (root.parent / "fit.marker").exists(), "get_params was called (so the + session below can tell)"
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    (params,) = db.execute("SELECT params FROM trials WHERE name = 'trial_fit-composite-plain-1'").fetchone()
    model = next(p for p in json.loads(params) if p["name"] == "model")
    assert model["repr"] == "Composite(alpha=0.5, inner_=Leaf(degree=2))"


def test_the_check_blocks_the_same_trials_without_crashing(sessions: tuple[Path, dict[str, Run]]) -> None:
    _, runs = sessions
    run = runs["check"]
    no_crash(run)
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    assert "pyproject.toml::fit[composite-plain]  repeat (iteration 2)" in run.out
    assert (
        "pyproject.toml::fit[opaque-plain]  blocked: experiment 'fit', step 'fit', parameter 'model' (variant "
        "'opaque'): the value: its get_params() raised AttributeError: 'Opaque' object has no attribute 'inner'"
    ) in run.out
    assert "pyproject.toml::fit[lazy-plain]  blocked: " in run.out
    assert "mitosis check: 3 trials: 0 new, 1 repeat, 2 blocked" in run.out


def test_debug_mode_runs_them_and_records_their_repr(sessions: tuple[Path, dict[str, Run]]) -> None:
    root, runs = sessions
    run = runs["debug"]
    no_crash(run)
    assert run.ret == pytest.ExitCode.OK and re.search(r"\b2 passed\b", run.out), run.out
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    (params,) = db.execute("SELECT params FROM trials WHERE debug = 1 AND nodeid LIKE '%lazy%'").fetchone()
    model = next(p for p in json.loads(params) if p["name"] == "model")
    assert (model["tracked"], model["fingerprint"], model["value"]) == (True, None, None)
    assert model["repr"].startswith("<study.Lazy object at 0x")


def test_under_xdist_the_refusals_are_the_same_messages(sessions: tuple[Path, dict[str, Run]]) -> None:
    _, runs = sessions
    run = runs["xdist"]
    no_crash(run)
    assert re.search(r"\b2 errors\b", run.out), run.out
    assert OPAQUE in refusal(run, "fit[opaque-plain]")
    assert LAZY.search(refusal(run, "fit[lazy-plain]"))


def test_an_untracked_value_is_never_fingerprinted(sessions: tuple[Path, dict[str, Run]]) -> None:
    root, runs = sessions
    run = runs["plus"]
    no_crash(run)
    assert run.ret == pytest.ExitCode.OK, run.out
    assert run.properties("fit[opaque-plain]")["main"] == "1.0"
    assert not (root.parent / "plus.marker").exists(), "get_params of the untracked value was called"
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    (params,) = db.execute("SELECT params FROM trials WHERE nodeid LIKE '%opaque%' AND debug = 0").fetchone()
    model = next(p for p in json.loads(params) if p["name"] == "model")
    assert (model["tracked"], model["fingerprint"], model["value"]) == (False, None, None)
    assert model["repr"].startswith("<study.Opaque object at 0x")


def test_an_empty_lookup_entry_leaves_the_default_and_ellipsis_is_locked_exactly(
    sessions: tuple[Path, dict[str, Run]],
) -> None:
    root, runs = sessions
    assert runs["odes"].properties("odes[noise_abs_0.2]")["main"] == "2.0", "diff_series kept its default None"
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    (value,) = db.execute("SELECT value FROM locks WHERE param = 'style' AND name = 'plain'").fetchone()
    assert json.loads(value) == {
        "object": {"type": "study:Prefs", "state": {"xlim": {"tuple": [0, {"const": "Ellipsis"}]}}}
    }
    assert not db.execute("SELECT 1 FROM locks WHERE param = 'diff_series'").fetchall()


def test_eval_values_name_trials_and_iterations_count_per_identity(sessions: tuple[Path, dict[str, Run]]) -> None:
    root, runs = sessions
    run = runs["odes"]
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.out
    assert run.properties("odes[noise_abs_0.2]")["mitosis.trial"] == "trial_odes-noise_abs_0.2-1"
    assert run.properties("odes[noise_abs_-1]")["mitosis.trial"] == "trial_odes-noise_abs_-1-1"
    assert re.search(r"^  odes\[noise_abs_-1\] +FAILED", run.out, re.M), run.out
    # --lf re-runs exactly the failed trial, by its node id
    lf = runs["lf"]
    assert "run-last-failure: rerun previous 1 failure" in lf.out and re.search(r"\b1 failed in\b", lf.out), lf.out
    assert lf.junit is not None and [c.get("name") for c in lf.junit.iter("testcase")] == ["odes[noise_abs_-1]"]
    assert lf.properties("odes[noise_abs_-1]")["mitosis.iteration"] == "2"
    # -k by the short form; typing the default (t_end=10) is the same trial: the same name, the next iteration
    default = runs["default"]
    assert default.ret == pytest.ExitCode.OK, default.out
    assert default.properties("odes[noise_abs_0.2]")["mitosis.trial"] == "trial_odes-noise_abs_0.2-2"
    # another value is another trial
    t_end = runs["t_end"]
    assert t_end.properties("odes[noise_abs_0.2-t_end_20]")["mitosis.trial"] == "trial_odes-noise_abs_0.2-t_end_20-1"
    assert t_end.properties("odes[noise_abs_0.2-t_end_20]")["main"] == "4.0"
    names = {row[0] for row in sqlite3.connect(root / "trials" / "mitosis.sqlite").execute("SELECT name FROM trials")}
    assert {
        "trial_odes-noise_abs_0.2-1",
        "trial_odes-noise_abs_0.2-2",
        "trial_odes-noise_abs_-1-1",
        "trial_odes-noise_abs_-1-2",
        "trial_odes-noise_abs_0.2-t_end_20-1",
    } <= names
    assert list(
        (root / "trials").glob("trial_odes-noise_abs_0.2-t_end_20-1_*/trial_odes-noise_abs_0.2-t_end_20-1.html")
    )
