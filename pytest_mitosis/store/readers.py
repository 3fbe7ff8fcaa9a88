"""Read the trial store back: records as plain objects, keys by unique prefix, values decoded.

Used by the command line (``python -m pytest_mitosis``) and the Python API. It only reads:
it never creates a store, never unpickles and never imports user code (recorded values come
back from their canonical JSON form). No pytest import here.
"""

from __future__ import annotations

import json
import sqlite3
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import MitosisError
from .sqlite import FILENAME, SCHEMA_VERSION


class RecordsError(MitosisError):
    """No store where expected, or a key that matches no trial or several."""


def default_trials_folder(start: Path | None = None) -> Path:
    """The trials folder of the pyproject.toml in ``start`` (the current directory by default)."""
    from ..config.project import DEFAULT_TRIALS_FOLDER, tomllib

    here = (start or Path.cwd()).resolve()
    pyproject = here / "pyproject.toml"
    folder = DEFAULT_TRIALS_FOLDER
    if pyproject.is_file():
        try:
            with pyproject.open("rb") as stream:
                table = tomllib.load(stream).get("tool", {}).get("mitosis", {})
        except (OSError, tomllib.TOMLDecodeError) as err:
            raise RecordsError(f"{pyproject}: cannot be read ({err}); pass --trials-folder DIR.") from None
        folder = str(table.get("trials-folder", folder))
    return (here / folder).resolve()


@dataclass(frozen=True)
class TrialRecord:
    """One trial as recorded (values decoded from the store's JSON, never unpickled)."""

    key: str
    experiment: str
    identity: str
    variants: str
    iteration: int | None
    name: str
    status: str
    debug: bool
    main: Any
    metrics: dict[str, Any]
    seed: int | None
    commit: str | None
    git: dict[str, Any]
    started: datetime
    ended: datetime | None
    folder: str | None
    message: str | None
    warnings: list[str]
    steps: list[dict[str, Any]]
    params: list[dict[str, Any]]
    reproduces: str | None = None
    verdict: str | None = None
    environment_digest: str = field(repr=False, default="")

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started"] = self.started.isoformat(timespec="seconds")
        data["ended"] = self.ended.isoformat(timespec="seconds") if self.ended else None
        return data


class TrialRecords(list["TrialRecord"]):
    """A list of ``TrialRecord`` with ``to_dataframe()`` when pandas is installed."""

    def to_dataframe(self) -> Any:
        try:
            import pandas
        except ImportError:
            raise RecordsError("to_dataframe() needs pandas, which is not installed: pip install pandas") from None
        rows = []
        for record in self:
            row = {k: v for k, v in record.to_dict().items() if k not in ("params", "steps", "git", "warnings", "identity")}
            row.pop("metrics")
            row["started"], row["ended"] = record.started, record.ended
            row.update({f"metrics.{k}": v for k, v in record.metrics.items()})
            row.update({f"{p['step']}.{p['name']}": p.get("text") if p["kind"] != "seed" else p.get("value")
                        for p in record.params})
            rows.append(row)
        return pandas.DataFrame(rows)


def _when(value: float | None) -> datetime | None:
    return datetime.fromtimestamp(value) if value is not None else None


