"""What a reader hands out, whatever the backend: ``TrialRecord`` objects and decoded values.

The record types, the decoding of recorded canonical trees back to Python values (never by
unpickling or importing user code), and the small checks every view applies to what a store
holds (keys, commits, printable text). Standard library only; no pytest, no database.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..core.errors import MitosisError
from ..core.rules import failure_kind, measured


class RecordsError(MitosisError):
    """No store where expected, or a key that matches no trial or several."""


class NoMatch(RecordsError):
    """A key prefix that matches no trial (``show`` then looks for a session with it)."""


#: a trial key as ``runner.new_key`` draws it; anything else in a store was not written by us
KEY = re.compile(r"^[0-9a-f]{8}\Z")  # \Z: "$" would let a trailing newline through
#: a git object name (abbreviated or full, SHA-1 or SHA-256)
COMMIT = re.compile(r"^[0-9a-f]{7,64}\Z")
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


#: ``WHERE key LIKE ? ESCAPE '\\'``: with :func:`key_prefix`, the rows whose key starts with a prefix
KEY_PREFIX = "key LIKE ? ESCAPE '\\'"


def key_prefix(prefix: str) -> str:
    """The ``LIKE`` pattern of keys starting with ``prefix``: keys are lower-case hex, and SQLite's ``LIKE``
    ignores case where PostgreSQL's does not; ``%``, ``_`` and ``\\`` typed by a user match themselves."""
    return prefix.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def printable(text: str) -> str:
    """``text`` without control characters (kept: newline and tab), for a terminal.

    A store is a file a colleague can hand you: a recorded name holding an escape
    sequence must not move the cursor, retitle the terminal or hide text.
    """
    return _CONTROL.sub("?", text)


#: the escapes of :func:`cell` that Python's ``repr`` writes by name
_NAMED = {"\n": "\\n", "\t": "\\t", "\r": "\\r"}


def cell(value: object) -> str:
    """``value`` as one terminal cell: on one line, every character visible, as Python's ``repr`` writes it, unquoted.

    Every table cell and every recorded value after a label in a terminal view passes here. A
    newline or a tab printed raw would split a row or add a fake one (a crafted store row's
    name ``x\\n2026-01-01  fake  passed``), an escape sequence would move the cursor or
    retitle the terminal, a bidi override or zero-width character would hide text; so each
    character Python does not call printable prints as its escape (``\\n``, ``\\t``,
    ``\\x1b``, ``\\u202e``). Letters of every script stay as they are, and so does a
    backslash: what ``repr`` or ``json.dumps`` already escaped passes unchanged (``cell`` of a
    cell is the cell), so a view may pass any text here without showing it escaped twice.
    """
    text = value if isinstance(value, str) else str(value)
    if text.isprintable():
        return text
    return "".join(_NAMED.get(c) or (c if c.isprintable() else _escape(c)) for c in text)


def _escape(char: str) -> str:
    code = ord(char)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def trial_state(status: object, verdict: object, folder: object, accepted: bool = False) -> str:
    """What of a trial changes after it is recorded (it ends, is judged, its folder moves into place), as one text.

    :meth:`Reader.states` reads it for every trial without decoding a record, so a view that
    keeps what it showed (the report's summaries) reads again only the trials whose state changed.
    """
    return f"{status}\x1f{verdict}\x1f{folder}" + ("\x1faccepted" if accepted else "")


def valid_key(key: object) -> bool:
    return isinstance(key, str) and KEY.match(key) is not None


def valid_commit(commit: object) -> bool:
    return isinstance(commit, str) and COMMIT.match(commit) is not None


def _table(here: Path) -> dict[str, Any]:
    """``[tool.mitosis]`` of ``here/pyproject.toml`` (empty when there is none)."""
    from ..config.project import tomllib

    pyproject = here / "pyproject.toml"
    if not pyproject.is_file():
        return {}
    try:
        with pyproject.open("rb") as stream:
            table = tomllib.load(stream).get("tool", {}).get("mitosis", {})
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise RecordsError(f"{pyproject}: cannot be read ({err}); pass --trials-folder DIR.") from None
    return table if isinstance(table, dict) else {}


