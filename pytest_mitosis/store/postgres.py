"""A shared trial store on PostgreSQL (``--mitosis-store postgresql://user@host/db``), via psycopg 3.

The same tables as the SQLite store (JSON kept as text, so one reader serves both), plus a
``counters`` row per (experiment, identity). Every write is one short transaction in READ
COMMITTED, taking its row locks in one global order: the identity's counter row
(``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``: the iteration), then the variant locks
sorted by (step, param, kind, name), then the environment, then the trial. A transaction waits
on a row only after every row it holds comes earlier in that order, so two sessions never
deadlock; the variant locks are re-read after they are taken, inside the same transaction, so
two sessions can never lock one name to two values. A unique constraint on (experiment,
identity, iteration) backs the counter. Serialization failures and deadlocks (another tool's
transactions, a server set to SERIALIZABLE) are retried a bounded number of times.

The schema (:mod:`.pgschema`) is created under a transaction-scoped advisory lock: ten sessions
starting at once on an empty database create it once. No pytest import.
"""

from __future__ import annotations

import json
import random
import socket
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..identity.locks import Lock
from .pgconnect import connect, driver
from .pgschema import create_schema, lock_order
from .protocol import (
    BEAT,
    SESSION_COLUMNS,
    TRIAL_COLUMNS,
    KeyTaken,
    NewSession,
    NewTrial,
    Previous,
    StoreError,
    beat_row,
    environment_row,
    finish_warnings,
    left_running,
    marks,
    raise_conflicts,
    session_end,
    session_row,
    trial_row,
)
from .url import StoreURL

RETRIES = 8
T = TypeVar("T")

_LOCK_ROW = "SELECT fingerprint, value, trial FROM locks WHERE step=%s AND param=%s AND kind=%s AND name=%s"


def grant_advice(said: str) -> str:
    """What to grant for the server's refusal ``said``: the right to create the tables (there are none yet), or,
    when they exist (another user's first session made them), the rights on them that every session uses."""
    if "permission denied for table" in said or "permission denied for sequence" in said:
        return (
            "Nothing was written. Let this user read and write the store's tables, which exist already: as their "
            "owner, GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO USER; or use the "
            "tables' owner's account."
        )
    return (
        "Nothing was written. Let this user create and write the store's tables (GRANT CREATE ON SCHEMA public TO "
        "USER, needed since PostgreSQL 15; or createdb --owner USER), or use the database owner's account."
    )


def _postgres(sql: str) -> str:
    """A query of :mod:`.protocol` (``finish_warnings``, ``left_running``: SQLite's dialect) in PostgreSQL's."""
    return sql.replace(" IS ?", " IS NOT DISTINCT FROM ?").replace("?", "%s")


