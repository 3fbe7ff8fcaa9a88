"""What the summary pages (the index, each experiment's page) show of a trial, kept between refreshes.

A refresh after a 16-trial session must not read and decode 10,000 records to add 16: the
summary pages are built from these summaries, kept in ``assets/trials.json`` with the state
each was taken at (:meth:`pytest_mitosis.store.Reader.states`: status, verdict, folder). A
refresh reads every trial's state (no JSON decoded) and the whole record only of a trial that
is new or whose state changed (it ended, was judged, its folder moved into place); a trial no
longer in the store is dropped. Only numeric metrics are kept (the experiment table's
columns), so a long series costs nothing here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ...core.rules import Directions, as_number, failure_kind
from ...store import TrialRecord, job_short

#: the layout of ``assets/trials.json``; another layout is rebuilt from the store
LAYOUT = 2


@dataclass(slots=True)
class TrialSummary:
    """One trial as the index and the experiment pages show it (attribute names as :class:`TrialRecord`'s).

    Not frozen only because a frozen dataclass builds 10,000 of them measurably slower; none is changed.
    """

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
    started: datetime
    folder: str | None
    reproduces: str | None
    verdict: str | None
    session: str | None
    #: each parameter's step, name, text and kind (what variant names and the table's columns need)
    params: list[dict[str, Any]]
    #: the host that ran it, from its environment record
    host: str
    #: the executed notebook's HTML, as a link from the report's root (``None``: not there)
    notebook: str | None
    #: the store's state of the trial when summarised (:meth:`Reader.states`)
    state: str
    #: why a trial that did not pass did not (:func:`..core.rules.failure_kind`); ``None`` for a passed or running one
    failure: str | None = None
    #: whether a higher main was better by the directions recorded with the trial (``None``: none recorded)
    higher: bool | None = None
    #: the batch job that ran it and its node (``1234_5@node01``: :func:`~pytest_mitosis.store.job_short`)
    job: str | None = None


_FIELDS = list(TrialSummary.__dataclass_fields__)
_STARTED = _FIELDS.index("started")
#: the fields a summary takes from its record unchanged (the others are summarised, or not in a record)
_COPIED = [
    f for f in _FIELDS if f not in ("metrics", "params", "host", "notebook", "state", "failure", "higher", "job")
]


def summarize(record: TrialRecord, host: str, notebook: str | None) -> TrialSummary:
    """The summary of a record read whole from the store."""
    return TrialSummary(
        **{f: getattr(record, f) for f in _COPIED},
        metrics={k: v for k, v in record.metrics.items() if as_number(v) is not None},
        params=[{k: p.get(k) for k in ("step", "name", "text", "kind")} for p in record.params],
        host=host,
        notebook=notebook,
        state=record.state,
        failure=failure_kind(record.status, record.verdict, record.message, record.accepted is not None),
        higher=recorded_direction(record, "main"),
        job=job_short(record.job),
    )


def recorded_direction(record: TrialRecord, metric: str) -> bool | None:
    """Whether a higher ``metric`` was better for ``record``, as recorded with it (``None``: not recorded)."""
    directions = Directions.from_json(record.directions)
    return directions(metric) if directions is not None else None


def load(path: Path) -> dict[str, TrialSummary]:
    """The summaries kept at ``path`` by key; none when the file is missing, unreadable or of another layout."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("layout") != LAYOUT or data.get("fields") != _FIELDS:
            return {}
        found = {}
        for row in data["trials"]:
            if not _sound(row):
                return {}
            row[_STARTED] = datetime.fromtimestamp(row[_STARTED])
            summary = TrialSummary(*row)
            found[summary.key] = summary
        return found
    except (OSError, ValueError, TypeError, KeyError, IndexError, OverflowError):
        return {}  # a damaged cache costs one full read, never a wrong page


_OPTIONAL = (str, type(None))
#: what each field of a row holds (``main`` anything JSON holds); a row that differs was not written by dump()
_TYPES: dict[str, Any] = {
    "key": str,
    "experiment": str,
    "identity": str,
    "variants": str,
    "iteration": (int, type(None)),
    "name": str,
    "status": str,
    "debug": bool,
    "main": object,
    "metrics": dict,
    "seed": (int, type(None)),
    "commit": _OPTIONAL,
    "started": (int, float),
    "folder": _OPTIONAL,
    "reproduces": _OPTIONAL,
    "verdict": _OPTIONAL,
    "session": _OPTIONAL,
    "params": list,
    "host": str,
    "notebook": _OPTIONAL,
    "state": str,
    "failure": _OPTIONAL,
    "higher": (bool, type(None)),
    "job": _OPTIONAL,
}
_CHECKS = [_TYPES[f] for f in _FIELDS]
_PARAMS = _FIELDS.index("params")
_METRICS = _FIELDS.index("metrics")


def _sound(row: Any) -> bool:
    """Whether ``row`` holds what :func:`dump` writes: a damaged or crafted cache is not used at all."""
    return (
        isinstance(row, list)
        and len(row) == len(_CHECKS)
        and all(isinstance(value, kind) for value, kind in zip(row, _CHECKS))
        and all(
            isinstance(p, dict) and all(isinstance(p.get(k), str) for k in ("step", "name", "kind"))
            for p in row[_PARAMS]
        )
        and all(isinstance(k, str) and as_number(v) is not None for k, v in row[_METRICS].items())
    )


def dump(summaries: dict[str, TrialSummary]) -> str:
    """The text of ``assets/trials.json``: a row per trial, its fields in order (the start as a timestamp)."""
    rows = []
    for summary in summaries.values():
        row = [getattr(summary, f) for f in _FIELDS]
        row[_STARTED] = summary.started.timestamp()
        rows.append(row)
    return json.dumps({"layout": LAYOUT, "fields": _FIELDS, "trials": rows}, separators=(",", ":"))
