"""One page per experiment: which variant is best, how the parameters relate to main, main over commits.

Readable at hundreds of trials and dozens of identities: a sortable table with one row per
identity (the parameters that vary as columns, latest and best main, the number of trials,
the trend, the latest scalar metrics) with the best row marked; main grouped by each varying
parameter, a heatmap of two, main against a numeric one (:mod:`.grouped`); parallel coordinates over
the varying parameters coloured by main; main over commits, one line per identity. Every
latest, best and trend says the commit and date it comes from, and a trial that failed is
counted with its reason (never skipped): after a commit whose trials all failed, the page
shows the older value at its older commit, next to the failures. A commit filter shows one
commit's trials alone (the table, and the grouped views). "Best"
follows the experiment's direction (:func:`.build.directions`): lower is better unless the
experiment says ``higher-is-better = true`` or its hypothesis bounds main from below.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from ...core.rules import as_number
from .charts import over_commits, parallel, shown_identities
from .grouped import grouped_data, grouped_html
from .html import chart, e, linked, page, trial_href
from .summaries import TrialSummary

#: scalar metrics shown as columns at most (the trial pages show them all)
METRIC_COLUMNS = 8
#: identities drawn at first in "main over commits" (the best ones; the legend shows the others)
SHOWN = 10


def _param_values(record: TrialSummary) -> dict[str, str]:
    return {f"{p['step']}.{p['name']}": str(p.get("text")) for p in record.params if p.get("kind") != "seed"}


def _main(record: TrialSummary) -> float | None:
    value = as_number(record.main)
    return value if value is not None and math.isfinite(value) and record.status == "passed" else None


def identity_rows(records: Sequence[TrialSummary]) -> tuple[list[dict[str, Any]], list[str]]:
    """One row per identity (oldest first within it), and the parameters whose value varies.

    A row's "latest" is its latest *passed* main, with the trial (so the commit and date) it
    comes from; ``last_record`` is its latest trial whatever its outcome, so a row whose
    newest trials failed says so next to an older value.
    """
    groups: dict[str, list[TrialSummary]] = defaultdict(list)
    for r in sorted(records, key=lambda r: r.started):
        groups[r.identity].append(r)
    rows: list[dict[str, Any]] = []
    for identity, trials in groups.items():
        originals = [r for r in trials if not r.reproduces and not r.debug]
        mains = [(r, m) for r in originals if (m := _main(r)) is not None]
        last_record = (originals or trials)[-1]
        failures: dict[str, int] = defaultdict(int)
        for r in trials:
            if r.failure is not None:
                failures[r.failure] += 1
        rows.append(
            {
                "identity": identity,
                "params": _param_values(last_record),
                "variants": last_record.variants,
                "trials": len(trials),
                "passed": sum(1 for r in trials if r.status == "passed"),
                "failures": dict(failures),
                "latest": mains[-1][1] if mains else None,
                "latest_record": mains[-1][0] if mains else last_record,
                "last_record": last_record,
                "previous": mains[-2][1] if len(mains) > 1 else None,
                "previous_record": mains[-2][0] if len(mains) > 1 else None,
                "mains": [m for _, m in mains],
                "main_records": [r for r, _ in mains],
            }
        )
    names = sorted({name for row in rows for name in row["params"]})
    varying = [n for n in names if len({row["params"].get(n, "-") for row in rows}) > 1]
    return rows, varying


def value_order(records: Sequence[TrialSummary]) -> dict[str, list[str]]:
    """Each parameter's values in the order they were first run (a sweep runs a lookup dict's variants in its order)."""
    order: dict[str, dict[str, None]] = defaultdict(dict)
    for r in sorted(records, key=lambda r: (r.started, r.iteration or 0)):
        for name, value in _param_values(r).items():
            order[name].setdefault(value, None)
    return {name: list(values) for name, values in order.items()}


def at(record: TrialSummary | None) -> str:
    """Where a value comes from: its commit (8 characters, the full one in the title) and date, linked to the trial."""
    if record is None:
        return ""
    commit = record.commit or "-"
    text = f"{e(commit[:8])} {record.started:%Y-%m-%d %H:%M}"
    title = e(f"commit {commit}, trial {record.key}, {record.started:%Y-%m-%d %H:%M}")
    link = trial_href(record.key, "../")
    inner = f"<a href='{e(link)}' title='{title}'>{text}</a>" if link else f"<span title='{title}'>{text}</span>"
    return f"<br><small class='at'>at {inner}</small>"


def counts(total: int, passed: int, failures: dict[str, int]) -> str:
    """``5 trials: 1 passed, 4 failed (drift gate)``: what did not pass is counted, never dropped."""
    parts = [f"{passed} passed"]
    failed = {k: n for k, n in failures.items() if k != "interrupted"}
    if failed:
        reasons = ", ".join(f"{n} {k}" if len(failed) > 1 else k for k, n in sorted(failed.items()))
        parts.append(f"{sum(failed.values())} failed ({reasons})")
    if failures.get("interrupted"):
        parts.append(f"{failures['interrupted']} interrupted")
    other = total - passed - sum(failures.values())
    if other:
        parts.append(f"{other} running")
    return f"{total} trial{'s' if total != 1 else ''}: {', '.join(parts)}"


def _label(row: dict[str, Any], varying: list[str]) -> str:
    if not varying:
        return str(row["variants"] or "(defaults)")
    return " ".join(f"{n.split('.', 1)[-1]}={row['params'].get(n, '-')}" for n in varying)


def _num(value: float | None) -> str:
    return "" if value is None else f"{value:.6g}"


def _trend(row: dict[str, Any], higher: bool) -> str:
    if row["latest"] is None or row["previous"] is None:
        return "<td data-v=''>–</td>"
    delta = row["latest"] - row["previous"]
    before, after = ((r.commit or "-")[:8] for r in (row["previous_record"], row["latest_record"]))
    commits = f"<br><small class='at'>{e(before)} → {e(after)}</small>"
    if delta == 0:
        return f"<td data-v='0'>= unchanged{commits}</td>"
    better = (delta > 0) == higher
    arrow = "▲" if delta > 0 else "▼"
    return f"<td data-v='{delta!r}' class='{'better' if better else 'worse'}'>{arrow} {delta:+.3g}{commits}</td>"


def _rank(row: dict[str, Any], higher: bool) -> tuple[bool, float]:
    """Best latest main first; identities without one last."""
    latest = row["latest"]
    return (latest is None, 0.0 if latest is None else -latest if higher else latest)


def _table(rows: list[dict[str, Any]], varying: list[str], higher: bool, element: str = "identities") -> str:
    latest = [row["latest"] for row in rows if row["latest"] is not None]
    best = (max if higher else min)(latest) if latest else None
    metric_names: list[str] = []
    for row in rows:
        for name, value in row["latest_record"].metrics.items():
            if name not in metric_names and as_number(value) is not None and name != "main":
                metric_names.append(name)
    metric_names = metric_names[:METRIC_COLUMNS]
    head = [*varying] if varying else ["variants"]
    head += ["latest main", "best main", "trials", "trend (last change)", *metric_names, "latest trial (any outcome)"]
    body = []
    for row in sorted(rows, key=lambda r: _rank(r, higher)):
        cells = (
            [f"<td>{e(row['params'].get(n, '-'))}</td>" for n in varying]
            if varying
            else [f"<td>{e(row['variants'] or '(defaults)')}</td>"]
        )
        best_main, best_record = None, None
        if row["mains"]:
            best_main, best_record = (max if higher else min)(
                zip(row["mains"], row["main_records"]), key=lambda p: p[0]
            )
        latest_at = at(row["latest_record"]) if row["latest"] is not None else ""
        cells += [
            f"<td class='num' data-v='{_num(row['latest'])}'>{_num(row['latest']) or '–'}{latest_at}</td>",
            f"<td class='num' data-v='{_num(best_main)}'>{_num(best_main) or '–'}{at(best_record)}</td>",
            f"<td class='num' data-v='{row['trials']}'>{e(counts(row['trials'], row['passed'], row['failures']))}</td>",
            _trend(row, higher),
        ]
        for name in metric_names:
            value = as_number(row["latest_record"].metrics.get(name))
            cells.append(f"<td class='num' data-v='{_num(value)}'>{_num(value) or '–'}</td>")
        record = row["last_record"]
        outcome = (
            f" <span class='badge {e(record.status)}'>{e(record.status)}: {e(record.failure)}</span>"
            if record.failure
            else ""
        )
        cells.append(f"<td>{linked(trial_href(record.key, '../'), record.key)}{outcome}{at(record)}</td>")
        marked = " class='best'" if best is not None and row["latest"] == best else ""
        body.append(f"<tr{marked}>{''.join(cells)}</tr>")
    direction = "higher is better" if higher else "lower is better"
    return (
        f'<p>{len(rows)} identities; main: {direction}; ★ marks the best latest main. "Latest" and "best" are of'
        " passed trials, each at the commit and date under it; the metrics are the latest main's trial's."
        " Click a column to sort.</p>"
        f"<table class='sortable' id='{e(element)}'><thead><tr>"
        + "".join(f"<th>{e(h)}</th>" for h in head)
        + f"</tr></thead><tbody>{''.join(body)}</tbody></table>"
    )


def _tally(records: Sequence[TrialSummary]) -> str:
    failures: dict[str, int] = defaultdict(int)
    for r in records:
        if r.failure is not None:
            failures[r.failure] += 1
    return counts(len(records), sum(1 for r in records if r.status == "passed"), failures)


def _outcomes(records: Sequence[TrialSummary]) -> str:
    """All trials counted by outcome, then those of the newest commit: a new commit whose trials all failed shows."""
    if not records:
        return ""
    newest = max(records, key=lambda r: r.started)
    at_newest = [r for r in records if r.commit == newest.commit]
    commit = newest.commit or "-"
    return (
        f"<p class='outcomes'>{e(_tally(records))}. At the newest commit, <span title='{e(commit)}'>{e(commit[:8])}</span>"
        f" ({newest.started:%Y-%m-%d %H:%M}): {e(_tally(at_newest))}.</p>"
    )


def commit_columns(records: Sequence[TrialSummary]) -> dict[str, int]:
    """Each commit's column, in the order first run: the commit filter's values, shared by every view it filters."""
    column: dict[str, int] = {}
    for r in sorted(records, key=lambda r: r.started):
        column.setdefault(r.commit or "-", len(column))
    return column


def _by_commit(
    records: Sequence[TrialSummary], rows: list[dict[str, Any]], varying: list[str], higher: bool
) -> list[str]:
    """The table of every commit, and one per commit (newest first) that a filter shows instead.

    Each commit's table is built from its trials alone, so its "latest" and "best" are that
    commit's and its counts say how many of its trials failed; picking a commit also zooms
    "main over commits" to its column. Built here, not in the browser: the rows are the same
    Python as the whole table's.
    """
    ordered = sorted(records, key=lambda r: r.started)
    column = commit_columns(records)
    if len(column) < 2:
        return [_table(rows, varying, higher)]
    options, tables = [], []
    for commit in sorted(column, key=lambda c: -column[c]):
        trials = [r for r in ordered if (r.commit or "-") == commit]
        newest = trials[-1].started
        options.append(
            f"<option value='{column[commit]}' title='{e(commit)}'>{e(commit[:8])} {newest:%Y-%m-%d %H:%M}: "
            f"{e(_tally(trials))}</option>"
        )
        commit_rows, _ = identity_rows(trials)
        tables.append(
            f"<div class='by-commit' data-column='{column[commit]}' hidden><p>At commit <span title='{e(commit)}'>"
            f"{e(commit[:8])}</span> only: {e(_tally(trials))}.</p>"
            f"{_table(commit_rows, varying, higher, f'identities-{column[commit]}')}</div>"
        )
    select = (
        "<div class='filters'><label>commit<select id='commit-filter' onchange='showCommit(this)'>"
        f"<option value=''>all commits</option>{''.join(options)}</select></label></div>"
    )
    return [select, f"<div class='by-commit' data-column=''>{_table(rows, varying, higher)}</div>", *tables]


def experiment_page(experiment: str, records: Sequence[TrialSummary], higher: bool) -> str:
    """The page's HTML (written by the caller to ``experiments/<name>.html``)."""
    rows, varying = identity_rows(records)
    labels = {row["identity"]: _label(row, varying) for row in rows}
    parts = [
        "<nav><a href='../index.html'>all trials</a></nav>",
        f"<h1>Experiment {e(experiment)}</h1>",
        _outcomes(records),
        "<h2>Variants</h2>",
        *_by_commit(records, rows, varying, higher),
    ]
    order = value_order(records)
    grouped = grouped_data(
        records, varying, order, commit_columns(records), {r.key: _param_values(r) for r in records}, higher
    )
    if grouped is not None:
        parts.append(grouped_html(grouped))
    figure = parallel(experiment, rows, varying, higher, order)
    if figure is not None:
        parts.append(chart("parameters", figure))
    ranked = [row["identity"] for row in sorted(rows, key=lambda r: _rank(r, higher))]
    figure = over_commits(experiment, records, labels, shown=shown_identities(records, ranked, SHOWN))
    if figure is not None:
        parts.append(chart("over-commits", figure))
        parts.append(
            "<p>Hover a point for its trial; click it to open the trial; drag to zoom, double-click to reset.</p>"
        )
    parts.append(
        f"<p>{len(records)} trials of this experiment: <a href='../index.html#experiment={e(quote(experiment))}'>"
        "listed in the index</a>.</p>"
    )
    return page(f"Experiment {experiment}", "".join(parts), "../", charts=True)
