"""The charts' data: plotly figure dicts (data and layout) built from records; plotly.js draws them.

Nothing here draws: each function returns the JSON-ready ``{"data": [...], "layout": {...}}``
that :func:`.html.chart` hands to plotly.js. Long metric series are down-sampled here
(:func:`downsample`), so a 10^6-point series makes a page of kilobytes, not of 100 MB: trials
record their series down-sampled by the same rule (:mod:`pytest_mitosis.core.series`), older
records may hold them whole.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from typing import Any

from ...core.rules import as_number, series_points
from ...core.series import POINTS, keep
from .html import plot_text, trial_href
from .summaries import TrialSummary

#: plotly's default colours: the identities drawn at first get one each
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


def downsample(points: Sequence[tuple[float, float]], limit: int = POINTS) -> tuple[list[float], list[float]]:
    """``points`` as two lists of at most ``limit`` points: first, last, and each bucket's min and max
    (:func:`pytest_mitosis.core.series.keep`, the rule the kernel records series with)."""
    kept = keep([p[1] for p in points], limit)
    return [points[i][0] for i in kept], [points[i][1] for i in kept]


def series_data(value: Any, limit: int = POINTS) -> tuple[list[float], list[float]] | None:
    """A recorded series, down-sampled; ``None`` for a scalar."""
    points = series_points(value)
    return downsample(points, limit) if points else None


def series_figure(name: str, value: Any) -> dict[str, Any] | None:
    """One metric series over its steps (WebGL lines: fast with thousands of points)."""
    points = series_points(value)
    if not points:
        return None
    data = downsample(points)
    total = len(points)
    note = f" ({total:,} points, {len(data[0]):,} drawn)" if total > len(data[0]) else ""
    return {
        "data": [
            {
                "type": "scattergl",
                "mode": "lines+markers" if total <= 50 else "lines",
                "name": plot_text(name),
                "x": data[0],
                "y": data[1],
            }
        ],
        "layout": {
            "title": {"text": f"{plot_text(name)}{note}", "x": 0.02, "xanchor": "left"},
            "xaxis": {"title": {"text": "step"}},
            "height": 300,
        },
    }


@functools.lru_cache(maxsize=4096)
def _escaped(text: str) -> str:
    return plot_text(text)


def hover(record: TrialSummary) -> str:
    """What hovering a trial's point says: variants, main (or why it failed), commit, date, key.

    plotly.js reads chart texts as a small subset of HTML (``<br>``, ``<a href>``...), so every
    recorded text goes through :func:`.html.plot_text`: it shows as written.
    """
    main = repr(record.main)
    outcome = f"<br>{_escaped(record.status)} ({_escaped(record.failure)})" if record.failure else ""
    return (
        f"{_escaped(record.variants or record.experiment)}<br>main {plot_text(main[:40])}{outcome}"
        f"<br>commit {_escaped((record.commit or '-')[:8])}<br>{record.started:%Y-%m-%d %H:%M}"
        f"<br>trial {_escaped(record.key)} #{record.iteration}"
    )


def _finite(value: Any) -> float | None:
    number = as_number(value)
    return number if number is not None and math.isfinite(number) else None


def shown_identities(records: Sequence[TrialSummary], ranked: Sequence[str], limit: int) -> list[str]:
    """The identities "main over commits" draws at first: at most ``limit``, each commit's best first.

    The newest commit picks its best identity that passed there, then the one before it, and
    so on round the commits again, until ``limit``: every commit where a trial passed gets a
    line (the best identities overall had not run at a new commit, whose column stayed empty).
    """
    rank = {identity: i for i, identity in enumerate(ranked)}
    ran: dict[str, set[str]] = {}
    for r in sorted(records, key=lambda r: r.started):
        if r.status == "passed" and _finite(r.main) is not None:
            ran.setdefault(r.commit or "-", set()).add(r.identity)
    queues = [sorted(identities, key=lambda i: rank.get(i, len(rank))) for identities in reversed(ran.values())]
    shown: list[str] = []
    while len(shown) < limit and any(queues):
        for queue in queues:
            while queue and queue[0] in shown:
                queue.pop(0)
            if queue and len(shown) < limit:
                shown.append(queue.pop(0))
    return shown


#: how a trial that did not pass is drawn in "main over commits", by :attr:`TrialSummary.failure`
FAILED_MARKERS = {
    "drift gate": "x",
    "drift gate, accepted": "x-thin",
    "hypothesis refuted": "triangle-down",
    "error": "x-open",
}


def over_commits(
    experiment: str, records: Sequence[TrialSummary], label: dict[str, str], shown: Sequence[str]
) -> dict[str, Any] | None:
    """Main of every trial, one line per identity, over the commits in the order they were first run.

    ``label`` names each identity (its varying parameters). The x axis is the commit: a code
    change moves a line to the next column, past a dotted boundary labelled with the commit
    and how many of its trials passed and failed; a parameter change is another identity, so
    another line (with its own colour and legend entry). Repeats at one commit sit side by
    side inside the commit's column. Only the identities in ``shown`` are drawn at first
    (:func:`shown_identities`), the others wait in the legend: fifty lines at once are
    unreadable; each of them has a colour of its own (plotly's ten). A trial that failed is
    never left out: one that recorded its main (the drift gate fails a trial after it ran) is
    a red marker of its own shape in a trace per reason, always drawn; one without a main is
    counted under its commit.
    """
    colour = {identity: PALETTE[i % len(PALETTE)] for i, identity in enumerate(shown)}
    ordered = sorted(records, key=lambda r: r.started)
    commits: dict[str, int] = {}
    first_date: dict[str, str] = {}
    for r in ordered:
        commit = r.commit or "-"
        if commit not in commits:
            commits[commit] = len(commits)
            first_date[commit] = f"{r.started:%m-%d %H:%M}"
    drawn = []
    per_commit: dict[int, int] = {}
    passed_at: dict[int, int] = {}
    failed_at: dict[int, int] = {}
    for r in ordered:
        column = commits[r.commit or "-"]
        if r.status == "passed":
            passed_at[column] = passed_at.get(column, 0) + 1
        elif r.failure is not None:
            failed_at[column] = failed_at.get(column, 0) + 1
        main = _finite(r.main)
        if main is None or (r.status != "passed" and r.failure is None):
            continue
        per_commit[column] = per_commit.get(column, 0) + 1
        drawn.append((r, main, column, per_commit[column]))
    traces: dict[str, dict[str, Any]] = {}
    failures: dict[str, dict[str, Any]] = {}
    for r, main, column, slot in drawn:
        offset = slot / (per_commit[column] + 1) - 0.5  # inside (-0.5, 0.5): repeats side by side
        if r.status == "passed":
            trace = traces.get(r.identity)
            if trace is None:
                trace = traces[r.identity] = {
                    "type": "scatter",
                    "mode": "lines+markers",
                    "name": plot_text(label.get(r.identity, r.variants or experiment)),
                    "x": [],
                    "y": [],
                    "hovertext": [],
                    "customdata": [],
                    "hoverinfo": "text",
                    "marker": {"size": 7, **({"color": colour[r.identity]} if r.identity in colour else {})},
                    "line": {"color": colour[r.identity]} if r.identity in colour else {},
                    "visible": True if r.identity in colour else "legendonly",
                }
        else:
            why = r.failure or "error"
            trace = failures.get(why)
            if trace is None:
                trace = failures[why] = {
                    "type": "scatter",
                    "mode": "markers",
                    "name": plot_text(f"{r.status} ({why})"),
                    "x": [],
                    "y": [],
                    "hovertext": [],
                    "customdata": [],
                    "hoverinfo": "text",
                    "marker": {"size": 11, "color": "#d62728", "symbol": FAILED_MARKERS.get(why, "x-open")},
                    "visible": True,
                }
        trace["x"].append(round(column + offset * 0.8, 4))
        trace["y"].append(main)
        trace["hovertext"].append(hover(r))
        trace["customdata"].append(trial_href(r.key, "../"))
    if not traces and not failures and not failed_at:
        return None
    hidden = sum(1 for t in traces.values() if t["visible"] == "legendonly")
    more = f"; {hidden} more in the legend" if hidden else ""
    boundaries = [
        {
            "type": "line",
            "x0": i - 0.5,
            "x1": i - 0.5,
            "y0": 0,
            "y1": 1,
            "yref": "paper",
            "line": {"dash": "dot", "color": "#999", "width": 1},
        }
        for i in range(1, len(commits))
    ]

    def counted(column: int) -> str:
        passed, failed = passed_at.get(column, 0), failed_at.get(column, 0)
        return f"{passed} passed" + (f", <b>{failed} failed</b>" if failed else "")

    return {
        "data": [*traces.values(), *failures.values()],
        "layout": {
            "title": {
                "text": f"{plot_text(experiment)}: main over commits (a line per identity, each commit's best first{more};"
                " red: failed; dotted: a new commit)"
            },
            "xaxis": {
                "title": {"text": "commit (first run), its trials"},
                "tickvals": list(commits.values()),
                "ticktext": [f"{plot_text(c[:8])}<br>{first_date[c]}<br>{counted(i)}" for c, i in commits.items()],
                "range": [-0.6, len(commits) - 0.4],
                "zeroline": False,
            },
            "yaxis": {"title": {"text": "main"}},
            "shapes": boundaries,
            "legend": {"title": {"text": "identity (click to hide)"}},
            "height": 500,
            "margin": {"b": 110},
        },
    }


def parallel(
    experiment: str,
    rows: Sequence[dict[str, Any]],
    params: Sequence[str],
    higher_is_better: bool,
    order: dict[str, list[str]] | None = None,
) -> dict[str, Any] | None:
    """Parallel coordinates over the parameters that vary, one line per identity, coloured by latest main.

    A parameter whose every value is a number gets a numeric axis (its values at their
    distances); another gets a tick per value, top to bottom in ``order`` (the order its values
    were first run in, which is the lookup dict's for a sweep over it: the record does not hold
    the dict's order), so categorical and numeric variants share one chart.
    """
    usable = [row for row in rows if row["latest"] is not None]
    if not params or not usable:
        return None
    dimensions: list[dict[str, Any]] = []
    for param in params:
        values = [row["params"].get(param, "-") for row in usable]
        numbers = [_number(v) for v in values]
        if all(n is not None and math.isfinite(n) for n in numbers):
            dimensions.append({"label": plot_text(param), "values": numbers})
            continue
        first = [v for v in (order or {}).get(param, []) if v in set(values)]
        ordered = first + sorted(set(values) - set(first))
        top = len(ordered) - 1
        index = {v: top - i for i, v in enumerate(ordered)}  # the first at the top: read down as run
        dimensions.append(
            {
                "label": plot_text(param),
                "values": [index[v] for v in values],
                "tickvals": [index[v] for v in ordered],
                # plotly.js sets parcoords ticks as plain text (no markup, no entities): raw
                "ticktext": [v if len(v) <= 18 else v[:17] + "…" for v in ordered],
                "range": [0, max(len(ordered) - 1, 1)],
            }
        )
    mains = [row["latest"] for row in usable]
    dimensions.append({"label": "main (latest passed)", "values": mains})
    return {
        "data": [
            {
                "type": "parcoords",
                "line": {
                    "color": mains,
                    "colorscale": "Viridis",  # the best end is yellow whatever the direction
                    "reversescale": not higher_is_better,
                    "showscale": True,
                    "colorbar": {"title": {"text": "main"}},
                },
                "dimensions": dimensions,
            }
        ],
        "layout": {
            "title": {
                "text": f"{plot_text(experiment)}: the parameters that vary, coloured by latest passed main (drag an axis to filter)"
            },
            "height": 420,
            "margin": {"l": 80, "r": 80, "t": 80},
        },
    }


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None
