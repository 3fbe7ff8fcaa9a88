"""Read the trial store back: records as plain objects, keys by unique prefix, values decoded.

Used by the command line (``python -m pytest_mitosis``) and the Python API. It only reads:
it never creates a store, never unpickles and never imports user code (recorded values come
back from their canonical JSON form). No pytest import here.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import sys
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import MitosisError
from .file import FILENAME, SCHEMA_VERSION


class RecordsError(MitosisError):
    """No store where expected, or a key that matches no trial or several."""


#: a trial key as ``runner.new_key`` draws it; anything else in a store was not written by us
KEY = re.compile(r"^[0-9a-f]{8}$")
#: a git object name (abbreviated or full, SHA-1 or SHA-256)
COMMIT = re.compile(r"^[0-9a-f]{7,64}$")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def printable(text: str) -> str:
    """``text`` without control characters (kept: newline and tab), for a terminal.

    A store is a file a colleague can hand you: a recorded name holding an escape
    sequence must not move the cursor, retitle the terminal or hide text.
    """
    return _CONTROL.sub("?", text)


def valid_key(key: object) -> bool:
    return isinstance(key, str) and KEY.match(key) is not None


def valid_commit(commit: object) -> bool:
    return isinstance(commit, str) and COMMIT.match(commit) is not None


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

    def __repr__(self) -> str:
        main = repr(self.main)
        main = main if len(main) <= 40 else main[:37] + "..."
        extra = f", reproduces={self.reproduces!r}" if self.reproduces else ""
        return (
            f"TrialRecord(key={self.key!r}, name={self.name!r}, experiment={self.experiment!r}, "
            f"status={self.status!r}, main={main}, started={self.started.isoformat(timespec='seconds')!r}{extra})"
        )

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
            row = {
                k: v for k, v in record.to_dict().items() if k not in ("params", "steps", "git", "warnings", "identity")
            }
            row.pop("metrics")
            row["started"], row["ended"] = record.started, record.ended
            row.update({f"metrics.{k}": v for k, v in record.metrics.items()})
            row.update(
                {
                    f"{p['step']}.{p['name']}": p.get("text") if p["kind"] != "seed" else p.get("value")
                    for p in record.params
                }
            )
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
        if self.path.is_dir():
            raise RecordsError(
                f"{self.path} is a directory, not a trial store; pass --trials-folder DIR for another folder."
            )
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
            self._db.close()
            raise RecordsError(f"{self.path}: cannot be read as a trial store ({err}).") from None
        if row is not None and int(row[0]) > SCHEMA_VERSION:
            raise RecordsError(
                f"{self.path} has schema version {row[0]}, written by a newer pytest-mitosis; this one reads version "
                f"{SCHEMA_VERSION}. Upgrade pytest-mitosis (pip install -U pytest-mitosis)."
            )

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def artifacts(self, record: TrialRecord) -> Path | None:
        """The trial's artifact folder, only ever inside this trials folder (``None`` if not there).

        A recorded path outside the folder is not followed (a crafted store could point at
        ``/root``); a trials folder copied or moved elsewhere is found by the folder's name.
        """
        if not record.folder or not isinstance(record.folder, str) or "\x00" in record.folder:
            return None
        base = self.folder.resolve()
        recorded = Path(record.folder)
        candidates = [recorded] if recorded.is_absolute() else [base / recorded]
        if recorded.name not in ("", ".", ".."):
            candidates += [base / recorded.name, base / "debug" / recorded.name]
        for candidate in candidates:
            try:
                resolved = candidate.resolve()
            except (OSError, RuntimeError):
                continue
            if base in resolved.parents and resolved.is_dir():
                return resolved
        return None

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

    def _record(self, row: sqlite3.Row) -> TrialRecord:
        git = json.loads(row["git"])
        return TrialRecord(
            key=row["key"],
            experiment=row["experiment"],
            identity=row["identity"],
            variants=row["variants"],
            iteration=row["iteration"],
            name=row["name"],
            status=row["status"],
            debug=bool(row["debug"]),
            main=json.loads(row["main"]) if row["main"] is not None else None,
            metrics=json.loads(row["metrics"]) if row["metrics"] else {},
            seed=row["seed"],
            commit=row["commit"],
            git=git,
            started=_when(row["started"]) or datetime.now(),
            ended=_when(row["ended"]),
            folder=row["folder"],
            message=row["message"],
            warnings=json.loads(row["warnings"] or "[]"),
            steps=json.loads(row["steps"]),
            params=json.loads(row["params"]),
            reproduces=row["reproduces"],
            verdict=row["verdict"],
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
        """The newest passed, non-debug original trial of every identity (reproductions are left out)."""
        seen: set[tuple[str, str]] = set()
        found = TrialRecords()
        for record in self.trials(experiment):
            if (
                record.reproduces is None
                and record.status == "passed"
                and (record.experiment, record.identity) not in seen
            ):
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
            raise RecordsError(
                printable(f"no trial has a key starting with {prefix!r} in {self.path}. The newest trials:\n{listing}")
            )
        listing = "\n".join(f"  {r['key']}  {r['name']}" for r in rows[:20])
        raise RecordsError(
            printable(f"the key prefix {prefix!r} matches {len(rows)} trials; give more characters:\n{listing}")
        )

    def environment(self, record: TrialRecord) -> dict[str, Any]:
        """The trial's environment record (read once per distinct environment)."""
        digest = record.environment_digest
        if digest not in self._environments:
            row = self._db.execute("SELECT environment FROM environments WHERE digest = ?", (digest,)).fetchone()
            self._environments[digest] = json.loads(row[0]) if row else {}
        return self._environments[digest]


def new_file(directory: Path, prefix: str) -> tuple[int, str]:
    """A new, exclusively created file in ``directory``, with the permissions the umask gives.

    ``tempfile.mkstemp`` makes files mode 0600, which hides a shared trials folder's report
    and backups from colleagues; every other file pytest-mitosis writes respects the umask.
    """
    import secrets

    for _ in range(100):
        path = os.path.join(directory, f"{prefix}{secrets.token_hex(6)}.tmp")
        try:
            return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), path
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name in {directory}")


def decode(tree: Any) -> Any:
    """A recorded canonical tree back to a Python value, without importing user code.

    Containers, numbers, strings, sets and (when numpy is importable and the elements were
    kept) arrays come back as themselves; references to functions or classes come back as
    their ``"module:qualname"`` string; objects as ``{"type": ..., **their fields}``.
    """
    if isinstance(tree, list):
        return [decode(v) for v in tree]
    if not isinstance(tree, dict) or len(tree) != 1:
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
    if tag == "const":  # the builtin singletons: the very objects, not their names
        return {"Ellipsis": ..., "NotImplemented": NotImplemented}.get(payload, payload)
    if tag in ("repr", "path", "strlike"):
        return payload["value"]
    if tag == "sequence":
        return [decode(v) for v in payload["items"]]
    if tag == "method":
        return {"method": payload["name"], "self": decode(payload["self"])}
    if tag == "bytes":
        import base64

        return base64.b64decode(payload)
    if tag in ("dataclass", "namedtuple", "object", "estimator"):
        fields = payload.get("fields") or payload.get("state") or payload.get("params") or {}
        if isinstance(fields, dict) and len(fields) == 1 and "dict" in fields:
            fields = decode(fields)
        return {"type": payload["type"], **{k: decode(v) for k, v in fields.items()}}
    if tag == "partial":
        return {
            "partial": decode(payload["func"]),
            "args": decode(payload["args"]),
            "keywords": decode(payload["keywords"]),
        }
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
