"""Read the trial store back, whatever its backend: records as plain objects, keys by unique prefix.

Used by the command line (``python -m pytest_mitosis``), the Python API, the report,
``--mitosis-reproduce`` and the end-of-session summary. It only reads (see :mod:`.sources`:
a SQLite file opened read-only, PostgreSQL in read-only transactions): it never creates a
store, never unpickles and never imports user code (recorded values come back from their
canonical JSON form). No pytest import here.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from .protocol import StoreError
from .records import (
    KEY_PREFIX,
    Accepted,
    NoMatch,
    RecordsError,
    TrialRecord,
    TrialRecords,
    decode,
    key_prefix,
    printable,
    trial_state,
)
from .sessions import SessionRecord, session, sessions
from .sources import open_source
from .url import StoreURL
from .url import default as default_url
from .url import parse as parse_url

__all__ = [
    "Reader",
    "RecordsError",
    "SessionRecord",
    "TrialRecord",
    "TrialRecords",
    "decode",
]  # decode: records.decode, also importable from here (execution/artifacts.py does)


#: keys per ``IN (...)`` query (SQLite allows 999 parameters in its oldest supported versions)
_CHUNK = 500


def _when(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value) if value is not None else None


def _json(row: Mapping[str, Any], column: str) -> Any:
    """A JSON column of a trial's row; ``ValueError`` naming the column when it does not parse."""
    try:
        return json.loads(row[column])
    except (ValueError, TypeError) as err:
        raise ValueError(f"its {column} column: {err}") from None


def _time(row: Mapping[str, Any], column: str) -> datetime | None:
    """A time column (seconds since the epoch); ``ValueError`` naming the column when it is not one."""
    try:
        return _when(row[column])
    except (ValueError, TypeError, OverflowError, OSError) as err:
        raise ValueError(f"its {column} column: {err}") from None


@dataclass(frozen=True)
class Beat:
    """A running trial (or session) and its last heartbeat: what ``status`` shows."""

    key: str
    name: str
    nodeid: str
    session: str | None
    host: str
    started: float
    #: ``time.time()`` of its last heartbeat (``None``: none yet)
    beat: float | None
    #: its progress: phase, step, last line, elapsed (a trial); selected, done, passed, failed, ends (a session)
    state: dict[str, Any]
    #: the pid that runs it, and the machine its heartbeat came from (``None``: no heartbeat yet): see ``dead``
    pid: int = 0
    machine: str | None = None


def _state(text: Any) -> dict[str, Any]:
    try:
        found = json.loads(text) if isinstance(text, str) else {}
    except ValueError:
        return {}
    return found if isinstance(found, dict) else {}


