"""The columns of the tables both backends hold, written once, in each backend's types.

The SQLite store (:mod:`.sqlschema`) and the PostgreSQL store (:mod:`.pgschema`) keep the same
rows (JSON as text), so one reader serves both; only two types are spelled differently: a
float (``REAL`` / ``DOUBLE PRECISION``) and a 64-bit integer (a seed: ``INTEGER`` / ``BIGINT``).
Each schema module adds what is its own: ``IF NOT EXISTS``, indexes, constraints, PostgreSQL's
``counters``. Standard library only.
"""

from __future__ import annotations

_COLUMNS = {
    "trials": """
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
    seed {big},
    environment TEXT NOT NULL REFERENCES environments (digest),
    steps TEXT NOT NULL,
    params TEXT NOT NULL,
    started {real} NOT NULL,
    ended {real},
    main TEXT,
    metrics TEXT,
    folder TEXT,
    message TEXT,
    warnings TEXT NOT NULL DEFAULT '[]',
    reproduces TEXT,
    verdict TEXT,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    session TEXT""",
    "locks": """
    step TEXT NOT NULL,
    param TEXT NOT NULL,
    kind TEXT NOT NULL,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    value TEXT NOT NULL,
    trial TEXT NOT NULL,
    PRIMARY KEY (step, param, kind, name)""",
    "sessions": """
    key TEXT PRIMARY KEY,
    started {real} NOT NULL,
    ended {real},
    command TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    "commit" TEXT,
    dirty INTEGER NOT NULL,
    debug INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('running', 'ended', 'interrupted', 'died')),
    exitstatus INTEGER,
    changed TEXT""",
    "beats": """
    kind TEXT NOT NULL CHECK (kind IN ('trial', 'session')),
    key TEXT NOT NULL,
    session TEXT,
    host TEXT NOT NULL,
    machine TEXT NOT NULL,
    pid INTEGER NOT NULL,
    beat {real} NOT NULL,
    state TEXT NOT NULL,
    PRIMARY KEY (kind, key)""",
    "acceptances": """
    trial TEXT PRIMARY KEY REFERENCES trials (key),
    accepted {real} NOT NULL,
    accepted_by TEXT NOT NULL,
    accepted_host TEXT NOT NULL,
    reason TEXT NOT NULL,
    baseline TEXT""",
}

#: each backend's spelling of a float and of a 64-bit integer
SQLITE = {"real": "REAL", "big": "INTEGER"}
POSTGRESQL = {"real": "DOUBLE PRECISION", "big": "BIGINT"}


def columns(table: str, types: dict[str, str]) -> str:
    """The column definitions of ``table`` (a key of the tables above) in a backend's ``types``."""
    return _COLUMNS[table].format(**types)