def default_trials_folder(start: Path | None = None) -> Path:
    """The trials folder of the pyproject.toml in ``start`` (the current directory by default)."""
    from ..config.project import DEFAULT_TRIALS_FOLDER

    here = (start or Path.cwd()).resolve()
    return (here / str(_table(here).get("trials-folder", DEFAULT_TRIALS_FOLDER))).resolve()


def default_store(start: Path | None = None) -> str | None:
    """``store`` of ``[tool.mitosis]`` in ``start/pyproject.toml`` (a relative SQLite path made absolute), if any."""
    from ..config.settings import absolute_store

    here = (start or Path.cwd()).resolve()
    store = _table(here).get("store")
    return absolute_store(store.strip(), here) if isinstance(store, str) and store.strip() else None


@dataclass(frozen=True)
class Accepted:
    """When, by whom and why a trial that failed the drift gate was made its baseline."""

    at: datetime
    by: str
    host: str
    reason: str
    #: the baseline it replaced, if the identity had one
    baseline: str | None = None


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
    #: the key of the pytest session that ran it (``None`` for trials recorded before sessions were)
    session: str | None = None
    environment_digest: str = field(repr=False, default="")
    #: made the drift gate's baseline after failing it (``python -m pytest_mitosis accept KEY``)
    accepted: Accepted | None = None
    #: which way was better per metric when it ran, as :meth:`~..core.rules.Directions.to_json` wrote it
    #: (``None`` for a trial recorded before directions were, schema 4)
    directions: dict[str, Any] | None = None
    #: the batch job that ran it (a Slurm array task: executor, job, array_job, task, node, partition,
    #: allocation, restarts, state; see ``store.JOB_FIELDS``), ``None`` for a trial that ran in the session's
    #: own processes, or recorded before jobs were (schema 5)
    job: dict[str, Any] | None = None

    def __repr__(self) -> str:
        main = repr(self.main)
        main = main if len(main) <= 40 else main[:37] + "..."
        extra = f", reproduces={self.reproduces!r}" if self.reproduces else ""
        return (
            f"TrialRecord(key={self.key!r}, name={self.name!r}, experiment={self.experiment!r}, "
            f"status={self.status!r}, main={main}, started={self.started.isoformat(timespec='seconds')!r}{extra})"
        )

    @property
    def state(self) -> str:
        """:func:`trial_state` of this record."""
        return trial_state(self.status, self.verdict, self.folder, self.accepted is not None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["started"] = self.started.isoformat(timespec="seconds")
        data["ended"] = self.ended.isoformat(timespec="seconds") if self.ended else None
        if self.accepted is not None:
            data["accepted"]["at"] = self.accepted.at.isoformat(timespec="seconds")
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
                k: v
                for k, v in record.to_dict().items()
                if k not in ("params", "steps", "git", "warnings", "identity", "directions")
            }
            row["job"] = job_id(record.job)  # the scheduler's name of it ("1234_5"): one value per cell
            row.pop("metrics")
            row["started"], row["ended"] = record.started, record.ended
            # what the report's grouped views and best --by aggregate: it passed, or only a judgement of its
            # main (the drift gate, a hypothesis) failed it
            failure = failure_kind(record.status, record.verdict, record.message, record.accepted is not None)
            row["measured"] = measured(record.status, failure)
            row.update({f"metrics.{k}": v for k, v in record.metrics.items()})
            row.update(
                {
                    f"{p['step']}.{p['name']}": p.get("text") if p["kind"] != "seed" else p.get("value")
                    for p in record.params
                }
            )
            rows.append(row)
        return pandas.DataFrame(rows)


def job_id(job: dict[str, Any] | None) -> str | None:
    """The job as its scheduler names it (``1234_5``: task 5 of array job 1234); ``None``: it ran in no batch job.

    Every view reads a job through these three, so a hand-edited store's job (a number where
    text belongs, a field missing) shows what it holds rather than failing the view.
    """
    if not job or job.get("job") is None:
        return None
    return str(job["job"])


