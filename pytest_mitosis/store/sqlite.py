"""The default trial store: one SQLite file in the trials folder (``mitosis.sqlite``).

WAL journal, a generous busy timeout, and short ``BEGIN IMMEDIATE`` transactions: one to
start a trial (re-check and take the variant locks, allocate the iteration, insert a
``running`` record) and one to finish it. Two xdist workers or two sessions can therefore
never lock one variant name to two values nor share an iteration number. A session killed
mid-trial leaves a ``running`` row, which the next session marks ``interrupted`` once its
process is gone. No pytest import.
"""

from __future__ import annotations

import json
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..identity.locks import Lock
from .dialect import SQLITE
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
from .sqlite_file import (
    BUSY_TIMEOUT,
    FILENAME,
    SCHEMA_VERSION,
    _readonly,
    check_store_path,
    foreign_message,
    refuse_network_filesystem,
)
from .tables import statements
from .url import StoreURL


class SQLiteStore:
    """The default store: ``<trials folder>/mitosis.sqlite``."""

    def __init__(
        self, folder: Path, allow_network: bool = False, mountinfo: str | None = None, path: Path | None = None
    ) -> None:
        """Open (or create) ``folder/mitosis.sqlite`` (or the file ``path``, from ``--mitosis-store
        sqlite:///PATH``); refuse a folder on a network filesystem unless ``allow_network``.
        ``mountinfo`` replaces ``/proc/self/mountinfo`` (for tests)."""
        self.path = path or folder / FILENAME
        folder = self.path.parent
        self.location = str(self.path)
        #: what a reader opens to read this store back (see ``Reader``)
        self.url = StoreURL("sqlite", f"sqlite:///{self.path}", path=self.path)
        self.host = socket.gethostname()
        self._closed = False
        #: one connection, one user at a time: execnet's receiver threads (``StoreServer``) and the main
        #: thread (the session's record) never interleave their transactions or reads on it
        self._lock = threading.RLock()
        if not allow_network:
            refuse_network_filesystem(self.path, mountinfo)
        fresh = check_store_path(folder, self.path)  # read only: nothing is created in or written to a file we refuse
        try:
            self._db = sqlite3.connect(self.path, timeout=BUSY_TIMEOUT, isolation_level=None, check_same_thread=False)
        except sqlite3.Error as err:
            raise StoreError(
                f"mitosis: the trial store {self.path} cannot be opened: {err}. Make the trials folder {folder} and "
                "the store writable for this user, or pass --mitosis-trials-folder for a folder you can write."
            ) from None
        try:
            self._migrate(fresh)
            # WAL only once the file is known to be ours (the switch rewrites the header)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._mark_interrupted()
        except (sqlite3.DatabaseError, StoreError) as err:
            self._db.close()
            if isinstance(err, StoreError):
                raise
            if _readonly(err):
                raise StoreError(
                    f"mitosis: the trial store {self.path} cannot be written: {err}. Make the trials folder {folder} "
                    "and the store writable for this user (chmod, chattr -i), or pass --mitosis-trials-folder for "
                    "a folder you can write."
                ) from None
            raise StoreError(
                f"mitosis: the trial store {self.path} cannot be used: {err}. It is not a pytest-mitosis store "
                "or it is damaged; nothing was written to it. Move it aside (or pass --mitosis-trials-folder "
                "for a new folder) and run again."
            ) from None

    # -- transactions ----------------------------------------------------------------------------

    def _write(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def _migrate(self, fresh: bool) -> None:
        """Create the tables of a new store, or check the version of an existing one (an older one gains
        what later versions brought: :func:`~.tables.statements`; nothing else changes).

        A new store gets its tables in one transaction before the switch to WAL, so a
        session killed meanwhile leaves either an empty file or a complete store.
        """
        with self._write():
            exists = self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            if exists:
                row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
                version = int(row[0]) if row else 1
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"mitosis: the trial store {self.path} has schema version {version}, written by a newer "
                        f"pytest-mitosis; this one knows version {SCHEMA_VERSION}. Upgrade pytest-mitosis "
                        "(pip install -U pytest-mitosis); the store was left as it is."
                    )
                if version == SCHEMA_VERSION:
                    return  # nothing to write: an existing store is never rewritten on open
                work = statements(SQLITE, version)  # an older store gains what it lacks, in this transaction
            elif not fresh:  # another session created it meanwhile? then it has our tables; else refuse
                raise StoreError(foreign_message(self.path, "it has no pytest-mitosis tables"))
            else:
                work = statements(SQLITE)
            for statement in work:
                self._db.execute(statement)  # executescript would COMMIT our transaction first
            self._db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _mark_interrupted(self) -> None:
        """Trials (and sessions) of this host whose process is gone without finishing them."""
        with self._lock:
            updates = left_running(lambda sql, args: self._db.execute(sql, args).fetchall(), self.host)
        if updates:
            with self._write():
                for sql, rows in updates:
                    self._db.executemany(sql, rows)

    # -- TrialStore ------------------------------------------------------------------------------

    def _conflicts(self, locks: Sequence[Lock]) -> None:
        """Raise one ``VariantRedefined`` naming *every* lock of ``locks`` that now means another value."""
        raise_conflicts(
            locks,
            lambda lock: self._db.execute(
                "SELECT fingerprint, value, trial FROM locks WHERE step=? AND param=? AND kind=? AND name=?",
                (lock.step, lock.param, lock.kind, lock.name),
            ).fetchone(),
        )

    def check_locks(self, locks: Sequence[Lock]) -> None:
        with self._lock:
            self._conflicts(locks)

    def begin(self, trial: NewTrial, locks: Sequence[Lock]) -> int | None:
        with self._write():
            iteration: int | None = None
            if not trial.debug:
                self._conflicts(locks)
                (iteration,) = self._db.execute(
                    "SELECT COALESCE(MAX(iteration), 0) + 1 FROM trials WHERE experiment=? AND identity=?",
                    (trial.experiment, trial.identity),
                ).fetchone()
                name = f"{trial.slug}-{iteration}"
                self._db.executemany(
                    "INSERT OR IGNORE INTO locks (step, param, kind, name, fingerprint, value, trial) VALUES (?,?,?,?,?,?,?)",
                    [
                        (
                            lock.step,
                            lock.param,
                            lock.kind,
                            lock.name,
                            lock.fingerprint,
                            json.dumps(lock.value),
                            f"{name} (key {trial.key})",
                        )
                        for lock in locks
                    ],
                )
            else:
                name = trial.slug
            digest, environment = environment_row(trial.environment)
            self._db.execute(
                "INSERT OR IGNORE INTO environments (digest, environment) VALUES (?, ?)", (digest, environment)
            )
            if self._db.execute("SELECT 1 FROM trials WHERE key=?", (trial.key,)).fetchone():
                raise KeyTaken(trial.key)
            self._db.execute(
                f"INSERT INTO trials ({TRIAL_COLUMNS}) VALUES ({marks(TRIAL_COLUMNS, '?')})",
                trial_row(trial, iteration, name, digest, self.host),
            )
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
        """Finalise the trial (``ended``: when it ended, for an outcome recorded late; now by default)."""
        with self._write():
            warnings = self._warnings(key, status, main)
            self._db.execute(
                "UPDATE trials SET status=?, ended=?, main=?, metrics=?, folder=?, message=?, warnings=?, verdict=?, "
                "job=? WHERE key=?",
                (
                    status,
                    time.time() if ended is None else ended,
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
            self._db.execute("DELETE FROM beats WHERE kind='trial' AND key=?", (key,))
        return warnings

    def beat(self, kind: str, key: str, session: str | None, state: dict[str, Any]) -> None:
        """A running trial's or session's heartbeat and progress (``status``, the progress line under xdist)."""
        try:
            with self._write():
                self._db.execute(BEAT, beat_row(kind, key, session, self.host, state))
        except sqlite3.Error as err:  # locked past the busy timeout: the next beat tries again
            raise StoreError(f"mitosis: the trial store {self.path} could not take a heartbeat: {err}") from None

    def begin_session(self, session: NewSession) -> None:
        with self._write():
            if self._db.execute("SELECT 1 FROM sessions WHERE key=?", (session.key,)).fetchone():
                raise KeyTaken(session.key)
            self._db.execute(
                f"INSERT INTO sessions ({SESSION_COLUMNS}) VALUES ({marks(SESSION_COLUMNS, '?')})",
                session_row(session, self.host),
            )

    def end_session(
        self, key: str, exitstatus: int, changed: list[str] | None = None, ended: float | None = None
    ) -> None:
        with self._write():
            self._db.execute(
                "UPDATE sessions SET ended=?, status=?, exitstatus=?, changed=? WHERE key=?",
                (
                    time.time() if ended is None else ended,
                    *session_end(exitstatus),
                    json.dumps(changed) if changed else None,
                    key,
                ),
            )
            self._db.execute("DELETE FROM beats WHERE kind='session' AND key=?", (key,))

    def next_iteration(self, experiment: str, identity: str) -> int:
        with self._lock:
            (value,) = self._db.execute(
                "SELECT COALESCE(MAX(iteration), 0) + 1 FROM trials WHERE experiment=? AND identity=?",
                (experiment, identity),
            ).fetchone()
        return int(value)

    def previous(self, experiment: str, identity: str, before: str | None = None) -> Previous | None:
        with self._lock:
            return baseline(self._db.execute(BASELINE_SQL, (experiment, identity, before)).fetchone())

    def accept(self, key: str, by: str, host: str, reason: str) -> Acceptance:
        """Make the trial ``key`` the drift gate's baseline (see :func:`~.queries.accept_trial`)."""
        with self._write():
            return accept_trial(
                lambda sql, args: self._db.execute(sql, args).fetchone(), self._db.execute, key, by, host, reason
            )

    def _warnings(self, key: str, status: str, main: Any) -> list[str]:
        """Changed packages since the experiment's previous trial; a different main for the same inputs."""
        return finish_warnings(lambda sql, args: self._db.execute(sql, args).fetchone(), key, status, main)

    def close(self) -> None:
        """Fold the WAL into the main file, then close: ``mitosis.sqlite`` alone holds every finished trial.

        Another session may still be writing: the checkpoint then waits only briefly and
        copies what it can (that session's own close finishes the job); never an error.
        """
        with self._lock:
            self._close()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        db = self._db
        try:
            db.execute("PRAGMA busy_timeout = 2000")
            busy = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
            if busy is not None and busy[0]:
                db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        except sqlite3.Error:
            pass  # another writer holds the lock: its own close checkpoints
        finally:
            db.close()

    def statuses(self, keys: Sequence[str]) -> dict[str, str]:
        """The status of each of ``keys`` that the store knows (for cleaning up staging folders)."""
        marks = ",".join("?" * len(keys))
        with self._lock:
            rows = self._db.execute(f"SELECT key, status FROM trials WHERE key IN ({marks})", list(keys)).fetchall()
        return {str(key): str(status) for key, status in rows}


#: the signals that stop a session (pytest-mitosis turns SIGTERM into KeyboardInterrupt): held back in a transaction
_STOPPING = (signal.SIGINT, signal.SIGTERM)


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK``): take the write lock up front, so a
    transaction never has to upgrade a read lock, the case SQLite answers with 'database is locked'.

    The store's thread lock is held from before ``BEGIN`` to after ``COMMIT``: one connection
    serves execnet's receiver threads and the main thread, and a transaction of one must never
    take in the statements of another. In the main thread, SIGINT and SIGTERM are held back
    meanwhile (their handlers record them) and raised again once the transaction is closed and
    the lock released: a KeyboardInterrupt landing between ``BEGIN`` and the body, or between
    the body and ``COMMIT``, would skip ``__exit__`` and leave the transaction open, holding the
    write lock of every process and refusing the session's own next write. The delay is one
    short transaction: SQLite does not see signals while it waits for a lock anyway.
    """

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self._db = db
        self._lock = lock
        self._held: list[int] = []
        self._saved: dict[int, Any] = {}

    def _hold_signals(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # Python runs signal handlers in the main thread only: this one is never interrupted
        for number in _STOPPING:
            handler = signal.getsignal(number)
            if handler is None:  # installed outside Python: left alone
                continue
            self._saved[number] = handler
            signal.signal(number, lambda received, _frame: self._held.append(received))

    def _release_signals(self) -> None:
        """Put the handlers back, then raise what was held back, each once, to the handler it was meant for.

        ``signal.signal`` runs pending handlers before it changes one: a signal restored first may
        interrupt the restoring of the next, which is then tried again (each try consumes a signal).
        The first exception a handler raised (``KeyboardInterrupt``) goes on once all are restored.
        """
        saved, self._saved = self._saved, {}
        first: BaseException | None = None
        for number, handler in saved.items():
            while True:
                try:
                    signal.signal(number, handler)
                    break
                except BaseException as err:  # noqa: BLE001 - a handler's exception, raised once all are back
                    first = first or err
        held, self._held = self._held, []
        for number in dict.fromkeys(held):
            try:
                signal.raise_signal(number)
            except BaseException as err:  # noqa: BLE001
                first = first or err
        if first is not None:
            raise first

    def __enter__(self) -> None:
        locked = False
        try:
            self._hold_signals()  # from here on, no KeyboardInterrupt until _release_signals
            self._lock.acquire()
            locked = True
            if self._db.in_transaction:  # never expected: rolled back rather than joined
                self._db.execute("ROLLBACK")
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            if locked:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                self._lock.release()
            self._release_signals()
            raise

    def __exit__(self, kind: object, *_: object) -> None:
        try:
            self._db.execute("COMMIT" if kind is None else "ROLLBACK")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise
        finally:
            self._lock.release()
            self._release_signals()
