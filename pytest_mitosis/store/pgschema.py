"""The PostgreSQL store's tables, and their creation once, under an advisory lock.

The same tables as the SQLite store (JSON kept as text, so one reader serves both), plus
``counters`` (the last iteration of each experiment and identity). ``create_schema`` takes a
transaction-scoped advisory lock first, so ten sessions starting at once on an empty database
create the tables once; an existing schema is checked (version, tables) and never rewritten
(a version-1 store only gains the ``sessions`` table and the trials' ``session`` column, a version-2
store the ``beats`` table and the sessions' ``changed`` column, a version-3 store the ``acceptances``),
and tables of the same names that another program made are refused, untouched. No pytest import.
"""

from __future__ import annotations

from typing import Any

from ..identity.locks import Lock
from .file import SCHEMA_VERSION
from .protocol import StoreError
from .tables import POSTGRESQL, columns
from .url import StoreURL

#: pg_advisory_xact_lock key for schema creation ("mitosis" in ASCII)
SCHEMA_LOCK = 0x6D69746F736973

TABLES = ("meta", "environments", "trials", "locks", "counters", "sessions", "beats", "acceptances")
#: the tables of a store of each older version: version 1 predates sessions, version 2 the beats,
#: version 3 the acceptances
OLDER_TABLES = {1: TABLES[:-3], 2: TABLES[:-2], 3: TABLES[:-1]}
_SCHEMA = f"""
CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE environments (digest TEXT PRIMARY KEY, environment TEXT NOT NULL);
CREATE TABLE trials ({columns("trials", POSTGRESQL)},
    CONSTRAINT trials_iteration UNIQUE (experiment, identity, iteration)
);
CREATE INDEX trials_started ON trials (started);
CREATE TABLE locks ({columns("locks", POSTGRESQL)}
);
CREATE TABLE counters (
    experiment TEXT NOT NULL,
    identity TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (experiment, identity)
);
CREATE TABLE sessions ({columns("sessions", POSTGRESQL)}
);
CREATE INDEX sessions_started ON sessions (started);
CREATE INDEX trials_session ON trials (session);
CREATE TABLE beats ({columns("beats", POSTGRESQL)}
);
CREATE TABLE acceptances ({columns("acceptances", POSTGRESQL)}
)
"""
#: from where ``CREATE TABLE sessions`` starts: what a version-1 store lacks, besides the trials' column
_SESSIONS = _SCHEMA[_SCHEMA.index("CREATE TABLE sessions") :]
#: what a version-2 store lacks, besides the sessions' column
_BEATS = _SCHEMA[_SCHEMA.index("CREATE TABLE beats") :]
#: what a version-3 store lacks
_ACCEPTANCES = _SCHEMA[_SCHEMA.index("CREATE TABLE acceptances") :]
#: what each older version needs: the columns its tables lack, then the tables (each slice runs to the end)
_UPGRADES = {
    1: ("ALTER TABLE trials ADD COLUMN session TEXT", _SESSIONS),
    2: ("ALTER TABLE sessions ADD COLUMN changed TEXT", _BEATS),
    3: (_ACCEPTANCES,),
}


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
            missing = [t for t in OLDER_TABLES.get(version or 0, TABLES) if t not in found]
            if version is None or missing:
                raise StoreError(
                    f"mitosis: the trial store {url} cannot be used: "
                    f"{'the tables ' + ', '.join(missing) if missing else 'its schema version'} "
                    "missing (damaged, or edited by hand); nothing was written to it. Restore it from a backup "
                    "(pg_dump), or point --mitosis-store at a new database."
                )
            if version in OLDER_TABLES:  # an older store gains what it lacks, in this transaction; nothing else changes
                for part in _UPGRADES[version]:
                    for statement in filter(str.strip, part.split(";")):
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
        for statement in filter(str.strip, _SCHEMA.split(";")):
            db.execute(statement)
        db.execute("INSERT INTO meta (name, value) VALUES ('schema_version', %s)", (str(SCHEMA_VERSION),))
