"""What pytest-xdist adds to a session: the controller's part for its workers, and a worker's start.

The controller hands every worker its seed and session key, and the remote-worker plumbing of
:mod:`.remote`; its local workers share its warm parent and HTML helper
(:mod:`.execution.shared`). It never collects, and never imports the steps: the sweep size guard,
the session-wide guards and the session's record wait until the first worker has collected
(``pytest_xdist_node_collection_finished``), before any trial is scheduled. A worker registers
the checks and the store of :mod:`.remote`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from .core.errors import ConfigError

if TYPE_CHECKING:
    from .session import MitosisSession


class DistributedHooks:
    """The pytest-xdist hooks of one ``--mitosis`` session (optional: pytest-xdist may be absent)."""

    def __init__(self, mitosis: MitosisSession) -> None:
        self.mitosis = mitosis
        self.config = mitosis.config
        self.settings = mitosis.settings
        #: the controller has run the session-wide guards (when the first worker had collected)
        self._started = False
        #: the workers configured (the estimate of the sweep's end divides by their number)
        self._workers = 0

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Every worker uses the controller's seed and session key, checks its checkout against the
        controller's and, on another host or trials folder, records its trials through the controller."""
        from .remote import controller

        self._workers += 1
        node.workerinput["mitosis_seed"] = self.mitosis.seed
        node.workerinput["mitosis_session"] = self.mitosis.session_key
        controller(self.mitosis).configure_node(node)
        self._share_helpers(node)

    def _share_helpers(self, node: Any) -> None:
        """A local worker uses the controller's warm parent and HTML helper (see :mod:`.execution.shared`),
        started when the first one is configured, if this session runs trials."""
        from .execution.shared import WORKERINPUT_KEY, SharedHelpers, is_local

        mitosis = self.mitosis
        settings = self.settings
        if (
            not is_local(getattr(getattr(node, "gateway", None), "spec", None))
            or self.config.option.collectonly
            or settings.check
            or settings.reproduce
            or not mitosis.collects_trials()
        ):
            return
        if mitosis.shared is None:
            try:
                cwd = mitosis.project().cwd
            except ConfigError:  # each worker reports it
                return
            mitosis.shared = SharedHelpers(cwd, settings.kernel or "auto", settings.preload, mitosis.step_modules)
        if mitosis.shared.paths:
            node.workerinput[WORKERINPUT_KEY] = dict(mitosis.shared.paths)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """When the first worker has collected, before any trial is scheduled: the sweep size guard
        (counting the worker's node ids: the controller never imports the steps, which cost each
        session a second of CPU while its workers started), the session-wide guards, and the session's
        record. A refusal here stops the session before any trial runs."""
        if self._started or self.settings.check or self.config.option.collectonly:
            return
        self._started = True
        from .hooks import check_ci_paths
        from .selection import sweep_size_refusal
        from .sessionrecord import open_session

        too_many = sweep_size_refusal(self.mitosis, None, ids)
        if too_many is not None:
            raise pytest.UsageError(too_many)
        check_ci_paths(self.settings)
        self.mitosis.preflight()
        open_session(self.mitosis, True)
        self.mitosis.watch_workers(ids, self._workers)

    def pytest_configure(self, config: pytest.Config) -> None:
        """On a pytest-xdist worker: the checks and the store of :mod:`.remote`."""
        if hasattr(config, "workerinput"):
            from .remote import register_worker

            register_worker(self.mitosis)