class Reader:
    """Read-only access to a trial store: the trials folder's ``mitosis.sqlite``, or ``store`` (a URL).

    ``folder`` is the trials folder, where the trials' artifact folders are looked for
    (whichever host wrote the record); ``store`` a store URL (``sqlite:///PATH`` or
    ``postgresql://...``) or ``None`` for ``<folder>/mitosis.sqlite``.
    """

    def __init__(self, folder: Path, store: str | StoreURL | None = None) -> None:
        self.folder = folder
        if store is None:
            self.url = default_url(folder)
        elif isinstance(store, StoreURL):
            self.url = store
        else:
            try:
                self.url = parse_url(store)
            except StoreError as err:
                raise RecordsError(str(err).removeprefix("mitosis: ")) from None
        #: the store, as messages name it: the SQLite file, or the URL without its password
        self.location = str(self.url.path or self.url)
        self._environments: dict[str, dict[str, Any]] = {}
        self._source = open_source(self.url)

    @property
    def path(self) -> Path | str:
        """The SQLite file, or the redacted URL of a PostgreSQL store."""
        return self.url.path or self.location

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def artifacts(self, record: TrialRecord) -> Path | None:
        """The trial's artifact folder, only ever inside this trials folder (``None`` if not there).

        A recorded path outside the folder is not followed (a crafted store could point at
        ``/root``); a trials folder copied or moved elsewhere is found by the folder's name.
        """
        if not record.folder or not isinstance(record.folder, str) or "\x00" in record.folder:
            return None
        base = self.folder.resolve()
        recorded = Path(record.folder)
        candidates = [recorded] if recorded.is_absolute() else [base / recorded]
        if recorded.name not in ("", ".", ".."):
            candidates += [base / recorded.name, base / "debug" / recorded.name]
        for candidate in candidates:
            try:
                resolved = candidate.resolve()
            except (OSError, RuntimeError):
                continue
            if base in resolved.parents and resolved.is_dir():
                return resolved
        return None

    def backup(self, dest: Path) -> Path:
        """A consistent copy of a SQLite store in ``dest`` (a new file, or a folder), while sessions may write."""
        return self._source.backup(dest)

    def _rows(self, sql: str, *args: Any) -> list[Mapping[str, Any]]:
        return self._source.rows(sql, args)

    def running(self, session: str | None = None) -> list[Beat]:
        """The trials recorded ``running`` (of ``session``, or all), oldest first, with their last heartbeat.

        A trial whose heartbeat is missing (a store before heartbeats, or the instant before its
        first) has ``beat=None``; a crafted ``state`` reads as empty.
        """
        if self._source.version < 3:
            sql = (
                "SELECT t.key, t.name, t.nodeid, t.session, t.host, t.started, t.pid, NULL AS beat, NULL AS state, "
                "NULL AS machine FROM trials t"
            )
        else:
            sql = (
                "SELECT t.key, t.name, t.nodeid, t.session, t.host, t.started, t.pid, b.beat, b.state, b.machine "
                "FROM trials t LEFT JOIN beats b ON b.kind='trial' AND b.key=t.key"
            )
        sql += " WHERE t.status='running'" + (" AND t.session=?" if session is not None else "") + " ORDER BY t.started"
        rows = self._rows(sql, *([session] if session is not None else []))
        return [
            Beat(
                r["key"], r["name"], r["nodeid"], r["session"], r["host"], r["started"], r["beat"], _state(r["state"]),
                int(r["pid"]), r["machine"],
            )
            for r in rows
        ]  # fmt: skip

    def session_beats(self) -> dict[str, Beat]:
        """The last heartbeat of each running session (its progress: selected, done, passed, failed, end)."""
        if self._source.version < 3:
            return {}
        rows = self._rows(
            "SELECT s.key, s.command, s.host, s.started, b.beat, b.state FROM sessions s "
            "JOIN beats b ON b.kind='session' AND b.key=s.key WHERE s.status='running'"
        )
        return {
            r["key"]: Beat(r["key"], r["command"], "", r["key"], r["host"], r["started"], r["beat"], _state(r["state"]))
            for r in rows
        }

    @property
    def _select(self) -> str:
        """``SELECT`` of whole trial rows, with their acceptance (schema 4) as ``accepted_*`` columns."""
        if self._source.version < 4:
            return "SELECT * FROM trials"
        return (
            "SELECT trials.*, a.accepted AS accepted_at, a.accepted_by, a.accepted_host, a.reason AS accepted_reason, "
            "a.baseline AS accepted_baseline FROM trials LEFT JOIN acceptances a ON a.trial = trials.key"
        )

    def _record(self, row: Mapping[str, Any]) -> TrialRecord:
        """The row as a record; a row pytest-mitosis did not write (a column of another type, JSON that
        does not parse, a list where a mapping belongs) is a ``RecordsError`` naming the trial, never a
        traceback: a store can be handed over, edited or damaged."""
        try:
            record = self._decoded(row)
        except (ValueError, TypeError, OverflowError, OSError) as err:
            raise RecordsError(
                printable(
                    f"trial {row['key']!r} in {self.location} is not as pytest-mitosis records trials ({err}); the "
                    "store was edited or damaged. Restore it from a backup, or move that row aside."
                )
            ) from None
        shapes: list[tuple[Any, type, str]] = [(record.git, dict, "git"), (record.metrics, dict, "metrics")]
        shapes += [(record.steps, list, "steps"), (record.params, list, "params"), (record.warnings, list, "warnings")]
        shapes += [(record.job, dict, "job")] if record.job is not None else []  # none: it ran in no batch job
        for value, kind, column in shapes:
            if not isinstance(value, kind):
                raise RecordsError(
                    printable(
                        f"trial {row['key']!r} in {self.location} is not as pytest-mitosis records trials (its "
                        f"{column} is a {type(value).__name__}, not a {kind.__name__}); the store was edited or "
                        "damaged. Restore it from a backup, or move that row aside."
                    )
                )
        return record

    def _decoded(self, row: Mapping[str, Any]) -> TrialRecord:
        git = _json(row, "git")
        accepted = None
        if "accepted_at" in row.keys() and row["accepted_at"] is not None:
            accepted = Accepted(
                _time(row, "accepted_at") or datetime.now(),
                row["accepted_by"],
                row["accepted_host"],
                row["accepted_reason"],
                row["accepted_baseline"],
            )
        directions = _json(row, "directions") if "directions" in row.keys() and row["directions"] else None
        job = _json(row, "job") if "job" in row.keys() and row["job"] is not None else None  # schema 5
        return TrialRecord(
            key=row["key"],
            experiment=row["experiment"],
            identity=row["identity"],
            variants=row["variants"],
            iteration=row["iteration"],
            name=row["name"],
            status=row["status"],
            debug=bool(row["debug"]),
            main=_json(row, "main") if row["main"] is not None else None,
            metrics=_json(row, "metrics") if row["metrics"] else {},
            seed=row["seed"],
            commit=row["commit"],
            git=git,
            started=_time(row, "started") or datetime.now(),
            ended=_time(row, "ended"),
            folder=row["folder"],
            message=row["message"],
            warnings=_json(row, "warnings") if row["warnings"] else [],
            steps=_json(row, "steps"),
            params=_json(row, "params"),
            reproduces=row["reproduces"],
            verdict=row["verdict"],
            session=row["session"] if "session" in row.keys() else None,  # none before schema version 2
            environment_digest=row["environment"],
            accepted=accepted,
            directions=directions if isinstance(directions, dict) else None,
            job=job,
        )

    def trials(self, experiment: str | None = None, debug: bool = False, session: str | None = None) -> TrialRecords:
        """Records newest first; debug trials only when asked for; only those of ``session`` (a full key) if given."""
        sql = f"{self._select} WHERE (? = 1 OR debug = 0)"
        args: list[Any] = [int(debug)]
        if experiment is not None:
            sql += " AND experiment = ?"
            args.append(experiment)
        if session is not None:
            if self._source.version < 2:
                return TrialRecords()
            sql += " AND session = ?"
            args.append(session)
        rows = self._source.rows(sql + " ORDER BY started DESC", args)
        return TrialRecords(self._record(r) for r in rows)

    def unfinished(self, session: str, nodeid: str) -> TrialRecords:
        """The trials of ``session`` (a full key) still ``running`` under the pytest node id ``nodeid``, newest
        first: what an xdist worker that crashed while running that item left (see ``distributed.py``)."""
        if self._source.version < 2:
            return TrialRecords()
        rows = self._source.rows(
            f"{self._select} WHERE session = ? AND nodeid = ? AND status = 'running' ORDER BY started DESC",
            [session, nodeid],
        )
        return TrialRecords(self._record(r) for r in rows)

    def states(self, debug: bool = False) -> dict[str, str]:
        """Every trial's key → :func:`~.records.trial_state`, read without decoding any record (debug trials when asked)."""
        if self._source.version < 4:
            sql = "SELECT key, status, verdict, folder, NULL AS accepted FROM trials WHERE (? = 1 OR debug = 0)"
        else:
            sql = (
                "SELECT key, status, verdict, folder, a.trial AS accepted FROM trials "
                "LEFT JOIN acceptances a ON a.trial = trials.key WHERE (? = 1 OR debug = 0)"
            )
        rows = self._source.rows(sql, [int(debug)])
        return {r["key"]: trial_state(r["status"], r["verdict"], r["folder"], r["accepted"] is not None) for r in rows}

    def trials_with_keys(self, keys: Collection[str]) -> TrialRecords:
        """The records of these exact keys (those still in the store), newest first.

        Many keys are read in one pass over the table rather than in chunks of ``IN (...)``.
        """
        wanted = set(keys)
        if not wanted:
            return TrialRecords()
        if len(wanted) > _CHUNK * 4:
            return TrialRecords(r for r in self.trials(debug=True) if r.key in wanted)
        ordered = sorted(wanted)
        rows: list[Mapping[str, Any]] = []
        for i in range(0, len(ordered), _CHUNK):
            chunk = ordered[i : i + _CHUNK]
            rows += self._source.rows(f"{self._select} WHERE key IN ({', '.join('?' * len(chunk))})", chunk)
        rows.sort(key=lambda r: r["started"], reverse=True)
        return TrialRecords(self._record(r) for r in rows)

    def latest(self, experiment: str | None = None) -> TrialRecords:
        """The newest passed, non-debug original trial of every identity (reproductions are left out)."""
        seen: set[tuple[str, str]] = set()
        found = TrialRecords()
        for record in self.trials(experiment):
            if (
                record.reproduces is None
                and record.status == "passed"
                and (record.experiment, record.identity) not in seen
            ):
                seen.add((record.experiment, record.identity))
                found.append(record)
        return found

    def sessions(self) -> list[SessionRecord]:
        """Every recorded ``pytest --mitosis`` session, newest first, with its trials counted by outcome."""
        return sessions(self._source)

    def session(self, prefix: str) -> SessionRecord:
        """The session whose key starts with ``prefix``; a key that matches none or several is a ``RecordsError``."""
        return session(self._source, prefix)

    def experiments(self) -> list[str]:
        return [row["experiment"] for row in self._rows("SELECT DISTINCT experiment FROM trials ORDER BY experiment")]

    def get(self, prefix: str) -> TrialRecord:
        """The trial whose key starts with ``prefix``; errors list the candidates."""
        rows = self._rows(f"{self._select} WHERE {KEY_PREFIX} ORDER BY started DESC", key_prefix(prefix))
        if len(rows) == 1:
            return self._record(rows[0])
        if not rows:
            recent = self._rows("SELECT key, name FROM trials ORDER BY started DESC LIMIT 10")
            listing = "\n".join(f"  {r['key']}  {r['name']}" for r in recent) or "  (the store has no trials)"
            raise NoMatch(
                printable(
                    f"no trial has a key starting with {prefix!r} in {self.location}. The newest trials:\n{listing}"
                )
            )
        listing = "\n".join(f"  {r['key']}  {r['name']}" for r in rows[:20])
        raise RecordsError(
            printable(f"the key prefix {prefix!r} matches {len(rows)} trials; give more characters:\n{listing}")
        )

    def environment(self, record: TrialRecord) -> dict[str, Any]:
        """The trial's environment record (read once per distinct environment)."""
        digest = record.environment_digest
        if digest not in self._environments:
            rows = self._rows("SELECT environment FROM environments WHERE digest = ?", digest)
            try:
                found = json.loads(rows[0]["environment"]) if rows else {}
            except (ValueError, TypeError) as err:
                found = err
            if not isinstance(found, dict):
                why = found if isinstance(found, Exception) else "not a mapping"
                raise RecordsError(
                    printable(
                        f"the environment record {digest!r} of trial {record.key!r} in {self.location} is not as "
                        f"pytest-mitosis records environments ({why}); the store was edited or damaged. Restore it "
                        "from a backup."
                    )
                )
            self._environments[digest] = found
        return self._environments[digest]
