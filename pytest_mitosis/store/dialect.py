"""What SQLite and PostgreSQL spell differently, in one place.

The store's SQL is written once, in SQLite's dialect (``?`` placeholders, ``IS ?`` for "equal,
NULL included"); :meth:`Dialect.sql` turns it into PostgreSQL's (``%s``, ``IS NOT DISTINCT
FROM %s``) for the PostgreSQL store, its readers and ``migrate``. The schema
(:mod:`.tables`) spells two types through it: a float (``REAL`` / ``DOUBLE PRECISION``) and a
64-bit integer (a seed: ``INTEGER`` / ``BIGINT``). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Dialect:
    name: str
    real: str
    big: str

    @property
    def postgresql(self) -> bool:
        return self.name == "postgresql"

    def type(self, spelled: str) -> str:
        """A column type of :mod:`.tables` (``{real}``, ``{big}`` or a type both spell alike) in this dialect."""
        return spelled.format(real=self.real, big=self.big)

    def sql(self, sql: str) -> str:
        """A query written in SQLite's dialect, in this one."""
        if not self.postgresql:
            return sql
        return sql.replace(" IS ?", " IS NOT DISTINCT FROM ?").replace("?", "%s")


SQLITE = Dialect("sqlite", "REAL", "INTEGER")
POSTGRESQL = Dialect("postgresql", "DOUBLE PRECISION", "BIGINT")
