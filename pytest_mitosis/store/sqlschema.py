"""The SQLite store's tables (see :mod:`.sqlite`), and what an older store gains when a session opens it.

``SCHEMA`` creates whatever is missing (``IF NOT EXISTS``), so it serves a new store and, after
the ``UPGRADE`` statements of each older version, an existing one; the PostgreSQL tables in
:mod:`.pgschema` are the same. Standard library only.
"""

from __future__ import annotations

#: every table and index of the current schema version (``store.file.SCHEMA_VERSION``)
SCHEMA = """
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
    pid INTEGER NOT NULL,
    session TEXT
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
CREATE TABLE IF NOT EXISTS sessions (
    key TEXT PRIMARY KEY,
    started REAL NOT NULL,
    ended REAL,
    command TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    "commit" TEXT,
    dirty INTEGER NOT NULL,
    debug INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ended', 'interrupted', 'died')),
    exitstatus INTEGER
);
CREATE INDEX IF NOT EXISTS sessions_started ON sessions (started);
CREATE INDEX IF NOT EXISTS trials_session ON trials (session);
"""
#: what a store of version N (the key) needs before ``SCHEMA`` completes it: version 1 predates sessions
UPGRADE = {1: "ALTER TABLE trials ADD COLUMN session TEXT"}
