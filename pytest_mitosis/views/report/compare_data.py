"""The compare page's data: each trial's labelled values, grouped as the ``diff`` command groups them.

``diff`` (:func:`pytest_mitosis.views.records_text.diff_records`) answers "why do these two
trials differ?" in four groups, code, parameters, environment and seed, then the results.
The compare page answers it for any number of trials picked in the browser, where no Python
runs: so each trial's values are written into ``<report>/data/<xy>.js`` (:func:`write_data`; a
script, since a page opened from ``file://`` may not fetch), one label → value per fact, in the same
groups, with ``diff``'s notion of a parameter (its ``_named``) and of a package. The page
shows a label only when the trials' values differ. Environments are shared by many trials, so each
is written once as ``data/env-<digest>.js``. The only thing a browser cannot know, the
files changed between two commits, comes from git when the ``compare`` command writes the
page (:func:`.compare.write_compare`).
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ...core.rules import is_series
from ...store import Reader, TrialRecord, valid_key
from ..records_text import _named, short
from .charts import series_data
from .figures import Figure
from .html import script_json, trial_href, write
from .summaries import TrialSummary

#: points of a series kept for the compare page's overlay (the trial page keeps more)
COMPARE_POINTS = 500
#: an environment digest as the store writes it; anything else is not used as a file name
DIGEST = re.compile(r"^[0-9a-f]{8,128}$")
#: the environment parts ``diff`` compares one by one (the rest: packages, and any extra key)
ENV_PARTS = ("python", "platform", "cpu", "gpus", "env", "hostname")


def environment_labels(env: dict[str, Any]) -> dict[str, str]:
    """An environment record as label → value: ``diff``'s parts, one label per package, extra keys."""
    labels = {part: json.dumps(env.get(part)) for part in ENV_PARTS if part in env}
    packages = env.get("packages") or {}
    if isinstance(packages, dict):
        labels.update({f"package {name}": str(version) for name, version in packages.items()})
    for key in sorted(set(env) - {*ENV_PARTS, "packages", "git"}):
        labels[key] = json.dumps(env.get(key))
    return labels


def trial_groups(record: TrialRecord) -> dict[str, dict[str, str]]:
    """The code, parameter and seed groups of one trial, label → value (its environment: :func:`environment_labels`)."""
    code = {"commit": (record.commit or "-")[:12]}
    submodules = record.git.get("submodules") if isinstance(record.git, dict) else None
    if isinstance(submodules, dict):
        code.update({f"submodule {path}": str(commit or "-")[:12] for path, commit in submodules.items()})
    code["experiment"] = record.experiment
    params = {f"{p['step']}.{p['name']}": _named(p) for p in record.params if p.get("kind") != "seed"}
    return {"code": code, "parameters": params, "seed": {"seed": str(record.seed)}}


def results(record: TrialRecord) -> dict[str, Any]:
    """Main and every metric as the compare page shows them (numbers stay numbers; series summarised)."""
    shown: dict[str, Any] = {"main": record.main if isinstance(record.main, (int, float)) else short(record.main)}
    for name, value in record.metrics.items():
        if name != "main":
            shown[name] = value if isinstance(value, (int, float)) and not isinstance(value, bool) else short(value)
    return shown


def _entry(
    record: TrialRecord, digest: str | None, env: dict[str, str] | None, figures: list[Figure]
) -> dict[str, Any]:
    groups: dict[str, dict[str, str]] = trial_groups(record)
    if env is not None:
        groups["environment"] = env
    series = {
        name: points
        for name, value in record.metrics.items()
        if is_series(value) and (points := series_data(value, COMPARE_POINTS)) is not None
    }
    return {
        "key": record.key,
        "name": record.name,
        "experiment": record.experiment,
        "variants": record.variants,
        "status": record.status,
        "started": record.started.isoformat(timespec="seconds"),
        "page": trial_href(record.key, ""),
        "environment": digest,
        "groups": groups,
        "results": results(record),
        "series": series,
        "figures": [{"src": f.src, "caption": f.caption} for f in figures],
    }


def _first_line(path: Path) -> str:
    try:
        with path.open(encoding="utf-8") as stream:
            return stream.readline().rstrip("\n")
    except OSError:
        return ""


def write_data(
    reader: Reader,
    summaries: Sequence[TrialSummary],
    records: Mapping[str, TrialRecord],
    figures: dict[str, list[Figure]],
    out: Path,
) -> None:
    """Write the compare data: ``data/<xy>.js`` holds every finished trial whose key ends with ``xy``.

    Grouping by the key's last two hex digits (even for keys that count up) keeps the file count at 256 whatever the
    number of trials (a file per trial makes the first build of 10,000 trials twice as
    slow); the first line of each file lists its keys, so a refresh rewrites only the files
    that gained (or lost) a trial, reading from the store only their trials not in ``records``
    (the records read whole already). Each distinct environment is written once.
    """
    folder = out / "data"
    present = set(os.listdir(folder))
    chunks: dict[str, list[str]] = defaultdict(list)
    for summary in summaries:
        if valid_key(summary.key) and summary.status != "running":
            chunks[summary.key[-2:]].append(summary.key)
    stale: dict[str, tuple[Path, str, list[str]]] = {}
    kept: dict[str, dict[str, Any]] = {}  # the entries of unchanged trials, from the files being rewritten
    for prefix, keys in chunks.items():
        keys.sort()
        head = "// keys: " + ",".join(keys)
        path = folder / f"{prefix}.js"
        if f"{prefix}.js" not in present or _first_line(path) != head:
            stale[prefix] = (path, head, keys)
            if f"{prefix}.js" in present:
                kept.update((k, v) for k, v in _entries(path).items() if k not in records)
    missing = {key for _, _, keys in stale.values() for key in keys if key not in records and key not in kept}
    found = {**records, **{r.key: r for r in reader.trials_with_keys(missing)}} if missing else records
    for path, head, keys in stale.values():
        entries = []
        for key in keys:
            if key in kept:
                entries.append(kept[key])
                continue
            record = found.get(key)
            if record is None:
                continue  # deleted since its state was read
            digest = record.environment_digest if DIGEST.match(record.environment_digest or "") else None
            env_name = f"env-{digest}.js"
            if digest is not None and env_name not in present:
                labels = environment_labels(reader.environment(record))
                write(folder / env_name, f"mitosisEnvironment({script_json(digest)},{script_json(labels)});\n")
                present.add(env_name)
            env = None if digest is not None else environment_labels(reader.environment(record))
            entries.append(_entry(record, digest, env, figures.get(record.key, [])))
        write(path, f"{head}\n{_CALL}{script_json(entries)});\n")


#: how a compare data file hands its trials to the page
_CALL = "mitosisTrials("


def _entries(path: Path) -> dict[str, dict[str, Any]]:
    """The entries of a compare data file by key (none if it cannot be read back: they are built again)."""
    try:
        body = path.read_text(encoding="utf-8").split("\n", 1)[1]
        entries = json.loads(body.removeprefix(_CALL).removesuffix(");\n")) if body.startswith(_CALL) else []
    except (OSError, ValueError, IndexError):
        return {}
    if not isinstance(entries, list):
        return {}
    return {e["key"]: e for e in entries if isinstance(e, dict) and isinstance(e.get("key"), str)}
