"""The store's schema, written once: every table, column and index, with the version that brought it.

Both backends keep the same rows (JSON as text), so one reader serves both. What a store of
any version lacks is derived from the ``since`` of each table, column and index, so there is
one ordered list of migrations (:func:`statements`), which the SQLite store (:mod:`.sqlite`)
and the PostgreSQL store (:mod:`.pgschema`) both apply, each in its :class:`~.dialect.Dialect`;
the column lists of inserts and of ``migrate`` are derived from here too (:func:`names`).
A new version: raise :data:`SCHEMA_VERSION`, add what it brings with ``since`` set to it.
Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass

from .dialect import Dialect

#: 2: the ``sessions`` table and the trials' ``session`` column
#: 3: the ``beats`` table (running trials' and sessions' heartbeats and progress) and the sessions' ``changed``
#: 4: the ``acceptances`` table (``python -m pytest_mitosis accept KEY``: a trial's result made the drift
#: gate's baseline), the trials' ``directions`` (which way is better per metric, as each was judged) and their
#: (experiment, identity) index on PostgreSQL too
#: 5: the trials' ``job`` (the batch job that ran a trial, e.g. a Slurm array task: written when it ends). A column
#: of the trial's own, not part of its environment record: environments are shared by digest across trials,
#: and every task of an array has another job id and maybe another node
#: 6: the trials' (experiment, started) and (experiment, identity, started) indexes: a finished trial's
#: previous trial of its experiment (the package warning) was found by sorting every trial of the
#: experiment, 5 ms a trial at 10,000 trials; the second keeps the identity's lookups off the first
SCHEMA_VERSION = 6


@dataclass(frozen=True)
class Column:
    name: str
    #: ``TEXT``, ``INTEGER``, or ``{real}`` / ``{big}`` (a float, a 64-bit integer: spelled by the dialect)
    type: str
    #: constraints: ``NOT NULL``, ``PRIMARY KEY``, ``CHECK (...)``, ``REFERENCES ...``, ``DEFAULT ...``
    rest: str = ""
    since: int = 1
    #: a trial's or session's column written when it ends (the others are inserted when it starts)
    at_end: bool = False

    @property
    def sql(self) -> str:
        """The name as SQL needs it (``"commit"`` is a keyword in both dialects)."""
        return f'"{self.name}"' if self.name in _KEYWORDS else self.name


@dataclass(frozen=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    #: table constraints (a composite primary key)
    constraints: tuple[str, ...] = ()
    since: int = 1
    #: only in the PostgreSQL store (its iteration counters)
    postgresql_only: bool = False


@dataclass(frozen=True)
class Index:
    name: str
    table: str
    columns: str
    since: int = 1
    #: a unique index; ``where``: partial (both dialects accept ``WHERE`` on an index)
    unique: bool = False
    where: str = ""


_KEYWORDS = {"commit"}


def _c(name: str, type: str, rest: str = "", since: int = 1, at_end: bool = False) -> Column:
    return Column(name, type, rest, since, at_end)


TABLES = (
    Table("meta", (_c("name", "TEXT", "PRIMARY KEY"), _c("value", "TEXT", "NOT NULL"))),
    Table("environments", (_c("digest", "TEXT", "PRIMARY KEY"), _c("environment", "TEXT", "NOT NULL"))),
    Table(
        "trials",
        (
            _c("key", "TEXT", "PRIMARY KEY"),
            _c("experiment", "TEXT", "NOT NULL"),
            _c("identity", "TEXT", "NOT NULL"),
            _c("variants", "TEXT", "NOT NULL"),
            _c("iteration", "INTEGER"),
            _c("name", "TEXT", "NOT NULL"),
            _c("nodeid", "TEXT", "NOT NULL"),
            _c("debug", "INTEGER", "NOT NULL"),
            _c("status", "TEXT", "NOT NULL CHECK (status IN ('running', 'passed', 'failed', 'interrupted'))"),
            _c("git", "TEXT", "NOT NULL"),
            _c("commit", "TEXT"),
            _c("seed", "{big}"),
            _c("environment", "TEXT", "NOT NULL REFERENCES environments (digest)"),
            _c("steps", "TEXT", "NOT NULL"),
            _c("params", "TEXT", "NOT NULL"),
            _c("started", "{real}", "NOT NULL"),
            _c("ended", "{real}", at_end=True),
            _c("main", "TEXT", at_end=True),
            _c("metrics", "TEXT", at_end=True),
            _c("folder", "TEXT", at_end=True),
            _c("message", "TEXT", at_end=True),
            _c("warnings", "TEXT", "NOT NULL DEFAULT '[]'", at_end=True),
            _c("reproduces", "TEXT"),
            _c("verdict", "TEXT", at_end=True),
            _c("host", "TEXT", "NOT NULL"),
            _c("pid", "INTEGER", "NOT NULL"),
            _c("session", "TEXT", since=2),
            _c("directions", "TEXT", since=4),
            _c("job", "TEXT", since=5, at_end=True),
        ),
    ),
    Table(
        "locks",
        (
            _c("step", "TEXT", "NOT NULL"),
            _c("param", "TEXT", "NOT NULL"),
            _c("kind", "TEXT", "NOT NULL"),
            _c("name", "TEXT", "NOT NULL"),
            _c("fingerprint", "TEXT", "NOT NULL"),
            _c("value", "TEXT", "NOT NULL"),
            _c("trial", "TEXT", "NOT NULL"),
        ),
        ("PRIMARY KEY (step, param, kind, name)",),
    ),
    Table(
        "counters",
        (_c("experiment", "TEXT", "NOT NULL"), _c("identity", "TEXT", "NOT NULL"), _c("last", "INTEGER", "NOT NULL")),
        ("PRIMARY KEY (experiment, identity)",),
        postgresql_only=True,
    ),
    Table(
        "sessions",
        (
            _c("key", "TEXT", "PRIMARY KEY"),
            _c("started", "{real}", "NOT NULL"),
            _c("ended", "{real}", at_end=True),
            _c("command", "TEXT", "NOT NULL"),
            _c("host", "TEXT", "NOT NULL"),
            _c("pid", "INTEGER", "NOT NULL"),
            _c("commit", "TEXT"),
            _c("dirty", "INTEGER", "NOT NULL"),
            _c("debug", "INTEGER", "NOT NULL"),
            _c("status", "TEXT", "NOT NULL CHECK (status IN ('running', 'ended', 'interrupted', 'died'))"),
            _c("exitstatus", "INTEGER", at_end=True),
            _c("changed", "TEXT", since=3, at_end=True),
        ),
        since=2,
    ),
    Table(
        "beats",
        (
            _c("kind", "TEXT", "NOT NULL CHECK (kind IN ('trial', 'session'))"),
            _c("key", "TEXT", "NOT NULL"),
            _c("session", "TEXT"),
            _c("host", "TEXT", "NOT NULL"),
            _c("machine", "TEXT", "NOT NULL"),
            _c("pid", "INTEGER", "NOT NULL"),
            _c("beat", "{real}", "NOT NULL"),
            _c("state", "TEXT", "NOT NULL"),
        ),
        ("PRIMARY KEY (kind, key)",),
        since=3,
    ),
    Table(
        "acceptances",
        (
            _c("trial", "TEXT", "PRIMARY KEY REFERENCES trials (key)"),
            _c("accepted", "{real}", "NOT NULL"),
            _c("accepted_by", "TEXT", "NOT NULL"),
            _c("accepted_host", "TEXT", "NOT NULL"),
            _c("reason", "TEXT", "NOT NULL"),
            _c("baseline", "TEXT"),
        ),
        since=4,
    ),
)

INDEXES = (
    # one number per (experiment, identity): NULL (a debug trial) never collides, in both dialects
    Index("trials_iteration", "trials", "experiment, identity, iteration", unique=True, where="iteration IS NOT NULL"),
    Index("trials_started", "trials", "started"),
    # version 1 of the SQLite store had it, PostgreSQL stores gain it with version 4 (IF NOT EXISTS)
    Index("trials_identity", "trials", "experiment, identity", since=4),
    Index("sessions_started", "sessions", "started", since=2),
    Index("trials_session", "trials", "session", since=2),
    # a trial's previous trial of its experiment, of its identity (the drift gate's baseline, the same inputs'
    # main): found in the index, not by sorting every trial of the experiment (schema 6)
    Index("trials_experiment_started", "trials", "experiment, started", since=6),
    Index("trials_identity_started", "trials", "experiment, identity, started", since=6),
)


def table(name: str) -> Table:
    return next(t for t in TABLES if t.name == name)


def names(name: str, at_end: bool | None = None) -> tuple[str, ...]:
    """The column names of table ``name`` in order (as a row's keys: ``commit``); with ``at_end``, only
    the columns written when a trial or session ends (``True``) or those inserted when it starts (``False``)."""
    return tuple(c.name for c in table(name).columns if at_end is None or c.at_end == at_end)


def column_list(name: str, at_end: bool | None = None) -> str:
    """:func:`names` as SQL's comma-separated column list (``"commit"`` quoted)."""
    return ", ".join(c.sql for c in table(name).columns if at_end is None or c.at_end == at_end)


def tables_of(version: int, dialect: Dialect) -> tuple[str, ...]:
    """The tables a store of ``version`` has in ``dialect``."""
    return tuple(t.name for t in TABLES if t.since <= version and (dialect.postgresql or not t.postgresql_only))


def _create(t: Table, version: int, dialect: Dialect) -> str:
    parts = [f"{c.sql} {dialect.type(c.type)} {c.rest}".rstrip() for c in t.columns if c.since <= version]
    return f"CREATE TABLE {t.name} ({', '.join([*parts, *t.constraints])})"


def _index(i: Index) -> str:
    unique = "UNIQUE " if i.unique else ""
    where = f" WHERE {i.where}" if i.where else ""
    return f"CREATE {unique}INDEX IF NOT EXISTS {i.name} ON {i.table} ({i.columns}){where}"


def statements(dialect: Dialect, version: int = 0) -> list[str]:
    """What a store of ``version`` needs to become a store of :data:`SCHEMA_VERSION` (``0``: an empty
    database), in order: the migrations of each later version, one version at a time (its new
    tables with the columns they had then, its new columns on older tables, its indexes)."""
    if version == 0:  # a new store: every table as it is now, then every index
        made = [_create(t, SCHEMA_VERSION, dialect) for t in TABLES if t.name in tables_of(SCHEMA_VERSION, dialect)]
        return made + [_index(i) for i in INDEXES]
    done: list[str] = []
    for step in range(version + 1, SCHEMA_VERSION + 1):
        for t in TABLES:
            if t.name not in tables_of(SCHEMA_VERSION, dialect):
                continue
            if t.since == step:
                done.append(_create(t, step, dialect))
            elif t.since < step:
                done += [
                    f"ALTER TABLE {t.name} ADD COLUMN {c.sql} {dialect.type(c.type)} {c.rest}".rstrip()
                    for c in t.columns
                    if c.since == step
                ]
        done += [_index(i) for i in INDEXES if i.since == step]
    return done