class PostgresStore:
    """A trial store in a PostgreSQL database, shared by every session, worker and host that reaches it."""

    #: every host reaches the database: xdist workers on other hosts write it directly (see remote.py)
    shared = True

    def __init__(self, url: StoreURL) -> None:
        self.url = url
        self.location = str(url)
        self.host = socket.gethostname()
        self._errors = driver(url).errors
        self._db = connect(url)
        try:
            self._retrying(lambda: create_schema(self._db, url))
            self._mark_interrupted()
        except BaseException:
            self._db.close()
            raise

    # -- transactions ----------------------------------------------------------------------------

    def _retrying(self, work: Callable[[], T]) -> T:
        """``work()`` (which opens its own transaction), again after a serialization failure, a deadlock
        or a lost connection (a server restart between two trials of a long sweep: reconnect once)."""
        errors = self._errors
        for attempt in range(RETRIES):
            try:
                return work()
            except (errors.SerializationFailure, errors.DeadlockDetected) as err:
                if attempt == RETRIES - 1:
                    raise StoreError(
                        f"mitosis: the trial store {self.url} kept refusing a transaction "
                        f"({type(err).__name__}) after {RETRIES} attempts; nothing of it was written. "
                        "Another program may hold long locks on its tables; run again when it is done."
                    ) from None
                time.sleep(random.uniform(0.01, 0.05) * 2**attempt)
            except errors.OperationalError as err:
                if not self._db.broken or attempt == RETRIES - 1:
                    raise StoreError(
                        f"mitosis: the trial store {self.url} failed: {self._said(err)}. Nothing of this "
                        "transaction was written; check the server (its log says more) and run again."
                    ) from None
                self._db.close()  # the server restarted or dropped us: one new connection, the same transaction
                self._db = connect(self.url)
            except errors.InsufficientPrivilege as err:
                said = self._said(err)
                raise StoreError(f"mitosis: the trial store {self.url} refused: {said}. {grant_advice(said)}") from None
            except errors.Error as err:
                raise StoreError(
                    f"mitosis: the trial store {self.url} failed: {self._said(err)}. Nothing of this transaction "
                    "was written; check the server (its log says more) and run again."
                ) from None
        raise AssertionError("unreachable")

    def _said(self, err: BaseException) -> str:
        """The server's message, first line only, password scrubbed."""
        return self.url.scrub(str(err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__

    def _mark_interrupted(self) -> None:
        """Trials (and sessions) of this host whose process is gone without finishing them."""
        updates = left_running(lambda sql, args: self._db.execute(_postgres(sql), args).fetchall(), self.host)
        if updates:

            def mark() -> None:
                with self._db.transaction():
                    cursor = self._db.cursor()
                    for sql, rows in updates:
                        cursor.executemany(_postgres(sql), rows)

            self._retrying(mark)

    def _conflicts(self, locks: Sequence[Lock]) -> None:
        raise_conflicts(locks, lambda lock: self._db.execute(_LOCK_ROW, lock_order(lock)).fetchone())

    # -- TrialStore ------------------------------------------------------------------------------

    def check_locks(self, locks: Sequence[Lock]) -> None:
        self._retrying(lambda: self._conflicts(locks))

    def begin(self, trial: NewTrial, locks: Sequence[Lock]) -> int | None:
        return self._retrying(lambda: self._begin(trial, locks))

    def _begin(self, trial: NewTrial, locks: Sequence[Lock]) -> int | None:
        db = self._db
        with db.transaction():
            iteration: int | None = None
            name = trial.slug
            if not trial.debug:
                (iteration,) = db.execute(
                    "INSERT INTO counters AS c (experiment, identity, last) VALUES (%(e)s, %(i)s, "
                    "(SELECT COALESCE(MAX(iteration), 0) + 1 FROM trials WHERE experiment=%(e)s AND identity=%(i)s)) "
                    "ON CONFLICT (experiment, identity) DO UPDATE SET last = GREATEST(c.last, "
                    "(SELECT COALESCE(MAX(iteration), 0) FROM trials WHERE experiment=%(e)s AND identity=%(i)s)) + 1 "
                    "RETURNING last",
                    {"e": trial.experiment, "i": trial.identity},
                ).fetchone()
                name = f"{trial.slug}-{iteration}"
                ordered = sorted(locks, key=lock_order)
                for lock in ordered:  # waits for a session that is taking the same lock to commit or roll back
                    db.execute(
                        "INSERT INTO locks (step, param, kind, name, fingerprint, value, trial) "
                        "VALUES (%s,%s,%s,%s,%s,%s,%s) ON CONFLICT DO NOTHING",
                        (*lock_order(lock), lock.fingerprint, json.dumps(lock.value), f"{name} (key {trial.key})"),
                    )
                self._conflicts(ordered)  # what is committed now: ours, or the value another session locked
            digest, environment = environment_row(trial.environment)
            db.execute(
                "INSERT INTO environments (digest, environment) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                (digest, environment),
            )
            inserted = db.execute(
                f"INSERT INTO trials ({TRIAL_COLUMNS}) "
                f"VALUES ({marks(TRIAL_COLUMNS, '%s')}) ON CONFLICT (key) DO NOTHING RETURNING key",
                trial_row(trial, iteration, name, digest, self.host),
            ).fetchone()
            if inserted is None:
                raise KeyTaken(trial.key)  # leaves the transaction: the counter and locks roll back
        return iteration

    def finish(
        self,
        key: str,
        *,
        status: str,
        main: Any,
        metrics: dict[str, Any],
        folder: str | None,
        message: str | None,
        verdict: str | None = None,
    ) -> list[str]:
        def work() -> list[str]:
            with self._db.transaction():
                warnings = self._warnings(key, status, main)
                self._db.execute(
                    "UPDATE trials SET status=%s, ended=%s, main=%s, metrics=%s, folder=%s, message=%s, warnings=%s, "
                    "verdict=%s WHERE key=%s",
                    (
                        status,
                        time.time(),
                        json.dumps(main),
                        json.dumps(metrics),
                        folder,
                        message,
                        json.dumps(warnings),
                        verdict,
                        key,
                    ),
                )
                self._db.execute("DELETE FROM beats WHERE kind='trial' AND key=%s", (key,))
            return warnings

        return self._retrying(work)

    def beat(self, kind: str, key: str, session: str | None, state: dict[str, Any]) -> None:
        """A running trial's or session's heartbeat and progress (``status``, the progress line under xdist)."""

        def work() -> None:
            with self._db.transaction():
                self._db.execute(_postgres(BEAT), beat_row(kind, key, session, self.host, state))

        self._retrying(work)

    def begin_session(self, session: NewSession) -> None:
        def work() -> None:
            with self._db.transaction():
                inserted = self._db.execute(
                    f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({marks(SESSION_COLUMNS, '%s')}) "
                    "ON CONFLICT (key) DO NOTHING RETURNING key",
                    session_row(session, self.host),
                ).fetchone()
                if inserted is None:
                    raise KeyTaken(session.key)

        self._retrying(work)

    def end_session(self, key: str, exitstatus: int, changed: list[str] | None = None) -> None:
        def work() -> None:
            with self._db.transaction():
                self._db.execute(
                    "UPDATE sessions SET ended=%s, status=%s, exitstatus=%s, changed=%s WHERE key=%s",
                    (time.time(), *session_end(exitstatus), json.dumps(changed) if changed else None, key),
                )
                self._db.execute("DELETE FROM beats WHERE kind='session' AND key=%s", (key,))

        self._retrying(work)

    def next_iteration(self, experiment: str, identity: str) -> int:
        (value,) = self._db.execute(
            "SELECT GREATEST(COALESCE((SELECT last FROM counters WHERE experiment=%(e)s AND identity=%(i)s), 0), "
            "(SELECT COALESCE(MAX(iteration), 0) FROM trials WHERE experiment=%(e)s AND identity=%(i)s)) + 1",
            {"e": experiment, "i": identity},
        ).fetchone()
        return int(value)

    def previous(self, experiment: str, identity: str, before: str | None = None) -> Previous | None:
        row = self._db.execute(
            'SELECT key, name, main, metrics, seed, "commit" FROM trials WHERE experiment=%s AND identity=%s AND debug=0 AND '
            "status='passed' AND reproduces IS NULL AND key IS DISTINCT FROM %s ORDER BY started DESC LIMIT 1",
            (experiment, identity, before),
        ).fetchone()
        if row is None:
            return None
        return Previous(row[0], row[1], json.loads(row[2]), json.loads(row[3] or "{}"), row[4], row[5])

    def _warnings(self, key: str, status: str, main: Any) -> list[str]:
        """Changed packages since the experiment's previous trial; a different main for the same inputs."""
        return finish_warnings(lambda sql, args: self._db.execute(_postgres(sql), args).fetchone(), key, status, main)

    def statuses(self, keys: Sequence[str]) -> dict[str, str]:
        """The status of each of ``keys`` that the store knows (for cleaning up staging folders)."""
        rows = self._db.execute("SELECT key, status FROM trials WHERE key = ANY(%s)", (list(keys),)).fetchall()
        return {str(key): str(status) for key, status in rows}

    def close(self) -> None:
        self._db.close()
