"""The trial store: a ``TrialStore`` protocol and its default SQLite implementation.

One database file in the trials folder (``mitosis.sqlite``), WAL journal, a generous busy
timeout, and short ``BEGIN IMMEDIATE`` transactions: one to start a trial (re-check and take
the variant locks, allocate the iteration, insert a ``running`` record) and one to finish
it. Two xdist workers or two sessions can therefore never lock one variant name to two
values nor share an iteration number. A session killed mid-trial leaves a ``running`` row,
which the next session marks ``interrupted`` once its process is gone. No pytest import.
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import socket
import sqlite3
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..core.errors import MitosisError
from ..core.fingerprint import difference, render
from ..core.processes import alive
from ..identity.environment import package_changes
from ..identity.locks import Lock
from .filesystems import mount_of

SCHEMA_VERSION = 1
FILENAME = "mitosis.sqlite"
BUSY_TIMEOUT = 120.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials (
    key TEXT PRIMARY KEY,
    experiment TEXT NOT NULL,
    identity TEXT NOT NULL,
    variants TEXT NOT NULL,
    iteration INTEGER,
    name TEXT NOT NULL,
    nodeid TEXT NOT NULL,
    debug INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'passed', 'failed', 'interrupted')),
    git TEXT NOT NULL,
    "commit" TEXT,
    seed INTEGER,
    environment TEXT NOT NULL REFERENCES environments (digest),
    steps TEXT NOT NULL,
    params TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    main TEXT,
    metrics TEXT,
    folder TEXT,
    message TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    reproduces TEXT,
    verdict TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS trials_iteration ON trials (experiment, identity, iteration)
    WHERE iteration IS NOT NULL;
CREATE INDEX IF NOT EXISTS trials_started ON trials (started);
CREATE INDEX IF NOT EXISTS trials_identity ON trials (experiment, identity);
CREATE TABLE IF NOT EXISTS environments (digest TEXT PRIMARY KEY, environment TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS locks (
    step TEXT NOT NULL,
    param TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    value TEXT NOT NULL,
    trial TEXT NOT NULL,
    PRIMARY KEY (step, param, kind, name)
);
"""


def new_key() -> str:
    """A short random key: unique names for folders without any coordination between workers."""
    return secrets.token_hex(4)


class StoreError(MitosisError):
    """The store cannot be opened or written; the message names the file."""


class KeyTaken(MitosisError):
    """Another trial already has this key (32 random bits: rare, so the caller draws another)."""


class VariantRedefined(MitosisError):
    """A variant name (or a tracked eval expression) now means another value than when locked."""

    def __init__(self, message: str, short: str) -> None:
        super().__init__(message)
        #: one line for ``--mitosis-check``
        self.short = short


@dataclass(frozen=True)
class NewTrial:
    """A trial about to start, as the store records it."""

    key: str
    experiment: str
    identity: str
    variants: str
    slug: str
    nodeid: str
    debug: bool
    git: dict[str, Any]
    seed: int
    environment: dict[str, Any]
    steps: list[dict[str, Any]]
    params: list[dict[str, Any]]
    #: the key of the trial this one reproduces (``--mitosis-reproduce``)
    reproduces: str | None = None


@dataclass(frozen=True)
class Previous:
    """The latest finished, non-debug, passed trial of an identity (for the drift gate)."""

    key: str
    name: str
    main: Any
    metrics: dict[str, Any]
    #: its seed, so that the gate can say when the seed changed too
    seed: int | None = None


class TrialStore(Protocol):
    """What collection and execution need of a store; implement it to add a backend."""

    location: str

    def check_locks(self, locks: Sequence[Lock]) -> None:
        """Raise ``VariantRedefined`` if a lock holds another value (read only, before a kernel starts)."""

    def begin(self, trial: NewTrial, locks: Sequence[Lock]) -> int | None:
        """Atomically re-check and take ``locks`` and record ``trial`` as running; return its iteration."""

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
        """Finalise a trial's record; return warnings worth a researcher's attention."""

    def next_iteration(self, experiment: str, identity: str) -> int:
        """The iteration the next trial of this identity would get (read only)."""

    def previous(self, experiment: str, identity: str, before: str | None = None) -> Previous | None:
        """The latest passed, non-debug trial of this identity, other than the trial ``before``."""

    def close(self) -> None:
        """Release the store."""


