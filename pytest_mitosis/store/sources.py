"""The read-only connections behind :class:`~pytest_mitosis.store.Reader`, one per backend.

Each answers ``rows(sql, args)`` for the reader's few queries (written once, with ``?``
placeholders) and cannot write: the SQLite file is opened ``mode=ro`` (nothing is created
beside it), a PostgreSQL connection runs every query in a ``READ ONLY`` transaction that the
server enforces. Only the SQLite source can ``backup`` (SQLite's online backup API); a
PostgreSQL store is backed up with ``pg_dump`` or copied with ``migrate``. No pytest import.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from .dialect import POSTGRESQL
from .protocol import StoreError
from .records import RecordsError, new_file
from .sqlite_file import FILENAME
from .tables import SCHEMA_VERSION
from .url import StoreURL


class Source(Protocol):
    """A read-only connection to one store."""

    location: str
    #: the store's schema version (2 and later have a ``sessions`` table)
    version: int

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]: ...

    def backup(self, dest: Path) -> Path: ...

    def close(self) -> None: ...


def _newer(location: str, version: Any) -> int:
    """The schema version (``1`` when unreadable); refuse a version newer than this pytest-mitosis reads."""
    if version is not None and str(version).isdigit() and int(version) > SCHEMA_VERSION:
        raise RecordsError(
            f"{location} has schema version {version}, written by a newer pytest-mitosis; this one reads version "
            f"{SCHEMA_VERSION}. Upgrade pytest-mitosis (pip install -U pytest-mitosis)."
        )
    return int(version) if version is not None and str(version).isdigit() else 1


class SQLiteSource:
    """A SQLite store opened read-only (``mode=ro``)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.location = str(path)
        if path.is_dir():
            raise RecordsError(
                f"{path} is a directory, not a trial store; pass --trials-folder DIR for another folder."
            )
        if not path.is_file():
            raise RecordsError(
                f"no trial store at {path}. Run trials with pytest --mitosis first, or name the trials folder that "
                "holds one (python -m pytest_mitosis --trials-folder DIR; pytest --mitosis-trials-folder DIR; "
                "load_trials(trials_folder=...)) or its store URL (--store URL; pytest --mitosis-store URL)."
            )
        try:
            self._db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
            self._db.row_factory = sqlite3.Row
            self._db.execute("SELECT 1 FROM trials LIMIT 1").fetchall()
            row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        except sqlite3.DatabaseError as err:
            self._db.close()
            raise RecordsError(f"{path}: cannot be read as a trial store ({err}).") from None
        try:
            self.version = _newer(self.location, row[0] if row is not None else None)
        except RecordsError:
            self._db.close()
            raise

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        return list(self._db.execute(sql, list(args)).fetchall())

    def close(self) -> None:
        self._db.close()

    def backup(self, dest: Path) -> Path:
        """A consistent copy of the store in ``dest`` (a new file, or a folder), while sessions may write.

        SQLite's online backup API reads one snapshot; the copy is a single self-contained file
        (rollback journal, no ``-wal``), written beside ``dest`` and linked into place, so a
        half-written copy never carries the final name and an existing file is never replaced.
        """
        dest = dest / FILENAME if dest.is_dir() else dest
        if dest.exists() or dest.is_symlink():
            raise RecordsError(f"{dest} exists already; choose a new file name (the backup never overwrites a file).")
        if not dest.parent.is_dir():
            raise RecordsError(f"{dest.parent} is not a folder; create it first or choose another destination.")
        handle, tmp = new_file(dest.parent, f".{dest.name}.")
        os.close(handle)
        try:
            target = sqlite3.connect(tmp)
            try:
                self._db.backup(target)
                target.execute("PRAGMA journal_mode=DELETE")
                (check,) = target.execute("PRAGMA quick_check").fetchone()
            finally:
                target.close()
            if check != "ok":
                raise RecordsError(
                    f"the copy of {self.path} failed SQLite's check ({check}); the store itself was not changed."
                )
            os.link(tmp, dest)
        except FileExistsError:
            raise RecordsError(
                f"{dest} exists already; choose a new file name (the backup never overwrites a file)."
            ) from None
        finally:
            os.unlink(tmp)
        return dest


class PostgresSource:
    """A PostgreSQL store read in ``READ ONLY`` transactions (one per query, so no snapshot is held open)."""

    def __init__(self, url: StoreURL) -> None:
        from .pgconnect import connect, driver

        self.url = url
        self.location = str(url)
        self._psycopg = driver(url)
        try:
            self._db = connect(url, read_only=True)
        except StoreError as err:
            raise RecordsError(str(err).removeprefix("mitosis: ")) from None
        try:
            row = self.rows("SELECT value FROM meta WHERE name='schema_version'")
            self.rows("SELECT 1 FROM trials LIMIT 1")
            self.version = _newer(self.location, row[0]["value"] if row else None)
        except RecordsError:
            self._db.close()
            raise

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[Mapping[str, Any]]:
        from psycopg.rows import dict_row

        errors = self._psycopg.errors
        try:
            with self._db.cursor(row_factory=dict_row) as cursor:
                found = cursor.execute(POSTGRESQL.sql(sql), list(args)).fetchall()
            self._db.rollback()  # end the read-only transaction: nothing to commit, no snapshot kept
            return list(found)
        except errors.UndefinedTable:
            self._db.rollback()
            raise RecordsError(
                f"no trial store in {self.url}: the database has no pytest-mitosis tables. Run trials with "
                f"pytest --mitosis --mitosis-store URL first, or copy a store there with python -m pytest_mitosis "
                "migrate --from sqlite:///trials/mitosis.sqlite --to URL."
            ) from None
        except self._psycopg.Error as err:
            self._db.rollback()
            raise RecordsError(f"{self.url}: cannot be read ({self.url.scrub(str(err)).strip()}).") from None

    def close(self) -> None:
        self._db.close()

    def backup(self, dest: Path) -> Path:
        raise RecordsError(
            f"backup copies a SQLite store; {self.url} is a PostgreSQL database: back it up with pg_dump, or copy it "
            f"into a SQLite file with python -m pytest_mitosis migrate --from URL --to sqlite:///{dest}."
        )


def open_source(url: StoreURL) -> Source:
    if url.kind == "sqlite":
        assert url.path is not None
        return SQLiteSource(url.path)
    return PostgresSource(url)
