"""``python -m pytest_mitosis best``: the leaderboard of an experiment, or main grouped by one parameter.

Answers *which variant wins?* in the terminal, from the store alone (no unpickling, no user
code). Honest by construction: by default only one commit is ranked (the latest with passed
trials), because ranking trials of different code against each other compares the code, not
the variants; every row says its commit; trials that failed, were failed by a gate or were
interrupted are counted on a last line, never dropped silently.

The leaderboard ranks passed trials: it answers "which trial is the best result". ``--by``
answers "which variant wins", so it aggregates every trial that measured main
(:func:`..core.rules.measured`): a trial failed by the drift gate or a refuted hypothesis ran
to its end, and the gate judged the change, not the measurement. Aggregating passed trials
alone drops a variant exactly at the commit that made it worse, and ranks the survivors. Any
other grouping starts from ``load_trials().to_dataframe()`` (see the guide). No pytest import
here.
"""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from ..core.rules import Directions, failure_kind, measured
from ..store import Reader, RecordsError, TrialRecord
from .summary import distinct_digits

#: ``--agg``: how main is summarised over the other parameters of a group
AGGREGATES: dict[str, Callable[[list[float]], float]] = {
    "mean": statistics.fmean,
    "median": statistics.median,
    "min": min,
    "max": max,
    "count": lambda values: float(len(values)),
}


@dataclass(frozen=True)
class Scope:
    """The trials ranked: those of ``experiment`` at ``commit`` (``None``: every commit)."""

    experiment: str
    commit: str | None
    higher_is_better: bool
    #: the trials in scope, the best of each identity, best first: passed ones, and with ``judged`` also
    #: those failed only by a judgement of their main (the drift gate, a hypothesis)
    ranked: list[TrialRecord]
    #: what is not ranked, by kind ("failed", "gate-failed", ...) → count
    hidden: dict[str, int]
    header: str
    judged: bool = False


def _failure(record: TrialRecord) -> str | None:
    """Why ``record`` did not pass, as the report says it (:func:`..core.rules.failure_kind`)."""
    return failure_kind(record.status, record.verdict, record.message, record.accepted is not None)


def _counted(record: TrialRecord, judged: bool) -> bool:
    """Whether ``record`` may be ranked: it passed, or (``judged``) it measured main and only a judgement failed it."""
    return measured(record.status, _failure(record)) if judged else record.status == "passed"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def digits(values: Sequence[float]) -> int:
    """The significant digits (4 at least, 12 at most) that tell the values apart, as every view shows main
    (:func:`..summary.distinct_digits`)."""
    return distinct_digits(values, least=4, most=12)


def _kind(record: TrialRecord) -> str:
    """Why a trial is not ranked: ``gate-failed`` is a trial that ran and recorded main, then failed its
    drift gate or hypothesis; ``failed`` one that raised, or ran code that was not its commit's (it may have
    recorded a main: the report tells the two apart by :func:`..core.rules.failure_kind`, and so does this)."""
    if record.status == "failed":
        return "gate-failed" if measured(record.status, _failure(record)) else "failed"
    return record.status  # interrupted, running


def _resolve_commit(commits: list[str | None], rev: str) -> str | None:
    found = {c for c in commits if c is not None and c.startswith(rev.lower())}
    if len(found) == 1:
        return found.pop()
    known = ", ".join(dict.fromkeys((c or "-")[:8] for c in commits)) or "(none)"
    if not found:
        raise RecordsError(f"no trial of this experiment ran at a commit starting with {rev!r}; its commits: {known}")
    raise RecordsError(f"the commit prefix {rev!r} matches {len(found)} commits; give more characters: {known}")


def scope(
    reader: Reader,
    experiment: str | None,
    commit: str | None,
    every: bool,
    higher_is_better: dict[str, bool],
    judged: bool = False,
) -> Scope:
    """The trials ``best`` ranks, with the header line that says which commit and direction: passed trials,
    and with ``judged`` (``--by``) every trial that measured main (:func:`_counted`)."""
    experiment = _experiment(reader, experiment)
    records = [r for r in reader.trials(experiment) if r.reproduces is None]  # newest first, no debug
    chosen, header = _commit_in_scope(experiment, records, commit, every, judged)
    inside = [r for r in records if every or r.commit == chosen]
    # the direction the newest trial in scope was judged by; the pyproject's for trials that recorded none
    recorded = next((d for r in inside if (d := Directions.from_json(r.directions)) is not None), None)
    higher = recorded("main") if recorded is not None else higher_is_better.get(experiment, False)
    head, _, tail = header.rpartition("{direction}")  # the last: an experiment's name may hold the same text
    header = head + ("higher is better" if higher else "lower is better") + tail
    ranked, hidden = _rank(inside, higher, judged)
    elsewhere = len(records) - len(inside)
    if elsewhere:
        hidden["at other commits (--all)"] = elsewhere
    return Scope(experiment, chosen, higher, ranked, hidden, header, judged)