def conflict_message(lock: Lock, stored_value: Any, stored_trial: str) -> str:
    if lock.kind == "expect":
        return (
            f"mitosis: experiment {lock.experiment!r}: its hypothesis was {render(stored_value)} when trial "
            f"{stored_trial} ran, and is now {render(lock.value)}. A hypothesis is declared before the trials that "
            "test it: declare the new one as a new experiment in [tool.mitosis.experiments], or run with --mitosis-debug."
        )
    what = (
        f"variant {lock.name!r} of parameter"
        if lock.kind == "lookup"
        else f"eval expression {lock.name!r} for parameter"
    )
    fix = (
        f"Give the new value a new variant name in {lock.where} (variant names are never reused), "
        if lock.kind == "lookup"
        else "Write the new value as a different expression, or mark the parameter untracked with a leading +, "
    )
    where = difference(stored_value, lock.value)
    return (
        f"mitosis: experiment {lock.experiment!r}, step {lock.step!r}: the {what} {lock.param!r} now means a "
        f"different value than in earlier trials.\n"
        f"  stored:    {render(stored_value)}   (locked by trial {stored_trial})\n"
        f"  attempted: {render(lock.value)}\n"
        f"  they differ at {where}\n"
        f"{fix}or run with --mitosis-debug."
    )


_FIX = "Move it aside (or pass --mitosis-trials-folder for a new folder) and run again."
_OURS = ("meta", "trials", "environments", "locks")


def foreign_message(path: Path, found: str) -> str:
    return (
        f"mitosis: the trial store {path} cannot be used: {found}. It is not a pytest-mitosis store or it is "
        f"damaged; nothing was written to it. {_FIX}"
    )


def _trial_folders(folder: Path) -> list[Path]:
    found: list[Path] = []
    for parent in (folder, folder / "debug"):
        try:
            found += [p for p in parent.iterdir() if p.name.startswith("trial_") and p.is_dir()]
        except OSError:
            pass
    return sorted(found)


def _readonly(err: BaseException) -> bool:
    text = str(err).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def refuse_network_filesystem(path: Path, mountinfo: str | None = None) -> None:
    """Raise ``StoreError`` when ``path`` would be on a network filesystem (see filesystems.py)."""
    mount = mount_of(path.parent, mountinfo)
    if mount is None or not mount.network:
        return
    raise StoreError(
        f"mitosis: the trial store {path} would be on a network filesystem ({mount.fstype} {mount.source}, "
        f"mounted at {mount.point}). SQLite's WAL journal, which lets several sessions and xdist workers write one "
        "store safely, needs memory shared between processes on one machine, and on a network filesystem it can "
        "corrupt the store without a word. Keep the trials folder on a local disk (--mitosis-trials-folder, or "
        "trials-folder in [tool.mitosis]) and copy it to the shared place after the sessions "
        "(`python -m pytest_mitosis backup DEST` for the store, rsync for the trial folders). If you know this "
        "filesystem's locking works across your processes, set the ini key mitosis_allow_network_store = true."
    )


