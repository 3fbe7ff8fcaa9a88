"""Every pytest_mitosis_* hookspec, implemented in a conftest.py (pytest_mitosis_environment is
exercised in test_provenance.py)."""

from __future__ import annotations

from pathlib import Path

from .conftest import git_init, run_pytest, write_investigation

CONFTEST = """
import pytest
from pytest_mitosis.store import SQLiteStore


class CountingStore(SQLiteStore):
    def begin(self, trial, locks):
        print(f"STORE begin {trial.experiment} {trial.variants}")
        return super().begin(trial, locks)


@pytest.hookimpl(optionalhook=True)
def pytest_mitosis_make_store(config, folder):
    return CountingStore(folder / "lab")
"""


def test_a_conftest_can_provide_the_trial_store(tmp_path: Path) -> None:
    module = "lookup = {'n': {'one': 1}}\n\ndef run(n):\n    return {'main': n}\n"
    pyproject = '[tool.mitosis.steps]\nexp = ["exp:run", "exp:lookup"]\n\n[tool.pytest.ini_options]\n'
    root = git_init(write_investigation(tmp_path / "study", pyproject, {"exp": module, "conftest": CONFTEST}))
    run = run_pytest(root, "--mitosis", "-s")
    assert run.ret == 0, run.out
    assert "STORE begin exp one" in run.out
    assert (root / "trials" / "lab" / "mitosis.sqlite").is_file()
    assert not (root / "trials" / "mitosis.sqlite").exists()
