"""Sessions read back: one ``SessionRecord`` per ``pytest --mitosis`` session that ran trials.

A session's row is written by the controller when it starts running trials and completed
when it ends (exit status, or ``interrupted``); one killed outright stays ``running`` until the
next session on its host records it ``died``. Its trials are those whose ``session`` column
holds its key, whichever worker or host ran them. A store written before sessions were
recorded (schema version 1) has no ``sessions`` table: it reads as no sessions, and is
never upgraded by reading it. No pytest import here.
"""

from __future__ import annotations

import json
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from ..core.processes import alive
from .records import KEY_PREFIX, RecordsError, key_prefix, printable
from .sources import Source

#: the order in which a session's trial counts are shown
OUTCOMES = ("passed", "failed", "interrupted", "running")
#: pytest's exit codes, as the session list names them
EXIT_CODES = {0: "ok", 1: "tests failed", 2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests"}


@dataclass(frozen=True)
class SessionRecord:
    """One recorded session, with the number of its trials per outcome."""

    key: str
    started: datetime
    ended: datetime | None
    command: str
    host: str
    pid: int
    commit: str | None
    dirty: bool
    debug: bool
    #: ``running``, ``ended``, ``interrupted`` (Ctrl-C, SIGTERM) or ``died`` (its process vanished)
    status: str
    #: pytest's exit code (``None`` while running, or when the session died)
    exitstatus: int | None
    trials: dict[str, int] = field(default_factory=dict)
    #: files of the investigation that were not the commit's when the session ended (it started clean): an edit
    #: made while it ran (its trials from then on failed, naming them)
    changed: tuple[str, ...] = ()

    @property
    def state(self) -> str:
        """How the session ended, in words: the exit code, or what is known of a session without an end.

        A ``running`` row whose process is gone from this host is shown as died (only a writing
        session records that); on another host this reader cannot tell.
        """
        if self.status in ("ended", "interrupted") and self.exitstatus is not None:
            return f"exit {self.exitstatus} ({EXIT_CODES.get(self.exitstatus, 'unknown')})"
        where = f"pid {self.pid} on {self.host}"
        if self.status == "died" or (self.host == socket.gethostname() and not alive(self.pid)):
            return f"died ({where}, no end recorded)"
        if self.host == socket.gethostname():
            return f"running ({where})"
        return f"running or died ({where})"

    @property
    def total(self) -> int:
        return sum(self.trials.values())

    def counts(self) -> str:
        """``3 passed, 1 failed`` (``0 trials`` for none)."""
        shown = [
            f"{self.trials[o]} {o}" for o in (*OUTCOMES, *sorted(set(self.trials) - set(OUTCOMES))) if o in self.trials
        ]
        return ", ".join(shown) or "0 trials"

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "started": self.started.isoformat(timespec="seconds"),
            "ended": self.ended.isoformat(timespec="seconds") if self.ended else None,
            "duration": (self.ended - self.started).total_seconds() if self.ended else None,
            "host": self.host,
            "pid": self.pid,
            "commit": self.commit,
            "dirty": self.dirty,
            "debug": self.debug,
            "status": self.status,
            "exitstatus": self.exitstatus,
            "state": self.state,
            "trials": dict(self.trials),
            "command": self.command,
            "changed": list(self.changed),
        }


def _record(row: Mapping[str, Any], trials: dict[str, int]) -> SessionRecord:
    return SessionRecord(
        key=row["key"],
        started=datetime.fromtimestamp(row["started"]),
        ended=datetime.fromtimestamp(row["ended"]) if row["ended"] is not None else None,
        command=row["command"],
        host=row["host"],
        pid=int(row["pid"]),
        commit=row["commit"],
        dirty=bool(row["dirty"]),
        debug=bool(row["debug"]),
        status=row["status"],
        exitstatus=row["exitstatus"],
        trials=trials,
        changed=_changed(row),
    )


def _changed(row: Mapping[str, Any]) -> tuple[str, ...]:
    """The session's ``changed`` files (none before schema version 3, or when a crafted row holds no list)."""
    text = row["changed"] if "changed" in row.keys() else None
    try:
        found = json.loads(text) if text else []
    except (TypeError, ValueError):
        return ()
    return tuple(str(f) for f in found) if isinstance(found, list) else ()


def _counts(source: Source, key: str | None) -> dict[str, dict[str, int]]:
    sql = "SELECT session, status, COUNT(*) AS n FROM trials WHERE session IS NOT NULL"
    args: list[Any] = []
    if key is not None:
        sql += " AND session = ?"
        args.append(key)
    found: dict[str, dict[str, int]] = {}
    for row in source.rows(sql + " GROUP BY session, status", args):
        found.setdefault(row["session"], {})[row["status"]] = int(row["n"])
    return found


def sessions(source: Source) -> list[SessionRecord]:
    """Every recorded session, newest first (none in a store written before sessions were recorded)."""
    if source.version < 2:
        return []
    counts = _counts(source, None)
    return [
        _record(row, counts.get(row["key"], {})) for row in source.rows("SELECT * FROM sessions ORDER BY started DESC")
    ]


def session(source: Source, prefix: str) -> SessionRecord:
    """The session whose key starts with ``prefix``; errors list the candidates (one line when there are none)."""
    if source.version < 2:
        raise RecordsError(
            printable(
                f"no session has a key starting with {prefix!r}: {source.location} was written before pytest-mitosis "
                "recorded sessions (it has none yet)."
            )
        )
    rows = source.rows(f"SELECT * FROM sessions WHERE {KEY_PREFIX} ORDER BY started DESC", [key_prefix(prefix)])
    if len(rows) == 1:
        return _record(rows[0], _counts(source, rows[0]["key"]).get(rows[0]["key"], {}))
    if not rows:
        raise RecordsError(
            printable(
                f"no session has a key starting with {prefix!r} in {source.location}; "
                "`python -m pytest_mitosis history --session` lists the sessions."
            )
        )
    listing = ", ".join(r["key"] for r in rows[:10]) + (", ..." if len(rows) > 10 else "")
    raise RecordsError(
        printable(f"the session key prefix {prefix!r} matches {len(rows)} sessions ({listing}); give more characters.")
    )