def check_store_path(folder: Path) -> bool:
    """Refuse an unusable trials folder or store before anything is written; ``True`` for a new store.

    Everything here only reads: a file we refuse stays byte-identical (its header included,
    so the switch to WAL waits until the file is known to be ours). Refused: a trials
    folder that is a file or cannot be written, a store that is a directory, an empty store
    beside trial folders (the store that numbered them is lost), a SQLite file without our
    tables or with some of them gone, and a store from a newer pytest-mitosis.
    """
    path = folder / FILENAME
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == folder else f"cannot be created: {parent} is a file"
                raise StoreError(
                    f"mitosis: the trials folder {folder} {what}, not a folder. Move that file aside, or choose "
                    "another trials folder (--mitosis-trials-folder DIR, or trials-folder in [tool.mitosis])."
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(
            f"mitosis: the trials folder {folder} cannot be created: {err.strerror or err}. Create it yourself with "
            "write permission for this user, or choose another trials folder (--mitosis-trials-folder DIR)."
        ) from None
    if path.is_dir():
        raise StoreError(
            f"mitosis: the trial store {path} is a directory, not a file. Move that directory aside (pytest-mitosis "
            "creates the store there), or choose another trials folder (--mitosis-trials-folder DIR)."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"mitosis: the trials folder {folder} is not writable for this user: trials and the store are written "
            "there. Make it writable (chmod u+w, or chattr -i if it is immutable), or choose another trials folder "
            "(--mitosis-trials-folder DIR)."
        )
    if not path.exists():
        return True
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(
            f"mitosis: the trial store {path} is not writable for this user. Make it writable (chmod u+w, or chattr "
            "-i if it is immutable), or choose another trials folder (--mitosis-trials-folder DIR)."
        )
    if path.stat().st_size == 0:
        trials = _trial_folders(folder)
        if trials:
            raise StoreError(
                f"mitosis: the trial store {path} is empty (0 bytes), but {folder} holds {len(trials)} trial "
                f"folder{'s' if len(trials) > 1 else ''} ({trials[0].name}{', ...' if len(trials) > 1 else ''}): the "
                "store that recorded them was truncated or lost, and a new one would number trials from 1 again "
                "beside them. Restore the store from a copy or backup, or move the trial folders and the empty "
                "file aside; nothing was written."
            )
        return True
    # A read-only connection honours locks and journals, and creates nothing beside a file in
    # rollback-journal mode (every file as it is being created, and foreign ones). Beside a
    # WAL-mode file it would create -wal and -shm: when they are absent, no session has the
    # file open and everything is in the main file (our stores get their tables before the
    # switch to WAL), so read it as immutable, which creates nothing.
    try:
        with path.open("rb") as stream:
            head = stream.read(20)
    except OSError as err:
        raise StoreError(foreign_message(path, err.strerror or str(err))) from None
    wal = len(head) == 20 and head[18] == 2 and head[19] == 2
    shared = any(path.with_name(path.name + suffix).exists() for suffix in ("-wal", "-shm"))
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if wal and not shared else "")
    try:
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as err:
        raise StoreError(foreign_message(path, str(err))) from None
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        row = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone() if "meta" in tables else None
    except sqlite3.Error as err:
        raise StoreError(foreign_message(path, str(err))) from None
    finally:
        db.close()
    if "meta" not in tables:
        found = (
            f"it has the tables {', '.join(sorted(tables))} but none of pytest-mitosis's"
            if tables
            else "it is a SQLite database without any table (not a store, or one whose tables were dropped)"
        )
        raise StoreError(foreign_message(path, found))
    version = int(row[0]) if row is not None and str(row[0]).isdigit() else None
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"mitosis: the trial store {path} has schema version {version}, written by a newer "
            f"pytest-mitosis; this one knows version {SCHEMA_VERSION}. Upgrade pytest-mitosis "
            "(pip install -U pytest-mitosis); the store was left as it is."
        )
    missing = [t for t in _OURS if t not in tables]
    if missing or version is None:
        gone = f"the table{'s' if len(missing) > 1 else ''} {', '.join(missing)}" if missing else "its schema version"
        raise StoreError(
            f"mitosis: the trial store {path} cannot be used: {gone} {'are' if len(missing) > 1 else 'is'} gone "
            "(damaged, or edited by hand); nothing was written to it. Restore it from a copy or backup, or move it "
            "aside (or pass --mitosis-trials-folder for a new folder) and run again."
        )
    return False


