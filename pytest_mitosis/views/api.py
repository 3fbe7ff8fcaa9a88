"""The Python API for looking at trials after they ran (mitosis users call ``load_trial_data``).

``load_trial_data`` unpickles the results a trial saved: **unpickling a trials folder from an
untrusted source runs its code**. The other functions read the store's JSON only. Every function
takes ``store`` (a URL such as ``postgresql://alice@db/mitosis``) for a store other than the
trials folder's ``mitosis.sqlite``.
"""

from __future__ import annotations

import pickle
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..store import (
    Reader,
    RecordsError,
    TrialRecord,
    TrialRecords,
    decode,
    default_store,
    default_trials_folder,
)


def _reader(trials_folder: str | Path | None, store: str | None) -> Reader:
    """The reader of ``store`` (a URL), else of ``[tool.mitosis]``'s store in ./pyproject.toml when no
    ``trials_folder`` is named, else of the trials folder's ``mitosis.sqlite``."""
    if trials_folder is not None:
        return Reader(Path(trials_folder).resolve(), store)
    return Reader(default_trials_folder(), store if store is not None else default_store())


def load_trial_data(
    key: str, trials_folder: str | Path | None = None, store: str | None = None
) -> list[dict[str, Any]]:
    """The results of the trial's steps, in step order, as each step returned them (unpickled)."""
    with _reader(trials_folder, store) as reader:
        record = reader.get(key)
        found = reader.artifacts(record)  # never a folder outside the trials folder
    if record.folder is None:
        raise RecordsError(
            f"trial {record.name} (key {record.key}) did not finish ({record.status}); it saved no results"
        )
    if found is None:
        raise RecordsError(
            f"trial {record.name} (key {record.key}): its folder {record.folder} is not inside "
            f"{reader.folder}; copy the trial folder back into the trials folder"
        )
    folder = found / "results"
    results = []
    for index, step in enumerate(record.steps, start=1):
        path = folder / f"step-{index}-{step['name']}.pickle"
        if not path.is_file():
            raise RecordsError(
                f"trial {record.name} (key {record.key}) has no saved result for step {step['name']!r} ({path})"
            )
        with path.open("rb") as stream:
            results.append(pickle.load(stream))  # noqa: S301 - documented: results are the user's own pickles
    return results


def load_trial_params(
    key: str, trials_folder: str | Path | None = None, store: str | None = None
) -> dict[str, dict[str, Any]]:
    """The trial's resolved parameters, step → parameter → value, as recorded (no code runs)."""
    with _reader(trials_folder, store) as reader:
        record = reader.get(key)
    params: dict[str, dict[str, Any]] = {s["name"]: {} for s in record.steps}
    for p in record.params:
        value = p.get("value")
        params.setdefault(p["step"], {})[p["name"]] = (
            value if p["kind"] == "seed" else decode(value) if value is not None else p.get("repr")
        )
    return params


def _decoded(record: TrialRecord) -> TrialRecord:
    """The record with every parameter's ``value`` as a plain Python or numpy value."""
    params = [
        p if p["kind"] == "seed" or p.get("value") is None else {**p, "value": decode(p["value"])}
        for p in record.params
    ]
    return replace(record, params=params)


def load_trials(
    experiment: str | None = None,
    trials_folder: str | Path | None = None,
    debug: bool = False,
    store: str | None = None,
) -> TrialRecords:
    """Every recorded trial (newest first) as ``TrialRecord`` objects; ``.to_dataframe()`` with pandas.

    Parameter values come back decoded (numbers, dicts, numpy arrays), as ``load_trial_params``
    gives them, never in the store's tagged JSON form.
    """
    with _reader(trials_folder, store) as reader:
        return TrialRecords(_decoded(r) for r in reader.trials(experiment, debug=debug))


def load_metric(key: str, name: str, trials_folder: str | Path | None = None, store: str | None = None) -> Any:
    """One metric of a trial: a number, or a series (a list, or ``{"step": [...], "value": [...]}``)."""
    with _reader(trials_folder, store) as reader:
        record = reader.get(key)
    if name == "main":
        return record.main
    if name not in record.metrics:
        known = ", ".join(["main", *record.metrics])
        raise RecordsError(f"trial {record.name} (key {record.key}) has no metric {name!r}; it has: {known}")
    return record.metrics[name]
