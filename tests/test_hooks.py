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


LOSING_CONFTEST = """
import pytest
from pytest_mitosis.store import SQLiteStore, StoreError


class LosingStore(SQLiteStore):
    def finish(self, key, **kwargs):
        if kwargs.get("status") == "passed":
            raise StoreError("mitosis: the trial store at lab went away (connection lost)")
        return super().finish(key, **kwargs)


@pytest.hookimpl(optionalhook=True)
def pytest_mitosis_make_store(config, folder):
    return LosingStore(folder / "lab")
"""


def test_a_store_lost_after_the_kernel_ran_fails_the_trial_in_one_message(tmp_path: Path) -> None:
    """A store that fails at the end (a PostgreSQL server stopped mid-sweep): one clear failure
    naming the trial's notebook, no traceback of ours; the trial's folder is kept whole."""
    module = "lookup = {'n': {'one': 1}}\n\ndef run(n):\n    return {'main': n}\n"
    pyproject = '[tool.mitosis.steps]\nexp = ["exp:run", "exp:lookup"]\n\n[tool.pytest.ini_options]\n'
    root = git_init(write_investigation(tmp_path / "study", pyproject, {"exp": module, "conftest": LOSING_CONFTEST}))
    run = run_pytest(root, "--mitosis")
    assert run.ret == 1, run.out
    assert "Traceback" not in run.out and "pytest_mitosis/" not in run.out.split("short test summary")[0], run.out
    failure = run.testcase("exp[one]").find("failure")
    assert failure is not None
    (folder,) = (root / "trials").glob("trial_exp-one-1_*")
    assert (failure.text or "").startswith(
        f"trial_exp-one-1 ran (main=1; notebook: {folder / 'trial_exp-one-1.html'}), but the store could not record "
        "its outcome: mitosis: the trial store at lab went away (connection lost)\n"
        f"Its outcome is kept in {root / 'trials' / '.pending' / ('trial-' + folder.name.rsplit('_', 1)[1] + '.json')}: "
        "it is recorded when the store is back, at the end of this session or by the next session that uses this "
        "trials folder."
    ), failure.text
    assert (folder / "trial_exp-one-1.ipynb").is_file()
