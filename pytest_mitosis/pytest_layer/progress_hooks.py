"""The progress line's hooks: erased before pytest writes, told each trial's start and end.

pytest writes each test's line and outcome itself; these wrappers erase the status line first
(under the progress lock, so the xdist controller's watcher never draws in between) and feed
the line with each trial's start and result. Only trials count (``pyproject.toml::`` items).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .heartbeat import Heartbeat


class ProgressHooks:
    """pytest's reports, passed on to the progress line and the session's heartbeat."""

    def __init__(self, heartbeat: Heartbeat) -> None:
        self.heartbeat = heartbeat

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logstart(self, nodeid: str, location: Any) -> Any:
        """The status line goes before pytest writes (the xdist controller's watcher waits meanwhile)."""
        progress = self.heartbeat.progress
        if progress is None or "pyproject.toml::" not in nodeid:
            return (yield)
        with progress.lock:
            progress.erase()
            return (yield)

    def _beat_session(self) -> None:
        from ..store import StoreError

        try:
            self.heartbeat.beat_session()
        except StoreError:
            pass  # the store is away: the next beat tells

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_logreport(self, report: pytest.TestReport) -> Any:
        """A trial's end counts in the progress: the status line is erased before pytest writes the outcome,
        and the log line (off a terminal) follows pytest's own letter or word."""
        progress = self.heartbeat.progress
        if progress is None or "pyproject.toml::" not in report.nodeid:
            return (yield)
        from ..views.summary import CRASHED

        with progress.lock:
            progress.erase()
            result = yield
            if report.when == "setup" and report.passed:
                progress.started(report.nodeid, report.duration)
                self._beat_session()
            elif report.when in ("call", CRASHED) or (report.when == "setup" and not report.passed):
                props = dict(report.user_properties)
                main = props.get("main")
                outcome = "error" if report.when == "setup" and report.failed else report.outcome
                progress.finished(
                    report.nodeid,
                    outcome,
                    report.duration,
                    str(main) if main is not None else None,
                    str(props["mitosis.key"]) if "mitosis.key" in props else None,
                )
                self._beat_session()
        return result