def _experiment(reader: Reader, experiment: str | None) -> str:
    """The experiment named, checked against the store's; the store's only one when none is named."""
    known = reader.experiments()
    if experiment is not None:
        if experiment not in known:
            raise RecordsError(
                f"no experiment {experiment!r} in {reader.location}; its experiments: {', '.join(known) or '(none yet)'}"
            )
        return experiment
    if len(known) == 1:
        return known[0]
    if not known:
        raise RecordsError(f"no trials in {reader.location}")
    raise RecordsError(
        f"the store holds {len(known)} experiments: {', '.join(known)}; name one: python -m pytest_mitosis best EXPERIMENT"
    )


def _commit_in_scope(
    experiment: str, records: list[TrialRecord], commit: str | None, every: bool, judged: bool
) -> tuple[str | None, str]:
    """``(commit ranked, header)``: every commit (``--all``), the one ``--commit`` names, or the latest with
    trials to rank (passed; with ``judged``, measured: a commit whose every trial failed the drift gate is
    the code as it is now); the header keeps a ``{direction}`` for :func:`scope` to fill."""
    if every and commit is not None:
        raise RecordsError("--all ranks every commit and --commit one of them: give one of the two")
    if every:
        return None, f"experiment {experiment} at every commit (--commit REV for one); main: {{direction}}"
    if commit is not None:
        chosen = _resolve_commit([r.commit for r in records], commit)
        return chosen, f"experiment {experiment} at commit {chosen[:8] if chosen else '-'}; main: {{direction}}"
    counted = [r for r in records if _counted(r, judged)]
    chosen = counted[0].commit if counted else records[0].commit if records else None
    which = "measured" if judged else "passed"
    header = (
        f"experiment {experiment} at commit {(chosen or '-')[:8]} (the latest with {which} trials; "
        "--all for every commit, --commit REV for one); main: {direction}"
    )
    return chosen, header


def _rank(inside: list[TrialRecord], higher: bool, judged: bool) -> tuple[list[TrialRecord], dict[str, int]]:
    """``(the best trial of each identity, best first; what is not ranked, by kind → count)``: of the passed
    trials, or with ``judged`` of every trial that measured main (:func:`_counted`)."""
    hidden: dict[str, int] = {}
    best: dict[str, TrialRecord] = {}
    for r in inside:
        counted = _counted(r, judged)
        main = _number(r.main) if counted else None
        if main is None:
            if counted:
                kind = f"{'passed' if r.status == 'passed' else 'gate-failed'} without a numeric main"
            else:
                kind = _kind(r)
            hidden[kind] = hidden.get(kind, 0) + 1
            continue
        held = best.get(r.identity)
        if held is None or (main > held.main if higher else main < held.main):
            best[r.identity] = r
    return sorted(best.values(), key=lambda r: (-r.main if higher else r.main, r.variants)), hidden


def not_shown(found: Scope) -> str:
    """The last line: every trial in the experiment the table leaves out, by kind (none: no line)."""
    order = [
        "failed", "gate-failed", "interrupted", "running", "passed without a numeric main",
        "gate-failed without a numeric main",
    ]  # fmt: skip
    kinds = sorted(found.hidden, key=lambda k: (order.index(k) if k in order else len(order), k))
    if not kinds:
        return ""
    parts = ", ".join(f"{found.hidden[k]} {k}" for k in kinds)
    return f"not shown: {parts}: python -m pytest_mitosis history {found.experiment}"


def parameters(records: Sequence[TrialRecord]) -> list[str]:
    """The ``step.param`` names of the records' parameters (the seed left out), in first-seen order."""
    names: dict[str, None] = {}
    for r in records:
        for p in r.params:
            if p.get("kind") != "seed":
                names[f"{p['step']}.{p['name']}"] = None
    return list(names)


def _pick(records: Sequence[TrialRecord], by: str) -> str:
    """``by`` as a full ``step.param`` name (a bare ``param`` when one step has it)."""
    names = parameters(records)
    if by in names:
        return by
    matches = [n for n in names if n.rsplit(".", 1)[-1] == by]
    if len(matches) == 1:
        return matches[0]
    listing = ", ".join(names) or "(none)"
    if matches:
        raise RecordsError(f"--by {by}: several steps have it: {', '.join(matches)}; name one as step.param")
    raise RecordsError(f"--by {by}: no such parameter in the trials shown; the parameters: {listing}")


def _value(record: TrialRecord, name: str) -> str:
    step, param = name.rsplit(".", 1)
    for p in record.params:
        if p["step"] == step and p["name"] == param:
            return str(p.get("text") if p.get("text") is not None else p.get("repr"))
    return "-"


