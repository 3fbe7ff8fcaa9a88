"""The ``pytest_mitosis_*`` hooks: extension points for conftest files and other plugins.

Added to pytest's own plugin manager by ``pytest_addhooks``, so a ``conftest.py`` or a
``pytest11`` plugin implements them like any pytest hook. Implement them with
``@pytest.hookimpl(optionalhook=True)`` when your plugin may run without pytest-mitosis.
Arguments may be added in later versions; none is ever renamed or removed.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .store.protocol import TrialStore


@pytest.hookspec(firstresult=True)
def pytest_mitosis_make_store(config: pytest.Config, folder: Path) -> TrialStore | None:
    """Return the trial store for the trials ``folder``, or ``None`` to leave it to the next plugin.

    Called once per process (the controller and each xdist worker), before the first trial
    runs. The built-in implementation (``trylast``) opens the store URL (``--mitosis-store``,
    ``mitosis_store``, ``store`` in ``[tool.mitosis]``: SQLite or PostgreSQL), by default
    ``<folder>/mitosis.sqlite``. A store implements :class:`pytest_mitosis.store.TrialStore`; its
    ``begin`` must check and take the variant locks and allocate the iteration atomically across
    processes. A ``url`` attribute (a :class:`pytest_mitosis.store.StoreURL`) lets the session's
    readers (the end-of-session report) read it back; ``shared = True`` says every host reaches it.

    Example, in ``conftest.py``::

        @pytest.hookimpl(optionalhook=True)
        def pytest_mitosis_make_store(config, folder):
            return MyLabStore(url=os.environ["LAB_STORE"])
    """


@pytest.hookspec
def pytest_mitosis_environment(config: pytest.Config) -> Mapping[str, object] | None:
    """Return entries to add to the environment recorded with every trial.

    Called once per process, before the first trial. The results of all implementations are
    merged into the built-in record (python, platform, cpu, hostname, packages, env, gpus,
    git); a key that is already there is a usage error naming it. Values must be JSON-able.
    They are stored with each trial, written to its ``trial.yaml`` and notebook metadata, and
    compared by ``python -m pytest_mitosis diff``.

    Example, in ``conftest.py``::

        @pytest.hookimpl(optionalhook=True)
        def pytest_mitosis_environment(config):
            return {"dataset": {"path": "/data/plumes", "sha256": digest_of("/data/plumes")}}
    """
