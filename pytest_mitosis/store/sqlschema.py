"""The SQLite store's tables (see :mod:`.sqlite`), and what an older store gains when a session opens it.

``SCHEMA`` creates whatever is missing (``IF NOT EXISTS``), so it serves a new store and, after
the ``UPGRADE`` statements of each older version, an existing one; the columns are those of
the PostgreSQL tables in :mod:`.pgschema` (:mod:`.tables`). Standard library only.
"""

from __future__ import annotations

from .tables import SQLITE, columns

#: every table and index of the current schema version (``store.file.SCHEMA_VERSION``)
SCHEMA = f"""
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS trials ({columns("trials", SQLITE)}
);
CREATE UNIQUE INDEX IF NOT EXISTS trials_iteration ON trials (experiment, identity, iteration)
    WHERE iteration IS NOT NULL;
CREATE INDEX IF NOT EXISTS trials_started ON trials (started);
CREATE INDEX IF NOT EXISTS trials_identity ON trials (experiment, identity);
CREATE TABLE IF NOT EXISTS environments (digest TEXT PRIMARY KEY, environment TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS locks ({columns("locks", SQLITE)}
);
CREATE TABLE IF NOT EXISTS sessions ({columns("sessions", SQLITE)}
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started);
CREATE INDEX IF NOT EXISTS trials_session ON trials (session);
CREATE TABLE IF NOT EXISTS beats ({columns("beats", SQLITE)}
);
CREATE TABLE IF NOT EXISTS acceptances ({columns("acceptances", SQLITE)}
);
"""
#: what a store of version N (the key) needs before ``SCHEMA`` completes it: version 1 predates sessions
#: (``SCHEMA`` creates them, with every column), version 2 the sessions' ``changed`` column (and the beats);
#: version 3 lacks only the ``acceptances`` table, which ``SCHEMA`` creates
UPGRADE = {1: ("ALTER TABLE trials ADD COLUMN session TEXT",), 2: ("ALTER TABLE sessions ADD COLUMN changed TEXT",)}