class SQLiteStore:
    """The default store: ``<trials folder>/mitosis.sqlite``."""

    def __init__(self, folder: Path, allow_network: bool = False, mountinfo: str | None = None) -> None:
        """Open (or create) ``folder/mitosis.sqlite``; refuse a folder on a network filesystem
        unless ``allow_network``. ``mountinfo`` replaces ``/proc/self/mountinfo`` (for tests)."""
        self.path = folder / FILENAME
        self.location = str(self.path)
        self.host = socket.gethostname()
        self._closed = False
        if not allow_network:
            refuse_network_filesystem(self.path, mountinfo)
        fresh = check_store_path(folder)  # read only: nothing is created in or written to a file we refuse
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
        return _Transaction(self._db)

    def _migrate(self, fresh: bool) -> None:
        """Create the tables of a new store, or check the version of an existing one.

        A new store gets its tables in one transaction before the switch to WAL, so a
        session killed meanwhile leaves either an empty file or a complete store.
        """
        with self._write():
            exists = self._db.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND name='meta'").fetchone()
            if exists:
                row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
                version = int(row[0]) if row else 0
                if version > SCHEMA_VERSION:
                    raise StoreError(
                        f"mitosis: the trial store {self.path} has schema version {version}, written by a newer "
                        f"pytest-mitosis; this one knows version {SCHEMA_VERSION}. Upgrade pytest-mitosis "
                        "(pip install -U pytest-mitosis); the store was left as it is."
                    )
                if version == SCHEMA_VERSION:
                    return  # nothing to write: an existing store is never rewritten on open
            elif not fresh:  # another session created it meanwhile? then it has our tables; else refuse
                raise StoreError(foreign_message(self.path, "it has no pytest-mitosis tables"))
            for statement in filter(str.strip, _SCHEMA.split(";")):
                self._db.execute(statement)  # executescript would COMMIT our transaction first
            self._db.execute(
                "INSERT OR REPLACE INTO meta (name, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )

    def _mark_interrupted(self) -> None:
        rows = self._db.execute(
            "SELECT key, pid FROM trials WHERE status='running' AND host=?", (self.host,)
        ).fetchall()
        gone = [key for key, pid in rows if not alive(pid)]
        if gone:
            with self._write():
                self._db.executemany(
                    "UPDATE trials SET status='interrupted', ended=?, message=? WHERE key=? AND status='running'",
                    [(time.time(), "the session running this trial ended before it finished", k) for k in gone],
                )

    # -- TrialStore ------------------------------------------------------------------------------

    def _conflicts(self, locks: Sequence[Lock]) -> None:
        """Raise one ``VariantRedefined`` naming *every* lock of ``locks`` that now means another value."""
        messages: list[str] = []
        shorts: list[str] = []
        for lock in locks:
            row = self._db.execute(
                "SELECT fingerprint, value, trial FROM locks WHERE step=? AND param=? AND kind=? AND name=?",
                (lock.step, lock.param, lock.kind, lock.name),
            ).fetchone()
            if row is not None and row[0] != lock.fingerprint:
                stored = json.loads(row[1])
                what = (
                    "the hypothesis"
                    if lock.kind == "expect"
                    else (
                        f"variant {lock.name!r} of {lock.step}.{lock.param}"
                        if lock.kind == "lookup"
                        else f"eval {lock.name!r} of {lock.step}.{lock.param}"
                    )
                )
                was, now = render(stored, 40), render(lock.value, 40)
                short = f"{what} was {was} in {row[2]}, is now {now}"
                if was.endswith("...") or now.endswith("..."):  # cut texts may hide the change: say where it is
                    short += f" (they differ at {difference(stored, lock.value)})"
                messages.append(conflict_message(lock, stored, row[2]))
                shorts.append(short)
        if messages:
            raise VariantRedefined("\n\n".join(messages), "; ".join(shorts))

    def check_locks(self, locks: Sequence[Lock]) -> None:
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
            environment = json.dumps(trial.environment, sort_keys=True)
            digest = hashlib.sha256(environment.encode("utf-8")).hexdigest()
            self._db.execute(
                "INSERT OR IGNORE INTO environments (digest, environment) VALUES (?, ?)", (digest, environment)
            )
            if self._db.execute("SELECT 1 FROM trials WHERE key=?", (trial.key,)).fetchone():
                raise KeyTaken(trial.key)
            self._db.execute(
                "INSERT INTO trials (key, experiment, identity, variants, iteration, name, nodeid, debug, status, git, "
                '"commit", seed, environment, steps, params, started, host, pid, reproduces) '
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    trial.key,
                    trial.experiment,
                    trial.identity,
                    trial.variants,
                    iteration,
                    name,
                    trial.nodeid,
                    int(trial.debug),
                    "running",
                    json.dumps(trial.git),
                    trial.git.get("commit"),
                    trial.seed,
                    digest,
                    json.dumps(trial.steps),
                    json.dumps(trial.params),
                    time.time(),
                    self.host,
                    os.getpid(),
                    trial.reproduces,
                ),
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
    ) -> list[str]:
        with self._write():
            warnings = self._warnings(key, status, main)
            self._db.execute(
                "UPDATE trials SET status=?, ended=?, main=?, metrics=?, folder=?, message=?, warnings=?, verdict=? "
                "WHERE key=?",
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
        return warnings

    def next_iteration(self, experiment: str, identity: str) -> int:
        (value,) = self._db.execute(
            "SELECT COALESCE(MAX(iteration), 0) + 1 FROM trials WHERE experiment=? AND identity=?",
            (experiment, identity),
        ).fetchone()
        return int(value)

    def previous(self, experiment: str, identity: str, before: str | None = None) -> Previous | None:
        row = self._db.execute(
            "SELECT key, name, main, metrics, seed FROM trials WHERE experiment=? AND identity=? AND debug=0 AND "
            "status='passed' AND reproduces IS NULL AND key IS NOT ? ORDER BY started DESC LIMIT 1",
            (experiment, identity, before),
        ).fetchone()
        if row is None:
            return None
        return Previous(row[0], row[1], json.loads(row[2]), json.loads(row[3] or "{}"), row[4])

    def _warnings(self, key: str, status: str, main: Any) -> list[str]:
        """Changed packages since the experiment's previous trial; a different main for the same inputs."""
        this = self._db.execute(
            'SELECT experiment, identity, "commit", seed, environment, started, debug FROM trials WHERE key=?', (key,)
        ).fetchone()
        if this is None or this[6]:
            return []
        experiment, identity, commit, seed, digest, started, _ = this
        found: list[str] = []
        previous = self._db.execute(
            "SELECT t.name, t.key, e.environment, t.environment FROM trials t JOIN environments e ON e.digest = t.environment "
            "WHERE t.experiment=? AND t.debug=0 AND t.key<>? AND t.started<? ORDER BY t.started DESC LIMIT 1",
            (experiment, key, started),
        ).fetchone()
        if previous is not None and previous[3] != digest:
            (current,) = self._db.execute("SELECT environment FROM environments WHERE digest=?", (digest,)).fetchone()
            changes = package_changes(
                json.loads(previous[2]).get("packages", {}), json.loads(current).get("packages", {})
            )
            listed = changes["changed"] + [f"+{p}" for p in changes["added"]] + [f"-{p}" for p in changes["removed"]]
            if listed:
                shown = ", ".join(listed[:8]) + (f" and {len(listed) - 8} more" if len(listed) > 8 else "")
                found.append(f"installed packages changed since {previous[0]} (key {previous[1]}): {shown}")
        if status == "passed":
            same = self._db.execute(
                'SELECT name, key, main FROM trials WHERE experiment=? AND identity=? AND "commit" IS ? AND seed IS ? '
                "AND status='passed' AND debug=0 AND key<>? AND started<? ORDER BY started DESC LIMIT 1",
                (experiment, identity, commit, seed, key, started),
            ).fetchone()
            if same is not None and json.loads(same[2]) != main:
                found.append(
                    f"non-determinism: {same[0]} (key {same[1]}) had the same parameters, commit and seed "
                    f"but main = {json.loads(same[2])!r}; this trial's main = {main!r}"
                )
        return found

    def close(self) -> None:
        """Fold the WAL into the main file, then close: ``mitosis.sqlite`` alone holds every finished trial.

        Another session may still be writing: the checkpoint then waits only briefly and
        copies what it can (that session's own close finishes the job); never an error.
        """
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
        found: dict[str, str] = {}
        for key in keys:
            row = self._db.execute("SELECT status FROM trials WHERE key=?", (key,)).fetchone()
            if row is not None:
                found[key] = str(row[0])
        return found


class _Transaction:
    """``BEGIN IMMEDIATE`` ... ``COMMIT`` (or ``ROLLBACK``): take the write lock up front, so a
    transaction never has to upgrade a read lock, the case SQLite answers with 'database is locked'."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self._db.execute("COMMIT" if kind is None else "ROLLBACK")


def start(store: TrialStore, make: Any, locks: Sequence[Lock], key: str) -> tuple[str, int | None]:
    """``store.begin(make(key), locks)``, drawing a new key while the key is taken."""

    for _ in range(20):
        try:
            return key, store.begin(make(key), locks)
        except KeyTaken:
            key = new_key()
    raise StoreError(
        f"mitosis: 20 random trial keys in a row were already taken in {store.location}; the store's key column is "
        "probably not what pytest-mitosis wrote. Check the store, or point --mitosis-trials-folder at a new folder."
    )
