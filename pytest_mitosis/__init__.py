"""pytest-mitosis: reproducible computational experiments, run as parametrized pytest trials.

Importing this package must stay cheap: the trial notebook imports
:mod:`pytest_mitosis.execution.runtime` inside every kernel, and ``plugin.py`` is loaded by every
pytest run of every project that has us installed. (PYTEST_DONT_REWRITE: our own asserts are not the user's tests, and an
already-imported package cannot be rewritten anyway.)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store.readers import TrialRecords

__version__ = "0.1.0"

__all__ = ["__version__", "load_metric", "load_trial_data", "load_trial_params", "load_trials"]


def load_trial_data(
    key: str, trials_folder: str | Path | None = None, store: str | None = None
) -> list[dict[str, Any]]:
    """The results of the trial's steps (unpickled: only load trials you trust). See :mod:`pytest_mitosis.views.api`."""
    from .views.api import load_trial_data as load

    return load(key, trials_folder, store)


def load_trial_params(
    key: str, trials_folder: str | Path | None = None, store: str | None = None
) -> dict[str, dict[str, Any]]:
    """The trial's resolved parameters, step → parameter → value, as recorded. See :mod:`pytest_mitosis.views.api`."""
    from .views.api import load_trial_params as load

    return load(key, trials_folder, store)


def load_trials(
    experiment: str | None = None,
    trials_folder: str | Path | None = None,
    debug: bool = False,
    store: str | None = None,
) -> TrialRecords:
    """Every recorded trial, newest first (``.to_dataframe()`` with pandas). See :mod:`pytest_mitosis.views.api`."""
    from .views.api import load_trials as load

    return load(experiment, trials_folder, debug, store)


def load_metric(key: str, name: str, trials_folder: str | Path | None = None, store: str | None = None) -> Any:
    """One metric of a trial: a number or a series. See :mod:`pytest_mitosis.views.api`."""
    from .views.api import load_metric as load

    return load(key, name, trials_folder, store)