def job_short(job: dict[str, Any] | None) -> str | None:
    """The job and where it ran, in one cell: ``1234_5@node01`` (``1234_5`` before it had a node)."""
    name = job_id(job)
    if name is None or job is None:
        return None
    return f"{name}@{job['node']}" if job.get("node") else name


def job_text(job: dict[str, Any] | None) -> str | None:
    """The job in words: ``slurm 1234_5 on node01 (partition debug; cpu=1,mem=500M,node=1), requeued 1 time``.

    Each part only when known: the node, the partition and the allocation may be missing for a job
    that never started, and a job that was never requeued says nothing of it.
    """
    name = job_id(job)
    if name is None or job is None:
        return None
    text = f"{job.get('executor') or 'job'} {name}"
    if job.get("node"):
        text += f" on {job['node']}"
    details = [*([f"partition {job['partition']}"] if job.get("partition") else [])]
    details += [str(job["allocation"])] if job.get("allocation") else []
    if details:
        text += f" ({'; '.join(details)})"
    restarts = job.get("restarts")
    if isinstance(restarts, int) and not isinstance(restarts, bool) and restarts > 0:
        text += f", requeued {restarts} time{'s' if restarts != 1 else ''}"
    return text


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
    decoder = _DECODERS.get("dict" if tag.startswith("dict") else tag)  # "dict:Type": a dict subclass
    return tree if decoder is None else decoder(payload)


def _ndarray(payload: Any) -> Any:
    if "items" in payload and _numpy():
        numpy = sys.modules["numpy"]
        return numpy.array([decode(v) for v in payload["items"]], dtype=payload["dtype"]).reshape(payload["shape"])
    return {"ndarray": payload}  # too large to keep its elements: its digest, dtype and shape


def _bytes(payload: Any) -> bytes:
    import base64

    return base64.b64decode(payload)


def _fields(payload: Any) -> dict[str, Any]:
    """A dataclass, named tuple, object or estimator as ``{"type": ..., **its fields}``."""
    fields = payload.get("fields") or payload.get("state") or payload.get("params") or {}
    if isinstance(fields, dict) and len(fields) == 1 and "dict" in fields:
        fields = decode(fields)
    return {"type": payload["type"], **{k: decode(v) for k, v in fields.items()}}


def _partial(payload: Any) -> dict[str, Any]:
    return {
        "partial": decode(payload["func"]),
        "args": decode(payload["args"]),
        "keywords": decode(payload["keywords"]),
    }


def _as_is(payload: Any) -> Any:
    return payload


def _value(payload: Any) -> Any:
    return payload["value"]


#: how :func:`decode` reads the payload of each tag of :mod:`pytest_mitosis.core.fingerprint`'s trees
_DECODERS: dict[str, Callable[[Any], Any]] = {
    "tuple": lambda payload: tuple(decode(v) for v in payload),
    "dict": lambda payload: {_hashable(decode(k)): decode(v) for k, v in payload},
    "set": lambda payload: {_hashable(decode(v)) for v in payload},
    "frozenset": lambda payload: frozenset(_hashable(decode(v)) for v in payload),
    "float": float,
    "floatlike": lambda payload: float(payload["value"]),
    "intlike": _value,
    "ndarray": _ndarray,
    "numpy": lambda payload: decode(payload["value"]),
    "ref": _as_is,
    "enum": _as_is,
    # the builtin singletons: the very objects, not their names
    "const": lambda payload: {"Ellipsis": ..., "NotImplemented": NotImplemented}.get(payload, payload),
    "repr": _value,
    "path": _value,
    "strlike": _value,
    "sequence": lambda payload: [decode(v) for v in payload["items"]],
    "method": lambda payload: {"method": payload["name"], "self": decode(payload["self"])},
    "bytes": _bytes,
    "dataclass": _fields,
    "namedtuple": _fields,
    "object": _fields,
    "estimator": _fields,
    "partial": _partial,
}


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
