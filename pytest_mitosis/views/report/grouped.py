"""The experiment page's grouped views: main by one parameter, a heatmap of two, main against a number.

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
outcome in the report's words (only a passed trial with a finite main is aggregated; the
others are counted by reason on hover), each parameter's values in their order (a
numeric parameter's by value, another's in the order first run, which is the lookup dict's),
and the commit columns, the same as the commit filter's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ...core.rules import as_number
from .html import e, script_json
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
    """The trial's outcome as the hover counts it: ``passed`` (aggregated) or why it is not aggregated."""
    if record.status == "passed":
        value = as_number(record.main)
        return "passed" if value is not None and math.isfinite(value) else "passed without a main"
    if record.status == "failed":
        return f"failed ({record.failure or 'error'})"  # drift gate, hypothesis refuted, error: as the table says
    return record.status  # interrupted, running


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
    [value index per parameter]]``. ``None`` when no parameter varies: there is nothing to group.
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
        kind = outcome(r)
        main = as_number(r.main) if kind == "passed" else None
        these = params[r.key]
        rows.append(
            [r.key, columns[r.commit or "-"], main, kind, [index[i][these.get(n, "-")] for i, n in enumerate(varying)]]
        )
    return {
        "higher": higher,
        "params": described,
        "commits": sorted(columns, key=lambda c: columns[c]),
        "trials": rows,
    }


def _select(element: str, label: str, options: Sequence[tuple[str, str]], chosen: str = "") -> str:
    inner = "".join(
        f"<option value='{e(value)}'{' selected' if value == chosen else ''}>{e(text)}</option>"
        for value, text in options
    )
    return f"<label>{e(label)}<select id='{e(element)}' onchange='mitosisGroupedDraw()'>{inner}</select></label>"


def grouped_html(data: dict[str, Any]) -> str:
    """The section: its pickers, a chart per parameter, the heatmap, the numeric lines; the script draws them."""
    params = data["params"]
    names = [(str(i), p["name"]) for i, p in enumerate(params)]
    numeric = [(str(i), p["name"]) for i, p in enumerate(params) if p["numeric"]]
    direction = "higher is better" if data["higher"] else "lower is better"
    parts = [
        "<h2>Which variant wins, over the rest</h2>",
        "<p>Main of the passed trials grouped by each parameter that varies, aggregated over the other"
        f" parameters (main: {direction}; ★ marks the best group). Only passed trials are aggregated;"
        " a trial that failed, was failed by the drift gate or is still running is counted on hover."
        " Reproductions and debug trials are left out. The commit filter above picks the trials of one"
        " commit; every chart says how many trials it aggregates and at which commits.</p>",
        "<div class='filters' id='grouped-pickers'>",
        _select("aggregate", "aggregate", [(a, a) for a in AGGREGATES]),
        "</div>",
        "<div class='charts' id='grouped'>",
        *(f"<div class='chart' id='grouped-{i}'></div>" for i in range(len(params))),
        "</div>",
    ]
    if len(params) >= 2:
        parts += [
            "<h3>Two parameters at once</h3><div class='filters'>",
            _select("heat-y", "rows", names, "0"),
            _select("heat-x", "columns", names, "1"),
            "</div><div class='chart' id='heatmap'></div>",
        ]
    if numeric:
        chosen = next((i for i, _ in names if i != numeric[0][0]), "")  # another parameter than the x axis
        parts += [
            "<h3>Main against a numeric parameter</h3><div class='filters'>",
            _select("line-x", "x axis", numeric, numeric[0][0]),
            _select("line-by", "a line per", [("", "(one line)"), *names], chosen),
            "</div><div class='chart' id='lines'></div>",
        ]
    parts.append(f"<script>mitosisGrouped({script_json(data)})</script>")
    return "".join(parts)
