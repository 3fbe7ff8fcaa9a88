"""How a running sweep is seen: the progress line (or log lines) and the heartbeats in the store.

A running trial's state arrives about every second (:meth:`Heartbeat.on_progress`): the progress
line redraws, and every few seconds the trial's heartbeat (with the session's progress when it runs
alone) is written to the store, where ``status`` and the xdist controller read it.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .context import SessionContext
    from .progress import Progress
    from .state import SessionState


class Heartbeat:
    """The progress line and the heartbeats of one process's trials and session."""

    def __init__(self, context: SessionContext, state: SessionState) -> None:
        self.context = context
        self.state = state
        #: the sweep's progress line (or log lines), on the process that reports (see progress.py)
        self.progress: Progress | None = None
        self._beaten = 0.0
        self._beat_key: str | None = None
        self._session_beaten = 0.0

    def start(self, experiments: list[str], workers: int) -> None:
        """The sweep's progress line (or log lines) for the selected trials' experiments (see progress.py)."""
        from .progress import Progress

        reporter = self.context.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.progress is not None:
            return
        progress = Progress(reporter, self.context.settings.progress_every, workers)
        if progress.active:
            progress.plan(experiments)
            self.progress = progress

    def watch_workers(self, ids: list[str], workers: int) -> None:
        """On the xdist controller: the progress of every worker's trial (``ids``: the collected node ids)."""
        self.start([i.rsplit("::", 1)[-1].split("[", 1)[0] for i in ids], workers)
        if self.progress is not None:
            from .progress import Heartbeats

            context = self.context
            self.progress.watch(Heartbeats(context.project().trials_folder, context.read_from(), context.session_key))

    def beat_session(self) -> None:
        """The session's heartbeat with its progress (``status``), from the main thread: at each trial's start
        and end, and (a session alone) every few seconds while a trial runs."""
        progress = self.progress
        if not self.state.session_recorded or progress is None or time.monotonic() - self._session_beaten < 2.0:
            return  # at most one write every two seconds: a sweep of cheap trials pays next to nothing
        self._session_beaten = time.monotonic()
        beat = getattr(self.context.store(), "beat", None)
        if beat is not None:
            beat("session", self.context.session_key, None, progress.summary())

    def on_progress(self, nodeid: str, key: str, name: str, state: dict[str, Any]) -> None:
        """A running trial's state, about every second: the progress line, and every few seconds its heartbeat
        in the store (with this session's progress when it runs alone), for ``status`` and the xdist controller."""
        if self.progress is not None:
            self.progress.tick(key, nodeid.rsplit("::", 1)[-1], state)
        every = self.context.settings.heartbeat_every
        now = time.monotonic()
        if every <= 0 or (key == self._beat_key and now - self._beaten < every):
            return  # a trial's first tick beats at once: status and the xdist controller see it start
        self._beaten, self._beat_key = now, key
        beat = getattr(self.context.store(), "beat", None)
        if beat is None:  # a plugin's store, or a remote worker's proxy: no heartbeats
            return
        from ..store import StoreError

        try:  # a store that went away is not waited for here: the trial runs on, its next write waits
            beat("trial", key, self.context.session_key, {**state, "name": name, "nodeid": nodeid})
            self.beat_session()
        except StoreError:
            pass

    def erase(self) -> None:
        """Take the progress line off the terminal (before pytest writes a trial's outcome)."""
        if self.progress is not None:
            self.progress.erase()

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
            self.progress = None