class Reader:
    """Read-only access to ``<folder>/mitosis.sqlite``."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.path = folder / FILENAME
        self._environments: dict[str, dict[str, Any]] = {}
        if not self.path.is_file():
            raise RecordsError(
                f"no trial store at {self.path}. Run trials with pytest --mitosis first, or pass --trials-folder DIR "
                "(trials_folder=...) pointing at a trials folder."
            )
        try:
            self._db = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)
            self._db.row_factory = sqlite3.Row
            self._db.execute("SELECT 1 FROM trials LIMIT 1").fetchall()
            row = self._db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone()
        except sqlite3.DatabaseError as err:
            raise RecordsError(f"{self.path}: cannot be read as a trial store ({err}).") from None
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise RecordsError(
                f"{self.path} has schema version {row[0]}, written by a newer pytest-mitosis; this one reads version "
                f"{SCHEMA_VERSION}. Upgrade pytest-mitosis (pip install -U pytest-mitosis)."
            )

    def _record(self, row: sqlite3.Row) -> TrialRecord:
        git = json.loads(row["git"])
        return TrialRecord(
            key=row["key"], experiment=row["experiment"], identity=row["identity"], variants=row["variants"],
            iteration=row["iteration"],
            name=row["name"], status=row["status"], debug=bool(row["debug"]),
            main=json.loads(row["main"]) if row["main"] is not None else None,
            metrics=json.loads(row["metrics"]) if row["metrics"] else {},
            seed=row["seed"], commit=row["commit"], git=git, started=_when(row["started"]) or datetime.now(),
            ended=_when(row["ended"]), folder=row["folder"], message=row["message"],
            warnings=json.loads(row["warnings"] or "[]"), steps=json.loads(row["steps"]),
            params=json.loads(row["params"]), reproduces=row["reproduces"], verdict=row["verdict"],
            environment_digest=row["environment"],
        )

    def trials(self, experiment: str | None = None, debug: bool = False) -> TrialRecords:
        """Records newest first; debug trials only when asked for."""
        sql = "SELECT * FROM trials WHERE (? OR debug = 0)"
        args: list[Any] = [int(debug)]
        if experiment is not None:
            sql += " AND experiment = ?"
            args.append(experiment)
        rows = self._db.execute(sql + " ORDER BY started DESC", args).fetchall()
        return TrialRecords(self._record(r) for r in rows)

    def latest(self, experiment: str | None = None) -> TrialRecords:
        """The newest passed, non-debug trial of every identity (of one experiment, or of all)."""
        seen: set[tuple[str, str]] = set()
        found = TrialRecords()
        for record in self.trials(experiment):
            if record.status == "passed" and (record.experiment, record.identity) not in seen:
                seen.add((record.experiment, record.identity))
                found.append(record)
        return found

    def experiments(self) -> list[str]:
        return [row[0] for row in self._db.execute("SELECT DISTINCT experiment FROM trials ORDER BY experiment")]

    def get(self, prefix: str) -> TrialRecord:
        """The trial whose key starts with ``prefix``; errors list the candidates."""
        rows = self._db.execute(
            "SELECT * FROM trials WHERE key LIKE ? ESCAPE '\\' ORDER BY started DESC",
            (prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%",),
        ).fetchall()
        if len(rows) == 1:
            return self._record(rows[0])
        if not rows:
            recent = self._db.execute("SELECT key, name FROM trials ORDER BY started DESC LIMIT 10").fetchall()
            listing = "\n".join(f"  {r['key']}  {r['name']}" for r in recent) or "  (the store has no trials)"
            raise RecordsError(f"no trial has a key starting with {prefix!r} in {self.path}. The newest trials:\n{listing}")
        listing = "\n".join(f"  {r['key']}  {r['name']}" for r in rows[:20])
        raise RecordsError(f"the key prefix {prefix!r} matches {len(rows)} trials; give more characters:\n{listing}")

    def environment(self, record: TrialRecord) -> dict[str, Any]:
        """The trial's environment record (read once per distinct environment)."""
        digest = record.environment_digest
        if digest not in self._environments:
            row = self._db.execute("SELECT environment FROM environments WHERE digest = ?", (digest,)).fetchone()
            self._environments[digest] = json.loads(row[0]) if row else {}
        return self._environments[digest]


def decode(tree: Any) -> Any:
    """A recorded canonical tree back to a Python value, without importing user code.

    Containers, numbers, strings, sets and (when numpy is importable and the elements were
    kept) arrays come back as themselves; references to functions or classes come back as
    their ``"module:qualname"`` string; objects as ``{"type": ..., **their fields}``.
    """
    if isinstance(tree, list):
        return [decode(v) for v in tree]
    if not isinstance(tree, dict):
        return tree
    tag, payload = next(iter(tree.items()))
    if tag == "tuple":
        return tuple(decode(v) for v in payload)
    if tag.startswith("dict"):
        return {_hashable(decode(k)): decode(v) for k, v in payload}
    if tag == "set":
        return {_hashable(decode(v)) for v in payload}
    if tag == "frozenset":
        return frozenset(_hashable(decode(v)) for v in payload)
    if tag == "float":
        return float(payload)
    if tag in ("floatlike", "intlike"):
        return payload["value"] if tag == "intlike" else float(payload["value"])
    if tag == "ndarray":
        if "items" in payload and _numpy():
            numpy = sys.modules["numpy"]
            return numpy.array([decode(v) for v in payload["items"]], dtype=payload["dtype"]).reshape(payload["shape"])
        return {"ndarray": payload}  # too large to keep its elements: its digest, dtype and shape
    if tag == "numpy":
        return decode(payload["value"])
    if tag in ("ref", "enum"):
        return payload
    if tag in ("repr", "path"):
        return payload["value"]
    if tag == "bytes":
        import base64

        return base64.b64decode(payload)
    if tag in ("dataclass", "namedtuple", "object", "estimator"):
        fields = payload.get("fields") or payload.get("state") or payload.get("params") or {}
        if isinstance(fields, dict) and len(fields) == 1 and "dict" in fields:
            fields = decode(fields)
        return {"type": payload["type"], **{k: decode(v) for k, v in fields.items()}}
    if tag == "partial":
        return {"partial": decode(payload["func"]), "args": decode(payload["args"]), "keywords": decode(payload["keywords"])}
    return tree


def _numpy() -> bool:
    try:
        import numpy  # noqa: F401
    except ImportError:
        return False
    return True


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value
