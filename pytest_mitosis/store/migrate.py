"""``python -m pytest_mitosis migrate --from URL --to URL``: copy a store, keys, iterations and locks kept.

A team moving from the SQLite default to a shared PostgreSQL store keeps its history: every
trial keeps its key, name and iteration (so ``--mitosis-compare``, ``show`` and the drift gate
see the same trials), every variant lock keeps its value and the trial that locked it, every
environment record is copied once. Running it again copies nothing twice. The destination's
schema is created as a session would create it (PostgreSQL: under the advisory lock), and the
copy is one transaction: it lands whole or not at all.

Two different histories are never merged: a destination trial with the same key but another
identity or iteration, an iteration already taken by another key, or a variant lock holding
another value stops the copy before anything is written, naming the trial.

Artifact folders are not moved: the ``folder`` column keeps the path recorded when the trial
ran, and readers find a trial's folder in their own trials folder by its name (see
``Reader.artifacts``). No pytest import.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .dialect import POSTGRESQL, SQLITE
from .protocol import StoreError
from .records import RecordsError
from .sources import open_source
from .tables import names
from .url import StoreURL

TRIAL_COLUMNS = names("trials")
LOCK_COLUMNS = names("locks")
ACCEPTANCE_COLUMNS = names("acceptances")
SESSION_COLUMNS = names("sessions")


def _value(row: Mapping[str, Any], column: str) -> Any:
    """``row[column]``, ``None`` for a column the source's older schema lacks (a trial's ``session``, a
    session's ``changed``)."""
    return row[column] if column in row.keys() else None


@dataclass(frozen=True)
class Copied:
    trials: int
    present: int
    environments: int
    locks: int
    sessions: int = 0

    def summary(self, source: StoreURL, dest: StoreURL) -> str:
        again = f" ({self.present} were there already)" if self.present else ""
        return (
            f"migrate: {self.trials} trial{'s' if self.trials != 1 else ''} copied{again}, {self.environments} "
            f"environment record{'s' if self.environments != 1 else ''}, {self.locks} variant "
            f"lock{'s' if self.locks != 1 else ''} and {self.sessions} session{'s' if self.sessions != 1 else ''} "
            f"added, from {source} to {dest}. Artifact folders stay where "
            "they are: readers find each trial's folder by name in their trials folder."
        )


def _insert(table: str, columns: Sequence[str]) -> str:
    quoted = ", ".join(f'"{c}"' for c in columns)
    return f"INSERT INTO {table} ({quoted}) VALUES ({', '.join('?' * len(columns))}) ON CONFLICT DO NOTHING"


