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
import os
import random
import socket
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..identity.locks import Lock
from .dialect import POSTGRESQL
from .pgconnect import CONNECT_TIMEOUT, connect, driver
from .pgschema import create_schema, lock_order
from .protocol import (
    Acceptance,
    KeyTaken,
    NewSession,
    NewTrial,
    Previous,
    StoreError,
    raise_conflicts,
)
from .queries import (
    BASELINE_SQL,
    BEAT,
    SESSION_COLUMNS,
    TRIAL_COLUMNS,
    accept_trial,
    baseline,
    beat_row,
    environment_row,
    finish_warnings,
    left_running,
    marks,
    session_end,
    session_row,
    trial_row,
)
from .url import StoreURL

RETRIES = 8
_sql = POSTGRESQL.sql  # the queries of .protocol, written in SQLite's dialect
#: seconds a session waits for a store that went away before a trial fails (--mitosis-store-patience)
PATIENCE = 60.0
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


class PostgresStore:
    """A trial store in a PostgreSQL database, shared by every session, worker and host that reaches it."""

    #: every host reaches the database: xdist workers on other hosts write it directly (see remote.py)
    shared = True

    def __init__(self, url: StoreURL, patience: float = PATIENCE) -> None:
        """Connect to ``url`` (at once: a server that cannot be reached now is a configuration to fix);
        later, a lost connection is waited for up to ``patience`` seconds (``--mitosis-store-patience``)."""
        self.url = url
        self.location = str(url)
        self.host = socket.gethostname()
        self.patience = patience
        self._errors = driver(url).errors
        #: one transaction at a time on the connection, whichever thread asks (execnet's receivers, the main one)
        self._lock = threading.RLock()
        #: when the store went away and this process stopped waiting for it (``None``: reachable)
        self._gave_up: float | None = None
        self._db = connect(url)
        try:
            self._retrying(lambda: create_schema(self._db, url))
            self._mark_interrupted()
        except BaseException:
            self._db.close()
            raise

    # -- transactions ----------------------------------------------------------------------------

    def _retrying(self, work: Callable[[], T], patience: float | None = None) -> T:
        """``work()`` (which opens its own transaction), again after a serialization failure, a deadlock
        or a lost connection.

        A lost connection (the server restarted, failed over, or dropped us) is waited for: new
        connections are tried with a growing pause (0.2 s to 5 s) for up to ``patience`` seconds
        (the store's, ``--mitosis-store-patience``), and ``work`` runs again on the new one. Every
        ``work`` is idempotent, so a transaction whose COMMIT landed but whose reply was lost is
        not recorded twice (see :meth:`_begin`). Once the store stayed away that long, later calls
        try one connection each and fail at once, so a sweep does not wait again for every trial.
        """
        errors = self._errors
        wait = self.patience if patience is None else patience
        with self._lock:
            deadline: float | None = None
            conflicts = 0
            while True:
                if self._db.closed:
                    deadline = self._reconnect(deadline, wait, None)
                try:
                    return work()
                except (errors.SerializationFailure, errors.DeadlockDetected) as err:
                    conflicts += 1
                    if conflicts == RETRIES:
                        raise StoreError(
                            f"mitosis: the trial store {self.url} kept refusing a transaction "
                            f"({type(err).__name__}) after {RETRIES} attempts; nothing of it was written. "
                            "Another program may hold long locks on its tables; run again when it is done."
                        ) from None
                    time.sleep(random.uniform(0.01, 0.05) * 2**conflicts)
                except errors.OperationalError as err:
                    if not self._db.broken:
                        raise StoreError(
                            f"mitosis: the trial store {self.url} failed: {self._said(err)}. Nothing of this "
                            "transaction was written; check the server (its log says more) and run again."
                        ) from None
                    self._db.close()  # the server restarted or dropped us: wait for it, then the same work again
                    deadline = self._reconnect(deadline, wait, err)
                except errors.InsufficientPrivilege as err:
                    said = self._said(err)
                    raise StoreError(
                        f"mitosis: the trial store {self.url} refused: {said}. {grant_advice(said)}"
                    ) from None
                except errors.Error as err:
                    raise StoreError(
                        f"mitosis: the trial store {self.url} failed: {self._said(err)}. Nothing of this transaction "
                        "was written; check the server (its log says more) and run again."
                    ) from None

    def _reconnect(self, deadline: float | None, patience: float, lost: BaseException | None) -> float:
        """A new connection, tried until ``deadline`` (``patience`` seconds from now when ``None``); the deadline.

        ``StoreError`` once the deadline passes, saying how long this process waited, or at once
        when this process already waited its patience for this outage.
        """
        now = time.monotonic()
        if deadline is None:
            deadline = now + (0.0 if self._gave_up is not None else patience)
        pause = 0.2
        while True:
            try:
                self._db = connect(self.url, timeout=max(1.0, min(CONNECT_TIMEOUT, deadline - time.monotonic())))
            except StoreError as err:
                if time.monotonic() + pause > deadline:
                    if self._gave_up is None and patience > 0:  # a heartbeat's single try is no wait
                        self._gave_up = time.time()
                    since = time.strftime("%H:%M:%S", time.localtime(self._gave_up))
                    why = self._said(lost) if lost is not None else "the connection was lost"
                    raise StoreError(
                        f"mitosis: the trial store {self.url} went away ({why}) and could not be reached again "
                        f"(this session waited {patience:g} s, and has not reached it since {since}): "
                        f"{str(err).removeprefix(f'mitosis: the trial store {self.url} cannot be reached: ')} "
                        "A trial that finished meanwhile keeps its outcome in its folder, recorded once the store is "
                        "back; wait longer with --mitosis-store-patience SECONDS."
                    ) from None
                time.sleep(pause)
                pause = min(pause * 2, 5.0)
                continue
            self._gave_up = None
            return deadline

    def _said(self, err: BaseException) -> str:
        """The server's message, first line only, password scrubbed."""
        return self.url.scrub(str(err)).strip().splitlines()[0] if str(err).strip() else type(err).__name__

    def _mark_interrupted(self) -> None:
        """Trials (and sessions) of this host whose process is gone without finishing them."""
        updates = self._retrying(
            lambda: left_running(lambda sql, args: self._db.execute(_sql(sql), args).fetchall(), self.host)
        )
        if updates:

            def mark() -> None:
                with self._db.transaction():
                    cursor = self._db.cursor()
                    for sql, rows in updates:
                        cursor.executemany(_sql(sql), rows)

            self._retrying(mark)

    def _conflicts(self, locks: Sequence[Lock]) -> None:
        raise_conflicts(locks, lambda lock: self._db.execute(_LOCK_ROW, lock_order(lock)).fetchone())

    # -- TrialStore ------------------------------------------------------------------------------

    def check_locks(self, locks: Sequence[Lock]) -> None:
        self._retrying(lambda: self._conflicts(locks))

    def begin(self, trial: NewTrial, locks: Sequence[Lock]) -> int | None:
        try:
            return self._retrying(lambda: self._begin(trial, locks))
        except _Recorded as done:  # a retry found the row its lost COMMIT had written
            return done.iteration

    def _begin(self, trial: NewTrial, locks: Sequence[Lock]) -> int | None:
        """Insert the running trial; when its key is taken by this very trial (the same host, process,
        session and node: a COMMIT that landed, whose reply the lost connection never brought back),
        raise ``_Recorded`` with its iteration, so a retry after a reconnect never adds a second row."""
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
            if inserted is None:  # leaves the transaction either way: the counter and locks roll back
                mine = db.execute(
                    "SELECT iteration FROM trials WHERE key=%s AND status='running' AND host=%s AND pid=%s AND nodeid=%s "
                    "AND identity=%s "
                    "AND session IS NOT DISTINCT FROM %s",
                    (trial.key, self.host, os.getpid(), trial.nodeid, trial.identity, trial.session),
                ).fetchone()
                if mine is not None:
                    raise _Recorded(mine[0])
                raise KeyTaken(trial.key)
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
        ended: float | None = None,
        job: dict[str, Any] | None = None,
    ) -> list[str]:
        """Finalise the trial (``ended``: when it ended, for an outcome recorded late; now by default).
        Idempotent: run again after a lost reply, it writes the same row."""
        when = time.time() if ended is None else ended

        def work() -> list[str]:
            with self._db.transaction():
                warnings = self._warnings(key, status, main)
                self._db.execute(
                    "UPDATE trials SET status=%s, ended=%s, main=%s, metrics=%s, folder=%s, message=%s, warnings=%s, "
                    "verdict=%s, job=%s WHERE key=%s",
                    (
                        status,
                        when,
                        json.dumps(main),
                        json.dumps(metrics),
                        folder,
                        message,
                        json.dumps(warnings),
                        verdict,
                        json.dumps(job) if job is not None else None,
                        key,
                    ),
                )
                self._db.execute("DELETE FROM beats WHERE kind='trial' AND key=%s", (key,))
            return warnings

        return self._retrying(work)

    def beat(self, kind: str, key: str, session: str | None, state: dict[str, Any]) -> None:
        """A running trial's or session's heartbeat and progress (``status``, the progress line under xdist).

        Never waits for a store that went away (one new connection is tried): the trial runs on, and
        its next write waits. ``StoreError`` when the beat could not be written."""

        def work() -> None:
            with self._db.transaction():
                self._db.execute(_sql(BEAT), beat_row(kind, key, session, self.host, state))

        self._retrying(work, patience=0.0)

    def begin_session(self, session: NewSession) -> None:
        def work() -> None:
            with self._db.transaction():
                inserted = self._db.execute(
                    f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({marks(SESSION_COLUMNS, '%s')}) "
                    "ON CONFLICT (key) DO NOTHING RETURNING key",
                    session_row(session, self.host),
                ).fetchone()
                if inserted is None:
                    mine = self._db.execute(  # the row a lost reply's COMMIT wrote: ours, not a taken key
                        "SELECT 1 FROM sessions WHERE key=%s AND host=%s AND pid=%s AND command=%s",
                        (session.key, self.host, os.getpid(), session.command),
                    ).fetchone()
                    if mine is None:
                        raise KeyTaken(session.key)

        self._retrying(work)

    def end_session(
        self, key: str, exitstatus: int, changed: list[str] | None = None, ended: float | None = None
    ) -> None:
        when = time.time() if ended is None else ended

        def work() -> None:
            with self._db.transaction():
                self._db.execute(
                    "UPDATE sessions SET ended=%s, status=%s, exitstatus=%s, changed=%s WHERE key=%s",
                    (when, *session_end(exitstatus), json.dumps(changed) if changed else None, key),
                )
                self._db.execute("DELETE FROM beats WHERE kind='session' AND key=%s", (key,))

        self._retrying(work)

    def next_iteration(self, experiment: str, identity: str) -> int:
        (value,) = self._retrying(
            lambda: self._db.execute(
                "SELECT GREATEST(COALESCE((SELECT last FROM counters WHERE experiment=%(e)s AND identity=%(i)s), 0), "
                "(SELECT COALESCE(MAX(iteration), 0) FROM trials WHERE experiment=%(e)s AND identity=%(i)s)) + 1",
                {"e": experiment, "i": identity},
            ).fetchone()
        )
        return int(value)

    def previous(self, experiment: str, identity: str, before: str | None = None) -> Previous | None:
        return baseline(
            self._retrying(lambda: self._db.execute(_sql(BASELINE_SQL), (experiment, identity, before)).fetchone())
        )

    def accept(self, key: str, by: str, host: str, reason: str) -> Acceptance:
        """Make the trial ``key`` the drift gate's baseline (see :func:`~.queries.accept_trial`)."""

        def work() -> Acceptance:
            with self._db.transaction():
                return accept_trial(
                    lambda sql, args: self._db.execute(_sql(sql), args).fetchone(),
                    lambda sql, args: self._db.execute(_sql(sql), args),
                    key,
                    by,
                    host,
                    reason,
                )

        return self._retrying(work)

    def _warnings(self, key: str, status: str, main: Any) -> list[str]:
        """Changed packages since the experiment's previous trial; a different main for the same inputs."""
        return finish_warnings(lambda sql, args: self._db.execute(_sql(sql), args).fetchone(), key, status, main)

    def statuses(self, keys: Sequence[str]) -> dict[str, str]:
        """The status of each of ``keys`` that the store knows (for cleaning up staging folders)."""
        rows = self._retrying(
            lambda: self._db.execute("SELECT key, status FROM trials WHERE key = ANY(%s)", (list(keys),)).fetchall()
        )
        return {str(key): str(status) for key, status in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Recorded(Exception):
    """Raised inside :meth:`PostgresStore._begin`'s transaction (so it rolls back) when the trial's row is
    already there, written by an earlier attempt whose reply was lost; carries that row's iteration."""

    def __init__(self, iteration: int | None) -> None:
        super().__init__(iteration)
        self.iteration = iteration
