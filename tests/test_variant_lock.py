"""Variant names keep their meaning: a redefined variant is refused at setup of that trial only."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from .conftest import Run, git, git_init, run_pytest, write_investigation

MODULE = """
import numpy as np

SCALE = 1
lookup = {{
    "frequency": {{"fast": 10, "slow": {slow}}},
    "weights": {{"flat": np.ones(2000)}},
}}


def run(frequency, weights, amplitude=1, plot=False):
    return {{"main": float(frequency * amplitude * weights.sum())}}
"""

PYPROJECT = """
[tool.mitosis.steps]
sine = ["exp:run", "exp:lookup"]

[tool.mitosis.experiments]
sine = { steps = ["sine"], eval = { "sine.amplitude" = "SCALE" } }

[tool.pytest.ini_options]
"""


def commit(root: Path, source: str) -> None:
    (root / "exp.py").write_text(source)
    git(root, "commit", "-qam", "change the experiment")


@pytest.fixture(scope="module")
def history(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    """One investigation through the mitosis workflow: run, redefine, refuse, debug, rename."""
    root = git_init(
        write_investigation(tmp_path_factory.mktemp("lock") / "study", PYPROJECT, {"exp": MODULE.format(slow=1)})
    )
    runs: dict[str, Run] = {}
    runs["first"] = run_pytest(root, "--mitosis", "-k", "slow", "--mitosis-eval=+sine.plot=True")
    runs["untracked-changed"] = run_pytest(root, "--mitosis", "-k", "slow", "--mitosis-eval=+sine.plot=False")
    commit(root, MODULE.format(slow=2))
    runs["redefined"] = run_pytest(root, "--mitosis", "-rA")
    runs["debug"] = run_pytest(root, "--mitosis", "--mitosis-debug", "-k", "slow")
    commit(
        root,
        MODULE.format(slow=1).replace(
            '"weights": {"flat": np.ones(2000)}', '"weights": {"flat": np.where(np.arange(2000) == 1234, 2.0, 1.0)}'
        ),
    )
    runs["array"] = run_pytest(root, "--mitosis", "-k", "fast")
    commit(root, MODULE.format(slow=1).replace("SCALE = 1", "SCALE = 3"))
    runs["eval"] = run_pytest(root, "--mitosis", "-k", "slow")
    return root, runs


def setup_error(run: Run, name: str) -> str:
    case = run.testcase(name)
    error = case.find("error")
    assert error is not None, f"{name} was not refused at setup"
    return error.get("message", "") + "\n" + (error.text or "")


def test_untracked_params_are_recorded_but_neither_locked_nor_part_of_identity(
    history: tuple[Path, dict[str, Run]],
) -> None:
    root, runs = history
    assert runs["first"].ret == 0, runs["first"].out
    assert runs["untracked-changed"].ret == 0, runs["untracked-changed"].out
    assert runs["first"].properties("sine[slow-flat]")["mitosis.iteration"] == "1"
    assert runs["untracked-changed"].properties("sine[slow-flat]")["mitosis.iteration"] == "2"
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    locked = sorted(db.execute("SELECT step, param, kind, name FROM locks").fetchall())
    assert locked == [
        ("sine", "amplitude", "eval", "SCALE"),
        ("sine", "frequency", "lookup", "fast"),  # from the later run of both variants
        ("sine", "frequency", "lookup", "slow"),
        ("sine", "weights", "lookup", "flat"),
    ]


def test_a_redefined_variant_is_refused_before_its_kernel_and_others_still_run(
    history: tuple[Path, dict[str, Run]],
) -> None:
    root, runs = history
    run = runs["redefined"]
    assert run.ret == pytest.ExitCode.TESTS_FAILED
    assert re.search(r"1 passed, 1 error", run.out), run.out
    assert run.properties("sine[fast-flat]")["main"] == "20000.0"
    text = setup_error(run, "sine[slow-flat]")
    assert (
        "mitosis: experiment 'sine', step 'sine': the variant 'slow' of parameter 'frequency' now means a different "
        "value than in earlier trials.\n"
        "  stored:    1   (locked by trial trial_sine-slow-flat-1 (key "
    ) in text
    assert "  attempted: 2\n  they differ at the value: 1 vs 2\n" in text
    assert (
        "Give the new value a new variant name in exp:lookup (variant names are never reused), or run with --mitosis-debug."
        in text
    )
    assert "Traceback" not in run.out and "During handling" not in run.out
    assert "ERROR at setup of trial: sine[slow-flat]" in run.out
    assert len(list((root / "trials").glob("trial_sine-slow-flat-3_*"))) == 0, "no kernel ran for the refused trial"


def test_debug_mode_waives_the_lock(history: tuple[Path, dict[str, Run]]) -> None:
    _, runs = history
    assert runs["debug"].ret == 0, runs["debug"].out
    assert runs["debug"].properties("sine[slow-flat]")["main"] == "4000.0"


def test_one_changed_element_of_a_2000_element_array_is_a_different_value(history: tuple[Path, dict[str, Run]]) -> None:
    _, runs = history
    text = setup_error(runs["array"], "sine[fast-flat]")
    assert "the variant 'flat' of parameter 'weights' now means a different value" in text
    assert "  stored:    array<<f8, 2000>[1.0, 1.0, 1.0, 1.0, 1.0, 1.0, ...]" in text
    assert "  they differ at [flat index 1234]: 1.0 vs 2.0\n" in text


def test_a_tracked_eval_param_is_locked_by_value(history: tuple[Path, dict[str, Run]]) -> None:
    _, runs = history
    text = setup_error(runs["eval"], "sine[slow-flat-amplitude_SCALE]")  # SCALE = 3 is no longer the default 1
    assert "the eval expression 'SCALE' for parameter 'amplitude' now means a different value" in text
    assert "  stored:    1   " in text and "  attempted: 3\n" in text
    assert "mark the parameter untracked with a leading +, or run with --mitosis-debug." in text


def test_a_value_that_cannot_be_fingerprinted_is_refused_with_the_plus_hint(tmp_path: Path) -> None:
    module = "lookup = {'transform': {'square': lambda x: x * x}}\n\ndef run(transform):\n    return {'main': 1}\n"
    root = git_init(
        write_investigation(
            tmp_path / "study",
            PYPROJECT.replace(
                '[tool.mitosis.experiments]\nsine = { steps = ["sine"], eval = { "sine.amplitude" = "SCALE" } }\n', ""
            ),
            {"exp": module},
        )
    )
    run = run_pytest(root, "--mitosis")
    text = setup_error(run, "sine[square]")
    assert (
        "mitosis: experiment 'sine', step 'sine', parameter 'transform' (variant 'square'): the value: a lambda cannot "
        "be fingerprinted: only functions and classes importable by name can, so its meaning cannot be locked. Give it "
        "a value that can be compared exactly, or mark the parameter untracked with a leading + "
        "(--mitosis-param +sine.transform=square) if it cannot change a result."
    ) in text
    untracked = run_pytest(root, "--mitosis", "--mitosis-param=+sine.transform=square")
    assert untracked.ret == 0, untracked.out


def test_every_redefined_variant_of_a_trial_is_named_and_a_cut_value_says_where_it_differs(tmp_path: Path) -> None:
    """Two variants of one trial changed meaning: the refusal names both, and a value too long
    for the check's line says where the change is, instead of two identical cut texts."""
    from pytest_mitosis.core.fingerprint import fingerprint
    from pytest_mitosis.identity.locks import Lock
    from pytest_mitosis.store import NewTrial, SQLiteStore, VariantRedefined

    def lock(name: str, param: str, value: object) -> Lock:
        digest, tree = fingerprint(value)
        return Lock("exp", "fit", param, "lookup", name, digest, tree, "study:lookup")

    model = {"alpha": 10.0, "copy_X": True, "fit_intercept": True, "solver": "auto", "tol": 1e-4}
    store = SQLiteStore(tmp_path / "trials")
    try:
        trial = NewTrial(
            "0123abcd", "exp", "[]", "low-ridge", "trial_exp-low-ridge", "n", False, {"commit": None}, 1, {}, [], []
        )
        store.begin(trial, [lock("low", "noise", 0.1), lock("ridge", "model", model)])
        with pytest.raises(VariantRedefined) as raised:
            store.check_locks([lock("low", "noise", 0.2), lock("ridge", "model", {**model, "tol": 1e-3})])
    finally:
        store.close()
    message = str(raised.value)
    assert "the variant 'low' of parameter 'noise'" in message and "the variant 'ridge' of parameter 'model'" in message
    low, ridge = raised.value.short.split("; ")
    assert low == "variant 'low' of fit.noise was 0.1 in trial_exp-low-ridge-1 (key 0123abcd), is now 0.2"
    assert ridge.endswith("(they differ at ['tol']: 0.0001 vs 0.001)"), ridge
