"""``history --session [KEY]``: the recorded ``pytest --mitosis`` sessions, or the trials of one.

A session is how "the official run of 23 November" is found again: its key, when it ran and
for how long, on which host and commit, how it ended (pytest's exit status, ``interrupted``,
or what is known of one that never recorded its end) and its trials by outcome. No pytest
import here; every recorded value passes through :func:`~pytest_mitosis.store.cell` (the list's
cells through the CLI's table), everything printed through the CLI's ``printable``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from ..store import Reader, SessionRecord, TrialRecord, cell


def duration(session: SessionRecord) -> str:
    """``42s``, ``3m 05s``, ``2h 03m``; ``-`` for a session without an end."""
    if session.ended is None:
        return "-"
    seconds = max(0, round((session.ended - session.started).total_seconds()))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def commit(session: SessionRecord) -> str:
    """The commit's first 8 digits, with ``dirty``, ``debug`` and ``edited while running`` when they apply."""
    flags = [
        f
        for f, on in (("dirty", session.dirty), ("debug", session.debug), ("edited while running", session.changed))
        if on
    ]
    return (session.commit or "-")[:8] + (f" ({', '.join(flags)})" if flags else "")


def session_list(reader: Reader, as_json: bool, table: Callable[[list[list[str]]], str]) -> str:
    """Every session, newest first: one row each."""
    found = reader.sessions()
    if as_json:
        return json.dumps([s.to_dict() for s in found], indent=2)
    if not found:
        return f"no sessions recorded in {reader.location}"
    rows = [["key", "started", "duration", "host", "commit", "status", "trials", "command"]]
    rows += [
        [
            s.key,
            s.started.strftime("%Y-%m-%d %H:%M:%S"),
            duration(s),
            s.host,
            commit(s),
            s.state,
            s.counts(),
            s.command,
        ]
        for s in found
    ]
    return table(rows)


def session_header(session: SessionRecord) -> str:
    """Two lines naming the session: when, where, what, how it ended; then its command line."""
    changed = ""
    if session.changed:
        changed = "\nedited while it ran (not the commit's when it ended): " + ", ".join(map(cell, session.changed))
    return (
        f"session {cell(session.key)}: started {session.started:%Y-%m-%d %H:%M:%S}, {duration(session)}, host "
        f"{cell(session.host)}, commit {cell(commit(session))}, {cell(session.state)}, {cell(session.counts())}\n"
        f"command: {cell(session.command)}{changed}"
    )


def session_trials(
    reader: Reader,
    prefix: str,
    as_json: bool,
    trials: Callable[[list[TrialRecord]], Any],
) -> str:
    """The session with this key (or unique prefix) and its trials (debug ones included), newest first.

    ``trials(records)`` renders the trials as ``history`` does (a table, or JSON-ready dicts).
    """
    session = reader.session(prefix)
    records = list(reader.trials(debug=True, session=session.key))
    if as_json:
        return json.dumps({"session": session.to_dict(), "trials": trials(records)}, indent=2)
    listing = trials(records) if records else "(no trials recorded)"
    return f"{session_header(session)}\n\n{listing}"
