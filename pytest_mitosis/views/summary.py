"""What users see: junit properties, the report header and the terminal summary.

Everything the controller needs travels in ``report.user_properties``: pytest-xdist sends
reports (not the stash) from workers, so the summary on the controller is built from them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.rules import series_points
from ..store import cell

if TYPE_CHECKING:
    from ..execution.runner import TrialOutcome


#: the ``when`` of the failed report pytest-xdist makes for an item whose worker crashed while running it
#: (see ``distributed.py``, which adds the trial's key to it)
CRASHED = "???"


def user_properties(outcome: TrialOutcome, session: str | None = None) -> list[tuple[str, Any]]:
    """``main`` first (the metric CI reads), then ``mitosis.*`` provenance (``mitosis.session``: the key of
    the pytest session that ran the trial) and metrics."""
    props: list[tuple[str, Any]] = []
    if outcome.main is not None:
        props.append(("main", outcome.main))
    props += [("mitosis.trial", outcome.name), ("mitosis.key", outcome.key)]
    if session is not None:
        props.append(("mitosis.session", session))
    props.append(("mitosis.html", str(outcome.html)))
    if outcome.iteration is not None:
        props.append(("mitosis.iteration", outcome.iteration))
    props.append(("mitosis.commit", outcome.commit or ""))
    if outcome.seed is not None:
        props.append(("mitosis.seed", outcome.seed))
    props += [("mitosis.warning", text) for text in outcome.warnings]
    props += [("mitosis.compare", text) for text in outcome.comparisons]
    if outcome.spec.expect is not None:
        props += [("mitosis.expect", outcome.spec.expect), ("mitosis.verdict", outcome.verdict or "unchecked")]
    for name, value in outcome.metrics.items():
        points = series_points(value)  # a series: its last value (the whole series is in the store)
        props.append((f"mitosis.metrics.{name}", value if points is None else points[-1][1]))
    return props


@dataclass(frozen=True)
class SummaryRow:
    nodeid: str
    outcome: str
    main: Any
    html: str | None
    iteration: Any = None
    key: str | None = None
    warnings: tuple[str, ...] = ()
    comparisons: tuple[str, ...] = ()
    verdict: str | None = None
    #: the failure as pytest reports it (the CI summary shows its first line)
    message: str | None = None
    commit: str | None = None
    #: ``(name, value)`` of every metric, as in junit XML (a series by its last value)
    metrics: tuple[tuple[str, Any], ...] = ()
    #: the key of the trial this row reproduces (``--mitosis-reproduce``)
    reproduces: str | None = None


def summary_row(nodeid: str, outcome: str, properties: list[tuple[str, Any]], message: str | None = None) -> SummaryRow:
    props = dict(properties)
    return SummaryRow(
        nodeid,
        outcome,
        props.get("main"),
        props.get("mitosis.html"),
        props.get("mitosis.iteration"),
        props.get("mitosis.key"),
        tuple(value for name, value in properties if name == "mitosis.warning"),
        tuple(value for name, value in properties if name == "mitosis.compare"),
        props.get("mitosis.verdict"),
        message,
        props.get("mitosis.commit") or None,
        tuple(
            (name.removeprefix("mitosis.metrics."), value)
            for name, value in properties
            if name.startswith("mitosis.metrics.")
        ),
        props.get("mitosis.reproduces"),
    )


def summary_lines(rows: list[SummaryRow]) -> list[str]:
    """One line per trial; its hypothesis verdict and comparisons folded into that line.

    Warnings (changed packages, non-determinism) follow in a block of their own: they are
    rare, and each deserves a line. Every value passes through :func:`~pytest_mitosis.store.cell`:
    a ``main`` that is a text, or a warning naming a trial of the store, stays on its line.
    """
    width = max(len(cell(r.nodeid)) for r in rows)
    lines = []
    for row in rows:
        main = (
            "main=-"
            if row.main is None
            else f"main={row.main!r}"
            if not isinstance(row.main, str)
            else f"main={cell(row.main)}"
        )
        trial = f"#{row.iteration} " if row.iteration is not None else "debug " if row.key else ""
        trial += f"key {row.key}" if row.key else "(not run)"
        notes = ([f"hypothesis {cell(row.verdict)}"] if row.verdict else []) + [
            f"compare: {cell(text)}" for text in row.comparisons
        ]
        folded = f"  [{'; '.join(notes)}]" if notes else ""
        lines.append(
            f"{cell(row.nodeid):<{width}}  {row.outcome.upper():<6}  {trial}  {main}{folded}  {cell(row.html or '')}".rstrip()
        )
    warned = [(row.nodeid, text) for row in rows for text in row.warnings]
    if warned:
        lines.append("")
        lines += [f"warning: {cell(nodeid)}: {cell(text)}" for nodeid, text in warned]
    return lines


def header_lines(pyproject: Path, trials_folder: str, cwd: str, seed: int, debug: bool) -> list[str]:
    """The report header: where the experiments and trials are, where kernels run, the seed to repeat."""
    lines = [
        f"mitosis: experiments from {pyproject}, trials folder {trials_folder}",
        f"mitosis: kernels run in {cwd}",
        f"mitosis: seed {seed} (repeat with --mitosis-seed {seed})",
    ]
    if debug:
        lines.append("mitosis: DEBUG MODE: guards waived; trials kept apart in the debug folder")
    return lines


def session_line(key: str, rows: list[SummaryRow], options: str = "") -> str:
    """The terminal summary's last word: the session's key, what ran, and how to find it again
    (``options``: what ``python -m pytest_mitosis`` needs to find this session's store, see ``session_end.py``)."""
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.outcome] = counts.get(row.outcome, 0) + 1
    order = ("passed", "failed", "error", "interrupted")
    shown = ", ".join(f"{counts[o]} {o}" for o in (*order, *sorted(set(counts) - set(order))) if o in counts)
    total = sum(counts.values())
    what = f"{total} trial{'s' if total != 1 else ''}" + (f" ({shown})" if shown else "")
    command = " ".join(filter(None, ("python -m pytest_mitosis", options, f"history --session {key}")))
    return f"mitosis session {key}: {what}; {command}"
