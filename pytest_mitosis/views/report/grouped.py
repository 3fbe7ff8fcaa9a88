"""The experiment page's grouped views: main by one parameter, a heatmap of two, main against a number.

The section is ``templates/grouped.html.j2``; this module decides what it embeds and offers.

Answers *which variant wins, on average over the rest, and where does it lose*: for each
varying parameter, main aggregated (mean, median, best, count) over the other parameters;
a heatmap of any two parameters; main against a numeric parameter, a line per value of
another. The user picks the aggregate, the parameters and the commit (the page's commit
filter) and the charts redraw at once.

The aggregation runs in the page's script (``report.js``, ``mitosisGrouped``) over one
compact row per trial embedded here, not in Python: every pick (4 aggregates × every pair
of parameters × every commit scope) would otherwise have to be precomputed, which grows
with the square of the parameters and with the commits, while the rows grow only with the
trials. What is decided here is what the script must not guess: which trials count (a
reproduction or a debug trial is never aggregated, as in the identity table), each trial's
outcome in the report's words, which trials' main is aggregated (a row carries a main only
then), each parameter's values in their order (a numeric parameter's by value, another's in
the order first run, which is the lookup dict's), and the commit columns, the same as the
commit filter's.

Every trial that measured main is aggregated (:func:`..core.rules.measured`): a passed one,
and one failed by the drift gate or a refuted hypothesis, which ran to its end; the gate
judged the change, not the measurement. Aggregating passed trials alone dropped a variant
exactly where a commit made it worse, and ranked the survivors. A trial that raised, was
interrupted, still runs or ran code that was not its commit's measured nothing: it is
counted by reason on hover, never aggregated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...core.rules import as_number, measured
from .summaries import TrialSummary

#: what the page offers to aggregate main with; the first is drawn at first
AGGREGATES = ("mean", "median", "best", "count")


def _number(text: str) -> float | None:
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def outcome(record: TrialSummary) -> str:
    """The trial's outcome in the hover's words: ``passed``, ``failed (drift gate)``, ... (:func:`main_of` says
    whether it is aggregated)."""
    if record.status == "passed":
        value = as_number(record.main)
        return "passed" if value is not None and math.isfinite(value) else "passed without a main"
    if record.status == "failed":
        return f"failed ({record.failure or 'error'})"  # drift gate, hypothesis refuted, error: as the table says
    return record.status  # interrupted, running


def main_of(record: TrialSummary) -> float | None:
    """The main the page aggregates for ``record``: its finite main when it measured one, else ``None``."""
    if not measured(record.status, record.failure):
        return None
    value = as_number(record.main)
    return value if value is not None and math.isfinite(value) else None


def grouped_data(
    records: Sequence[TrialSummary],
    varying: Sequence[str],
    order: dict[str, list[str]],
    columns: dict[str, int],
    params: dict[str, dict[str, str]],
    higher: bool,
) -> dict[str, Any] | None:
    """What the page's script aggregates: the parameters with their ordered values, the commits, a row per trial.

    ``params`` is each trial's parameter values by key, ``columns`` each commit's column (the
    commit filter's option values). A row is ``[key, commit column, main or None, outcome,
    [value index per parameter]]``: the script aggregates a row with a main, and counts the
    others by outcome. ``None`` when no parameter varies: there is nothing to group.
    """
    if not varying:
        return None
    counted = [r for r in records if not r.reproduces and not r.debug]
    described = []
    index: list[dict[str, int]] = []
    for name in varying:
        values = list(dict.fromkeys(params[r.key].get(name, "-") for r in counted))
        numbers = {v: _number(v) for v in values}
        numeric = all(n is not None for n in numbers.values())
        if numeric:
            values.sort(key=lambda v: numbers[v] or 0.0)
        else:
            first = [v for v in order.get(name, []) if v in values]
            values = first + [v for v in values if v not in first]
        described.append({"name": name, "values": values, "numeric": numeric})
        index.append({v: i for i, v in enumerate(values)})
    rows = []
    for r in sorted(counted, key=lambda r: (r.started, r.key)):
        these = params[r.key]
        at = [index[i][these.get(n, "-")] for i, n in enumerate(varying)]
        rows.append([r.key, columns[r.commit or "-"], main_of(r), outcome(r), at])
    return {
        "higher": higher,
        "params": described,
        "commits": sorted(columns, key=lambda c: columns[c]),
        "trials": rows,
    }


def pickers(data: dict[str, Any]) -> dict[str, Any]:
    """The options of the section's pickers (``templates/grouped.html.j2``): each as ``(value, text)``.

    The heatmap's rows and columns are the first two parameters; the numeric lines' x axis is
    the first numeric parameter, with a line per value of another parameter than that.
    """
    params = data["params"]
    names = [(str(i), p["name"]) for i, p in enumerate(params)]
    numeric = [(str(i), p["name"]) for i, p in enumerate(params) if p["numeric"]]
    chosen = next((i for i, _ in names if i != numeric[0][0]), "") if numeric else ""
    return {
        "aggregates": [(a, a) for a in AGGREGATES],
        "names": names,
        "numeric": numeric,
        "lines": [("", "(one line)"), *names],
        "chosen": chosen,
    }