class _Sink:
    """The destination, opened as a writer (schema created or checked), with one transaction."""

    def __init__(self, url: StoreURL) -> None:
        self.url = url
        if url.kind == "sqlite":
            from .sqlite import SQLiteStore

            assert url.path is not None
            SQLiteStore(url.path.parent, path=url.path).close()  # the refusals, the schema, WAL
            self._db: Any = sqlite3.connect(url.path, timeout=120.0, isolation_level=None)
            self._dialect = SQLITE
        else:
            from .pgschema import SCHEMA_LOCK
            from .postgres import PostgresStore

            self._store = PostgresStore(url)
            self._db = self._store._db
            self._lock = SCHEMA_LOCK
            self._dialect = POSTGRESQL

    def begin(self) -> None:
        if self.url.kind == "sqlite":
            self._db.execute("BEGIN IMMEDIATE")
        else:
            self._db.execute("BEGIN")
            self._db.execute("SELECT pg_advisory_xact_lock(%s)", (self._lock,))  # one migration at a time

    def end(self, commit: bool) -> None:
        self._db.execute("COMMIT" if commit else "ROLLBACK")

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        return list(self._db.execute(self._dialect.sql(sql), list(args)).fetchall())

    def many(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._db.cursor().executemany(self._dialect.sql(sql), list(rows))

    def close(self) -> None:
        self._db.close()


def _plan(sink: _Sink, trials: list[Mapping[str, Any]]) -> tuple[list[Mapping[str, Any]], int]:
    """The trials to copy; raise ``StoreError`` when the destination holds another history."""
    by_key = {r[0]: (r[1], r[2], r[3]) for r in sink.rows("SELECT key, experiment, identity, iteration FROM trials")}
    by_slot = {(e, i, n): k for k, (e, i, n) in by_key.items() if n is not None}
    new, present = [], 0
    for row in trials:
        slot = (row["experiment"], row["identity"], row["iteration"])
        if row["key"] in by_key:
            if by_key[row["key"]] != slot:
                raise StoreError(
                    f"mitosis: migrate: trial {row['name']} (key {row['key']}) is another trial in {sink.url} "
                    f"(experiment, identity, iteration {by_key[row['key']]}); the two stores hold different "
                    "histories, and migrate never merges them. Copy into a new database; nothing was written."
                )
            present += 1
            continue
        if row["iteration"] is not None and slot in by_slot:
            raise StoreError(
                f"mitosis: migrate: iteration {row['iteration']} of experiment {row['experiment']!r} is trial "
                f"{by_slot[slot]} in {sink.url}, and trial {row['name']} (key {row['key']}) in the source; the two "
                "stores hold different histories, and migrate never merges them (it would renumber trials). "
                "Copy into a new database; nothing was written."
            )
        new.append(row)
    return new, present


def migrate(source: StoreURL, dest: StoreURL) -> Copied:
    """Copy every trial, environment and lock of ``source`` into ``dest``; idempotent."""
    if source.redacted == dest.redacted:
        raise RecordsError(f"migrate: --from and --to are the same store ({source}); name another destination.")
    reader = open_source(source)  # read-only: the source is never written
    try:
        trials = reader.rows("SELECT * FROM trials ORDER BY started")
        environments = reader.rows("SELECT digest, environment FROM environments")
        locks = reader.rows("SELECT * FROM locks ORDER BY step, param, kind, name")
        sessions = reader.rows("SELECT * FROM sessions ORDER BY started") if reader.version >= 2 else []
        accepted = reader.rows("SELECT * FROM acceptances ORDER BY accepted") if reader.version >= 4 else []
    finally:
        reader.close()
    try:
        return _copy(source, dest, trials, environments, locks, sessions, accepted)
    except StoreError:
        raise
    except Exception as err:  # the drivers' errors: sqlite3.Error, psycopg.Error
        if not isinstance(err, sqlite3.Error) and not type(err).__module__.startswith("psycopg"):
            raise
        raise StoreError(
            f"mitosis: migrate from {source} to {dest} failed: {dest.scrub(source.scrub(str(err))).strip()}. "
            "Nothing was written (the copy is one transaction); fix the cause and run it again."
        ) from None


def _copy(
    source: StoreURL,
    dest: StoreURL,
    trials: list[Mapping[str, Any]],
    environments: list[Mapping[str, Any]],
    locks: list[Mapping[str, Any]],
    sessions: list[Mapping[str, Any]],
    accepted: Sequence[Mapping[str, Any]] = (),
) -> Copied:
    sink = _Sink(dest)
    try:
        sink.begin()
        ok = False
        try:
            new, present = _plan(sink, trials)
            stored = {tuple(r[:4]): r[4] for r in sink.rows("SELECT step, param, kind, name, fingerprint FROM locks")}
            for lock in locks:
                theirs = stored.get((lock["step"], lock["param"], lock["kind"], lock["name"]))
                if theirs is not None and theirs != lock["fingerprint"]:
                    raise StoreError(
                        f"mitosis: migrate: the variant {lock['name']!r} of {lock['step']}.{lock['param']} means "
                        f"another value in {dest} than in {source} (locked by {lock['trial']}); the stores hold "
                        "different histories, and migrate never merges them. Nothing was written."
                    )
            known = {r[0] for r in sink.rows("SELECT digest FROM environments")}
            added = [r for r in environments if r["digest"] not in known]
            sink.many(
                _insert("environments", ("digest", "environment")), [(r["digest"], r["environment"]) for r in added]
            )
            sink.many(_insert("trials", TRIAL_COLUMNS), [[_value(r, c) for c in TRIAL_COLUMNS] for r in new])
            had = {r[0] for r in sink.rows("SELECT key FROM sessions")}
            runs = [r for r in sessions if r["key"] not in had]  # a session's row is the same wherever it is
            sink.many(_insert("sessions", SESSION_COLUMNS), [[_value(r, c) for c in SESSION_COLUMNS] for r in runs])
            copied = {r["key"] for r in new}  # an acceptance comes with its trial (one already there keeps its own)
            sink.many(
                _insert("acceptances", ACCEPTANCE_COLUMNS),
                [[r[c] for c in ACCEPTANCE_COLUMNS] for r in accepted if r["trial"] in copied],
            )
            fresh = [r for r in locks if (r["step"], r["param"], r["kind"], r["name"]) not in stored]
            sink.many(_insert("locks", LOCK_COLUMNS), [[r[c] for c in LOCK_COLUMNS] for r in fresh])
            if dest.kind == "postgresql":  # the counters start after the copied iterations
                sink.rows(
                    "INSERT INTO counters (experiment, identity, last) SELECT experiment, identity, MAX(iteration) "
                    "FROM trials WHERE iteration IS NOT NULL GROUP BY experiment, identity ON CONFLICT "
                    "(experiment, identity) DO UPDATE SET last = GREATEST(counters.last, EXCLUDED.last) RETURNING last"
                )
            ok = True
        finally:
            sink.end(commit=ok)
    finally:
        sink.close()
    return Copied(len(new), present, len(added), len(fresh), len(runs))


def copy_store(source: str, dest: str, base: Path | None = None) -> str:
    """``migrate`` for the command line: URLs in, the summary line out (``StoreError`` → ``RecordsError``)."""
    from .url import parse

    try:
        src, dst = parse(source, base), parse(dest, base)
        return migrate(src, dst).summary(src, dst)
    except StoreError as err:
        raise RecordsError(str(err).removeprefix("mitosis: ")) from None
