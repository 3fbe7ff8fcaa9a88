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

The page is ``templates/experiment.html.j2``: this module decides what it shows (texts and
numbers, never HTML), the template how.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from jinja2 import Environment

from ...core.rules import as_number
from .charts import over_commits, parallel, shown_identities
from .grouped import grouped_data, pickers
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


def _trend(row: dict[str, Any], higher: bool) -> dict[str, Any] | None:
    """The change of latest main since the identity's previous passed trial (``None``: there is no change to show)."""
    if row["latest"] is None or row["previous"] is None:
        return None
    delta = row["latest"] - row["previous"]
    before, after = ((r.commit or "-")[:8] for r in (row["previous_record"], row["latest_record"]))
    if delta == 0:
        return {"sort": "0", "better": None, "text": "= unchanged", "before": before, "after": after}
    arrow = "▲" if delta > 0 else "▼"
    return {
        "sort": repr(delta),
        "better": (delta > 0) == higher,
        "text": f"{arrow} {delta:+.3g}",
        "before": before,
        "after": after,
    }


def _rank(row: dict[str, Any], higher: bool) -> tuple[bool, float]:
    """Best latest main first; identities without one last."""
    latest = row["latest"]
    return (latest is None, 0.0 if latest is None else -latest if higher else latest)


def _table(rows: list[dict[str, Any]], varying: list[str], higher: bool, element: str = "identities") -> dict[str, Any]:
    """The identities' table as ``experiment.html.j2`` (its ``identities`` macro) shows it: texts, not HTML."""
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
    shown = []
    for row in sorted(rows, key=lambda r: _rank(r, higher)):
        best_main, best_record = None, None
        if row["mains"]:
            best_main, best_record = (max if higher else min)(
                zip(row["mains"], row["main_records"]), key=lambda p: p[0]
            )
        shown.append(
            {
                "best": best is not None and row["latest"] == best,
                "labels": [row["params"].get(n, "-") for n in varying]
                if varying
                else [row["variants"] or "(defaults)"],
                "latest": _num(row["latest"]),
                "latest_record": row["latest_record"] if row["latest"] is not None else None,
                "best_main": _num(best_main),
                "best_record": best_record,
                "trials": row["trials"],
                "counts": counts(row["trials"], row["passed"], row["failures"]),
                "trend": _trend(row, higher),
                "metrics": [_num(as_number(row["latest_record"].metrics.get(name))) for name in metric_names],
                "last_record": row["last_record"],
            }
        )
    return {"element": element, "head": head, "rows": shown}


def _tally(records: Sequence[TrialSummary]) -> str:
    failures: dict[str, int] = defaultdict(int)
    for r in records:
        if r.failure is not None:
            failures[r.failure] += 1
    return counts(len(records), sum(1 for r in records if r.status == "passed"), failures)


def _outcomes(records: Sequence[TrialSummary]) -> dict[str, Any] | None:
    """All trials counted by outcome, then those of the newest commit: a new commit whose trials all failed shows."""
    if not records:
        return None
    newest = max(records, key=lambda r: r.started)
    at_newest = [r for r in records if r.commit == newest.commit]
    return {
        "all": _tally(records),
        "commit": newest.commit or "-",
        "started": newest.started,
        "newest": _tally(at_newest),
    }


def commit_columns(records: Sequence[TrialSummary]) -> dict[str, int]:
    """Each commit's column, in the order first run: the commit filter's values, shared by every view it filters."""
    column: dict[str, int] = {}
    for r in sorted(records, key=lambda r: r.started):
        column.setdefault(r.commit or "-", len(column))
    return column


def _by_commit(records: Sequence[TrialSummary], varying: list[str], higher: bool) -> list[dict[str, Any]]:
    """One table per commit (newest first), which the commit filter shows instead of every commit's table.

    Each commit's table is built from its trials alone, so its "latest" and "best" are that
    commit's and its counts say how many of its trials failed; picking a commit also zooms
    "main over commits" to its column. Built here, not in the browser: the rows are the same
    Python as the whole table's. Empty when there is one commit only: there is nothing to filter.
    """
    ordered = sorted(records, key=lambda r: r.started)
    column = commit_columns(records)
    if len(column) < 2:
        return []
    found = []
    for commit in sorted(column, key=lambda c: -column[c]):
        trials = [r for r in ordered if (r.commit or "-") == commit]
        commit_rows, _ = identity_rows(trials)
        found.append(
            {
                "commit": commit,
                "column": column[commit],
                "newest": trials[-1].started,
                "tally": _tally(trials),
                "table": _table(commit_rows, varying, higher, f"identities-{column[commit]}"),
            }
        )
    return found


def experiment_page(env: Environment, experiment: str, records: Sequence[TrialSummary], higher: bool) -> str:
    """The page's HTML (written by the caller to ``experiments/<name>.html``)."""
    rows, varying = identity_rows(records)
    labels = {row["identity"]: _label(row, varying) for row in rows}
    order = value_order(records)
    grouped = grouped_data(
        records, varying, order, commit_columns(records), {r.key: _param_values(r) for r in records}, higher
    )
    ranked = [row["identity"] for row in sorted(rows, key=lambda r: _rank(r, higher))]
    return env.get_template("experiment.html.j2").render(
        title=f"Experiment {experiment}",
        prefix="../",
        charts=True,
        experiment=experiment,
        direction="higher is better" if higher else "lower is better",
        outcomes=_outcomes(records),
        table=_table(rows, varying, higher),
        commits=_by_commit(records, varying, higher),
        grouped=grouped,
        pickers=pickers(grouped) if grouped is not None else None,
        parameters=parallel(experiment, rows, varying, higher, order),
        over_commits=over_commits(experiment, records, labels, shown=shown_identities(records, ranked, SHOWN)),
        trials=len(records),
    )