def _trial_json(rank: int, r: TrialRecord) -> dict[str, Any]:
    return {
        "rank": rank,
        "key": r.key,
        "variants": r.variants,
        "main": r.main,
        "iteration": r.iteration,
        "commit": r.commit,
        "started": r.started.isoformat(timespec="seconds"),
        "status": r.status,
        "failure": _failure(r),  # None when it passed; "drift gate", "hypothesis refuted", ... when it did not
    }


def best(
    reader: Reader,
    experiment: str | None,
    by: str | None,
    agg: str,
    commit: str | None,
    every: bool,
    as_json: bool,
    higher_is_better: dict[str, bool],
    table: Callable[[list[list[str]]], str],
) -> str:
    """The ``best`` command's output: a table (``table`` pads and escapes every cell), or JSON."""
    found = scope(reader, experiment, commit, every, higher_is_better, judged=by is not None)
    about: dict[str, Any] = {
        "experiment": found.experiment,
        "commit": None if every else found.commit,
        "higher_is_better": found.higher_is_better,
        "not_shown": found.hidden,
    }
    if not found.ranked:
        if as_json:
            return json.dumps({**about, "rows": []}, indent=2)
        tail = not_shown(found)
        which = "measured" if found.judged else "passed"
        return f"{found.header}\nno {which} trial with a numeric main{chr(10) + tail if tail else ''}"
    if by is None:
        if as_json:
            return json.dumps({**about, "rows": [_trial_json(i, r) for i, r in enumerate(found.ranked, 1)]}, indent=2)
        return _leaderboard(found, table)
    return _grouped(found, _pick(found.ranked, by), agg, about if as_json else None, table)


def _leaderboard(found: Scope, table: Callable[[list[list[str]]], str]) -> str:
    """The ranked trials as a table, best first."""
    n = digits([r.main for r in found.ranked])
    rows = [["rank", "variants", "main", "iteration", "key", "commit", "date"]]
    for i, r in enumerate(found.ranked, 1):
        rows.append(
            [
                str(i), r.variants or "-", f"{r.main:.{n}g}", str(r.iteration), r.key, (r.commit or "-")[:8],
                r.started.strftime("%Y-%m-%d %H:%M"),
            ]
        )  # fmt: skip
    tail = not_shown(found)
    return "\n".join([found.header, table(rows)] + ([tail] if tail else []))


def _grouped(
    found: Scope, name: str, agg: str, about: dict[str, Any] | None, table: Callable[[list[list[str]]], str]
) -> str:
    """Main summarised (``agg``) by the values of parameter ``name``, best group first: as JSON when ``about``
    (what the JSON says of the scope) is given, else as a table. Gate-failed trials are aggregated (``found``
    was scoped with ``judged``); each group says how many it holds, and a gate-failed best trial says so."""
    groups: dict[str, list[TrialRecord]] = {}
    for r in found.ranked:  # best first, so each group's first trial is its best
        groups.setdefault(_value(r, name), []).append(r)
    summary = AGGREGATES[agg]
    values = {v: summary([t.main for t in g]) for v, g in groups.items()}
    higher = found.higher_is_better or agg == "count"
    order = sorted(groups, key=lambda v: (-values[v] if higher else values[v], v))
    winner = order[0] if agg != "count" else None  # a count is not a score: no best group
    failed = {v: sum(t.status != "passed" for t in g) for v, g in groups.items()}
    if about is not None:
        rows_json = [
            {"value": v, agg: values[v], "count": len(groups[v]), "gate_failed": failed[v], "best": {k: x for k, x in _trial_json(0, groups[v][0]).items() if k != "rank"}, "best_group": v == winner}
            for v in order
        ]  # fmt: skip
        return json.dumps({**about, "by": name, "agg": agg, "rows": rows_json}, indent=2)
    m = digits(list(values.values()) + [g[0].main for g in groups.values()])
    rows = [["", name, f"{agg} main", "count", "best trial", "its main", "key"]]
    for v in order:
        top = groups[v][0]
        shown = f"{values[v]:g}" if agg == "count" else f"{values[v]:.{m}g}"
        rows.append(
            [
                "*" if v == winner else "",
                v,
                shown,
                str(len(groups[v])) + (f" ({failed[v]} gate-failed)" if failed[v] else ""),
                top.variants or "-",
                f"{top.main:.{m}g}",
                top.key + ("" if top.status == "passed" else " (gate-failed)"),
            ]
        )
    others = [p for p in parameters(found.ranked) if p != name]
    over = f"over {', '.join(others)}" if others else "one trial per identity"
    lines = [
        found.header,
        f"{agg} of main by {name} ({over}; the best of each identity, gate-failed trials included: their main "
        f"was measured; * the best {name})",
        table(rows),
    ]
    tail = not_shown(found)
    return "\n".join(lines + ([tail] if tail else []))
