"""What a session learns while it runs, for the end of the session: each trial's row, what could not
be collected, where the report went, notes for the terminal summary, and why the sweep stopped.

The services write here (:mod:`.trials`, :mod:`.preflight`, the hooks); the end of the session
(:mod:`.session_end`) and the session's record (:mod:`.session_record`) read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..views.summary import SummaryRow


@dataclass
class SessionState:
    #: one row per trial for the terminal summary (built from reports: xdist sends those)
    rows: list[SummaryRow] = field(default_factory=list)
    #: experiments that cannot be collected, shown after --collect-only (a run shows their setup errors)
    broken: list[tuple[str, str]] = field(default_factory=list)
    #: where the static report was written, or why not
    report: Path | str | None = None
    #: what became of --mitosis-summary and --mitosis-benchmark-json (lines for the terminal summary)
    ci_notes: list[str] = field(default_factory=list)
    #: records kept while the store was away, recorded since (or not yet): lines for the terminal summary
    store_notes: list[str] = field(default_factory=list)
    #: whether this process wrote the session's row (the controller, once trials are about to run)
    session_recorded: bool = False
    #: why the sweep stops: the investigation's code changed while it ran (no later trial could pass)
    code_moved: str | None = None
    #: pytest-xdist's local workers (the controller passes a SIGTERM on to them: see hooks.py)
    worker_pids: list[int] = field(default_factory=list)
    #: whether the item after the running one is a trial (then its kernel is started ahead)
    next_is_trial: bool = False
