"""The session behind ``--mitosis``: its read-once context and the services that act on it.

:class:`MitosisSession` holds them together and nothing else: what the session reads once
(:class:`.context.SessionContext`), what it learns while it runs (:class:`.state.SessionState`),
the refusals before the first trial (:class:`.preflight.Preflight`), the progress line and
heartbeats (:class:`.heartbeat.Heartbeat`) and each trial's way from setup to record
(:class:`.trials.TrialService`). The hooks that call them are in :mod:`.hooks` and
:mod:`.session_end`.

Kept in ``config.stash[session_key]`` only when ``--mitosis`` is given.
"""

from __future__ import annotations

import pytest

from ..config.settings import Settings
from .context import SessionContext
from .heartbeat import Heartbeat
from .preflight import Preflight
from .state import SessionState
from .trials import TrialService


class MitosisSession:
    """One pytest session with ``--mitosis``: its context, its state and its services."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.context = SessionContext(config, settings)
        self.state = SessionState()
        self.preflight = Preflight(self.context, self.state)
        self.heartbeat = Heartbeat(self.context, self.state)
        self.trials = TrialService(self.context, self.state, self.heartbeat)

    def close(self) -> None:
        """Stop the progress line, what was started ahead, the shared helpers, and close the store (unconfigure)."""
        self.heartbeat.close()
        self.context.ahead.close()
        shared = self.context.shared
        if shared is not None:
            shared.close(used=bool(self.state.rows))
            self.context.shared = None
        self.context.close_store()


session_key = pytest.StashKey[MitosisSession]()
