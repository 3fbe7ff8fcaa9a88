"""The PostgreSQL store's tables, and their creation once, under an advisory lock.

The same tables as the SQLite store (JSON kept as text, so one reader serves both), plus
``counters`` (the last iteration of each experiment and identity). ``create_schema`` takes a
transaction-scoped advisory lock first, so ten sessions starting at once on an empty database
create the tables once; an existing schema is checked (version, tables) and never rewritten
(an older store only gains what later versions brought: :func:`~.tables.statements`),
and tables of the same names that another program made are refused, untouched. No pytest import.
"""

from __future__ import annotations

from typing import Any

from ..identity.locks import Lock
from .dialect import POSTGRESQL
from .protocol import StoreError
from .tables import SCHEMA_VERSION, statements, tables_of
from .url import StoreURL

#: pg_advisory_xact_lock key for schema creation ("mitosis" in ASCII)
SCHEMA_LOCK = 0x6D69746F736973

#: every table of the current version
TABLES = tables_of(SCHEMA_VERSION, POSTGRESQL)


def lock_order(lock: Lock) -> tuple[str, str, str, str]:
    return (lock.step, lock.param, lock.kind, lock.name)


def create_schema(db: Any, url: StoreURL) -> None:
    """Create the tables of an empty database once (advisory lock), or check an existing schema's version."""
    with db.transaction():
        db.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK,))
        found = {
            row[0]
            for row in db.execute(
                "SELECT tablename FROM pg_catalog.pg_tables WHERE schemaname = current_schema()"  # whatever the grants
            )
        }
        if "meta" in found:
            row = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
            version = int(row[0]) if row and str(row[0]).isdigit() else None
            if version is not None and version > SCHEMA_VERSION:
                raise StoreError(
                    f"mitosis: the trial store {url} has schema version {version}, written by a newer "
                    f"pytest-mitosis; this one knows version {SCHEMA_VERSION}. Upgrade pytest-mitosis "
                    "(pip install -U pytest-mitosis); the store was left as it is."
                )
            missing = [t for t in tables_of(version or SCHEMA_VERSION, POSTGRESQL) if t not in found]
            if version is None or missing:
                raise StoreError(
                    f"mitosis: the trial store {url} cannot be used: "
                    f"{'the tables ' + ', '.join(missing) if missing else 'its schema version'} "
                    "missing (damaged, or edited by hand); nothing was written to it. Restore it from a backup "
                    "(pg_dump), or point --mitosis-store at a new database."
                )
            if (
                version < SCHEMA_VERSION
            ):  # an older store gains what it lacks, in this transaction; nothing else changes
                for statement in statements(POSTGRESQL, version):
                    db.execute(statement)
                db.execute("UPDATE meta SET value=%s WHERE name='schema_version'", (str(SCHEMA_VERSION),))
            return
        taken = sorted(t for t in TABLES if t in found)
        if taken:
            raise StoreError(
                f"mitosis: the database {url} already has tables named {', '.join(taken)} that pytest-mitosis did "
                "not create; nothing was written to it. Give pytest-mitosis a database of its own "
                "(createdb mitosis) and point --mitosis-store at it."
            )
        for statement in statements(POSTGRESQL):
            db.execute(statement)
        db.execute("INSERT INTO meta (name, value) VALUES ('schema_version', %s)", (str(SCHEMA_VERSION),))
