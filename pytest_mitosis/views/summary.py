"""What users see: junit properties, the report header and the terminal summary.

Everything the controller needs travels in ``report.user_properties``: pytest-xdist sends
reports (not the stash) from workers, so the summary on the controller is built from them.
"""

from __future__ import annotations

import math
import re
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.rules import GATE_FAILED, series_points
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
    if session is not None:  # the same text for every trial: one string, not one a trial (10,000 of them)
        props.append(("mitosis.session", sys.intern(session)))
    if outcome.html is not None:  # a trial whose files were never written (a disk full, a job that died) has none
        props.append(("mitosis.html", str(outcome.html)))
    if outcome.iteration is not None:
        props.append(("mitosis.iteration", outcome.iteration))
    props.append(("mitosis.commit", sys.intern(outcome.commit or "")))
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


@dataclass(frozen=True, slots=True)  # one per trial, kept until the session ends: no __dict__ each
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


#: an experiment with more trials than this lists only its failures in the terminal, unless ``-v``
LIST_LIMIT = 20

#: the terminal's width the trial lines are kept within (a failure's message is cut to it)
WIDTH = 80

#: the outcomes that count as failures (listed first, always listed)
FAILURES = ("failed", "error", "interrupted")

_SEED = re.compile(r"; the seed changed too \((?P<old>[^()]*) -> (?P<new>[^()]*)\), which alone may explain it")
_MOVED = re.compile(
    r"^(?P<name>\S+) moved from (?P<before>.*?) \((?P<where>[^()]*)\) to (?P<after>.*?)"
    r"(?: \((?P<delta>[+-][^()]*)\))?(?P<gate>: .*)?$"
)
_NEW = "no earlier passed trial"
_UNCHANGED = "main and metrics unchanged"


def trial_id(nodeid: str) -> str:
    """``pyproject.toml::sine[amplitude_4-slow]`` → ``sine[amplitude_4-slow]``: the stable part."""
    return nodeid.split("::", 1)[1] if "::" in nodeid else nodeid


def experiment_of(nodeid: str) -> str:
    """``pyproject.toml::sine[amplitude_4-slow]`` → ``sine``."""
    return trial_id(nodeid).split("[", 1)[0]


def natural(text: str) -> tuple[Any, ...]:
    """A sort key that puts ``n2`` before ``n10`` and ``noise_0.05`` before ``noise_0.2``: variants are often
    numbered (the split keeps texts at even places and numbers at odd ones, so two keys always compare)."""
    return tuple(float(part) if i % 2 else part for i, part in enumerate(re.split(r"(\d+(?:\.\d+)?)", text)))


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _rounded(value: float, digits: int) -> str:
    """``value`` to ``digits`` significant digits, but never fewer than its integer part has (no ``1.23e+05``)."""
    if digits >= 17:
        return repr(value)  # the shortest text that reads back as the same float
    if value and 1 <= abs(value) < 1e16:
        digits = max(digits, int(math.floor(math.log10(abs(value)))) + 1)
    return f"{value:.{digits}g}"


def distinct_digits(values: Iterable[Any], least: int = 4, most: int = 17) -> int:
    """The fewest significant digits (at least ``least``) at which the distinct numbers among ``values`` differ.

    ``0.1234`` and ``0.1239`` need 4 (at 3 they would read ``0.123`` and ``0.124``, a
    difference twice the true one), ``0.12345`` and ``0.12349`` 5; never fewer than 4, as ``best``
    prints them (:func:`.best_text.digits`), so the views agree. A reader compares the values
    shown together, and the 17 digits of a float's ``repr`` hide which of them differ. The last
    digit shown is no coarser than the gap between two neighbouring values. Texts, ``None``,
    booleans and NaN are not numbers and count for nothing here.
    """
    numbers = sorted({number for number in map(_finite, values) if number is not None})
    gaps = [(a, b, b - a) for a, b in zip(numbers, numbers[1:])]

    def unit(value: float, digits: int) -> float:  # the value of the last digit shown
        return 10.0 ** (math.floor(math.log10(abs(value))) - digits + 1) if value else 0.0

    for digits in range(least, most):
        if all(max(unit(a, digits), unit(b, digits)) <= gap * (1 + 1e-9) for a, b, gap in gaps):
            if len({_rounded(number, digits) for number in numbers}) == len(numbers) and not any(
                _whole_below_one(number, digits) for number in numbers
            ):
                return digits
    return most


def _whole_below_one(number: float, digits: int) -> bool:
    """A fraction shown as a whole number: an R² of ``0.99997`` read ``1`` at 4 digits (5 show ``0.99997``)."""
    return 0 < abs(number) < 1 and float(_rounded(number, digits)).is_integer()


def number_text(value: Any, digits: int = 17) -> str:
    """A recorded value for a table: numbers rounded to ``digits`` significant digits (integers whole),
    anything else as it was recorded, on one line (``-`` when there is none)."""
    if value is None:
        return "-"
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    number = _finite(value)
    if number is not None:
        return _rounded(number, digits)
    return cell(value) if isinstance(value, str) else repr(value)


@dataclass(frozen=True)
class Change:
    """One metric that moved since the previous trial of the identity, read back from its comparison's text."""

    name: str
    before: str
    after: str
    #: the previous trial (``trial_x-1, key K``)
    where: str
    #: ``+0.327, +245%`` (``None`` when a value is not a number)
    delta: str | None
    #: what the drift gate said (``higher by more than the allowed 5%``), ``None`` when it let it pass
    gate: str | None

    @property
    def short(self) -> str:
        """``+245%`` (or ``+0.327`` from 0, or ``a → b`` for texts): what moved, in a few characters."""
        if self.delta:
            return self.delta.rsplit(", ", 1)[-1]
        return f"{self.before} → {self.after}"

    def text(self, digits: int | None = None) -> str:
        """``main 0.0098 → 0.337 (+245%)``, numbers to ``digits`` (those of the values shown beside), more
        when the two need more to differ."""
        before, after = _number_or_text(self.before), _number_or_text(self.after)
        digits = max(digits or 0, distinct_digits([before, after]))
        shown = f"{self.name} {number_text(before, digits)} → {number_text(after, digits)}"
        return shown + (f" ({self.delta.rsplit(', ', 1)[-1]})" if self.delta else "")


def _number_or_text(text: str) -> Any:
    try:
        return float(text)
    except ValueError:
        return text


def without_seed(text: str) -> tuple[str, tuple[str, str] | None]:
    """A comparison without its "the seed changed too" note, and the seeds it named: the note is said once."""
    found = _SEED.search(text)
    if found is None:
        return text, None
    return text[: found.start()] + text[found.end() :], (found.group("old"), found.group("new"))


def parse_change(text: str) -> Change | None:
    """The :class:`Change` a comparison describes (``None`` for another kind of comparison, or a text
    of another form: the views then show the comparison as it is)."""
    found = _MOVED.match(without_seed(text)[0])
    if found is None:
        return None
    gate = found.group("gate")
    return Change(
        found.group("name"),
        found.group("before"),
        found.group("after"),
        found.group("where"),
        found.group("delta"),
        gate[2:] if gate and GATE_FAILED in gate else None,
    )


def change_text(row: SummaryRow, named: bool = True) -> str:
    """The trial's change since the previous trial of its identity in a few words (``""`` without a comparison):
    ``new``, ``unchanged``, ``main +245%``, ``main +1.2%; loss moved`` (``+1.2%; loss moved`` when not
    ``named``: written after the main it is about)."""
    texts = [without_seed(text)[0] for text in row.comparisons]
    if not texts:
        return ""
    if any(text.startswith(_NEW) for text in texts):
        return "new"
    unchanged = [text for text in texts if text.startswith(_UNCHANGED)]
    if unchanged:  # compared with a trial that ``accept`` made the baseline: say so, it is not the last pass
        return "unchanged from the accepted baseline" if unchanged[0].endswith(", accepted") else "unchanged"
    changes = [parse_change(text) for text in texts]
    parts = [f"main {c.short}" if named else c.short for c in changes if c is not None and c.name == "main"]
    others = [c.name for c in changes if c is not None and c.name != "main"]
    unread = sum(c is None for c in changes)
    if others:
        parts.append(f"{others[0]} moved" if len(others) == 1 else f"{len(others)} metrics moved")
    if unread:
        parts.append("changed")
    return cell("; ".join(parts))


def regressions(row: SummaryRow) -> list[str]:
    """The comparisons of ``row`` its drift gate failed (a metric worse beyond its limit), without the seed note."""
    return [without_seed(text)[0] for text in row.comparisons if GATE_FAILED in text]


def seed_changes(rows: Iterable[SummaryRow]) -> list[tuple[str, str]]:
    """Each distinct ``(old, new)`` seed the comparisons named, in the order first seen."""
    found = [without_seed(text)[1] for row in rows for text in row.comparisons]
    return list(dict.fromkeys(pair for pair in found if pair is not None))


def seed_note(rows: Iterable[SummaryRow]) -> str | None:
    """Once for the session: the seed changed since the trials compared with, which alone may explain a change."""
    pairs = seed_changes(rows)
    if not pairs:
        return None
    seeds = ", ".join(f"{old} → {new}" for old, new in pairs)
    return f"the seed changed since the trials compared with ({seeds}): that alone may explain a change"


def is_failure(row: SummaryRow) -> bool:
    return row.outcome in FAILURES


def sort_key(row: SummaryRow) -> tuple[Any, ...]:
    """Regressions first, then the other failures, then the rest; by experiment and trial id within each."""
    rank = 0 if regressions(row) else 1 if is_failure(row) else 2
    return (rank, experiment_of(row.nodeid), natural(trial_id(row.nodeid)))


def best_row(rows: Iterable[SummaryRow], higher_is_better: bool) -> SummaryRow | None:
    """The passed trial with the best numeric main (``None`` when no passed trial has one)."""
    scored = [(_finite(row.main), row) for row in rows if row.outcome == "passed"]
    numbers = [(number, row) for number, row in scored if number is not None]
    if not numbers:
        return None
    pick = max if higher_is_better else min
    return pick(numbers, key=lambda pair: pair[0])[1]


def counts_text(rows: Sequence[SummaryRow]) -> str:
    """``3 passed, 1 failed, 2 errors``: the outcomes in a fixed order, then any other (pytest's words)."""
    seen = [row.outcome for row in rows]
    order = ("passed", *FAILURES, "skipped")
    return ", ".join(_counted(seen.count(o), o) for o in (*order, *sorted(set(seen) - set(order))) if o in seen)


def _counted(count: int, outcome: str) -> str:
    """``2 errors`` as pytest says it (the other outcomes are past participles: ``2 failed``)."""
    return f"{count} {outcome}{'s' if outcome == 'error' and count != 1 else ''}"


def by_experiment(rows: Iterable[SummaryRow]) -> dict[str, list[SummaryRow]]:
    """The rows of each experiment, experiments by name, trials by id (numbers in ids in their order)."""
    groups: dict[str, list[SummaryRow]] = {}
    for row in sorted(rows, key=lambda r: (experiment_of(r.nodeid), natural(trial_id(r.nodeid)))):
        groups.setdefault(experiment_of(row.nodeid), []).append(row)
    return groups


def shown_path(path: str | Path, here: Path | None) -> str:
    """``path`` relative to ``here`` (the current folder) when under it, else as it is: shorter, and still
    what a shell in that folder can open."""
    if here is None:
        return str(path)
    try:
        return str(Path(path).relative_to(here))
    except ValueError:
        return str(path)


def _cut(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def _first_line(message: str | None) -> str:
    """The line of a failure that says what went wrong: the first, or, when it only introduces a list
    (``... does not match its record exactly:``), the list's first item (``main: recorded 1, reproduced 2``)."""
    lines = [line.strip() for line in (message or "").splitlines() if line.strip()]
    if len(lines) > 1 and lines[0].endswith(":"):
        return lines[1]
    return lines[0] if lines else ""


def summary_lines(
    rows: list[SummaryRow],
    *,
    here: Path | None = None,
    higher_is_better: Callable[[str], bool] = lambda trial: False,
    verbose: bool = False,
    source: str | None = None,
) -> list[str]:
    """The terminal summary: a header per experiment with its counts and best main, then its trials.

    An experiment lists its trials when it has at most :data:`LIST_LIMIT` of them, or with
    ``-v``; past that only its failures (always listed), and a line says how many are left out:
    120 lines scroll the failures and the session's last line out of sight, and ``history
    --session`` lists every trial anyway. Each main shows the significant digits that tell the
    experiment's shown values apart (:func:`distinct_digits`). A failure adds its message's first line
    and its page (every trial its page with ``-v``), on lines of their own and relative to ``here`` (the
    current folder) when under it, so that a line fits :data:`WIDTH` columns for ids of ordinary length. ``source`` is the ``pyproject.toml`` the node ids
    start with, said once. The verdict of a hypothesis and the change since the previous trial are
    on the trial's line; warnings follow in a block of their own (they are rare, and each deserves a
    line). Every value passes through :func:`~pytest_mitosis.store.cell`.
    """
    lines = [f"experiments from {cell(source)}"] if source else []
    for experiment, group in by_experiment(rows).items():
        lines += _experiment_lines(experiment, group, higher_is_better(trial_id(group[0].nodeid)), verbose, here)
    note = seed_note(rows)
    if note:
        lines.append(f"note: {note}")
    warned = [(row.nodeid, text) for row in rows for text in row.warnings]
    if warned:
        lines.append("")
        lines += [f"warning: {cell(trial_id(nodeid))}: {cell(text)}" for nodeid, text in warned]
    return lines


def _experiment_lines(
    experiment: str, group: list[SummaryRow], higher: bool, verbose: bool, here: Path | None
) -> list[str]:
    """One experiment in the terminal summary: its header (counts, best main), its listed trials, and how many
    are not listed (see :func:`summary_lines`)."""
    best = best_row(group, higher)
    listed = group if verbose or len(group) <= LIST_LIMIT else [row for row in group if is_failure(row)]
    digits = distinct_digits([row.main for row in listed] + ([best.main] if best else []))
    head = f"{cell(experiment)}: {len(group)} trial{'s' if len(group) != 1 else ''}: {counts_text(group)}"
    if best is not None and len(group) > 1:
        head += f"; best main {number_text(best.main, digits)} ({cell(trial_id(best.nodeid))})"
    lines = [head]
    width = min(max(len(cell(trial_id(row.nodeid))) for row in listed), 40) if listed else 0
    for row in listed:
        lines += _trial_lines(row, width, digits, verbose, here)
    left = [row for row in group if row not in listed]
    if left:
        lines.append(f"  ({counts_text(left)} not listed: -v lists them)")
    return lines


def _trial_lines(row: SummaryRow, width: int, digits: int, verbose: bool, here: Path | None) -> list[str]:
    """One trial's line (outcome, iteration and key, main and its change, verdict); under a failure, why it
    failed (the gates it failed, else its message's first line); its page for a failure, or with ``-v``."""
    trial = f"#{row.iteration} " if row.iteration is not None else "debug " if row.key else ""
    trial += f"key {row.key}" if row.key else "(not run)"
    change = change_text(row, named=False)
    main = f"main {number_text(row.main, digits)}" + (f" ({change})" if change else "")
    verdict = f"  hypothesis {cell(row.verdict)}" if row.verdict else ""
    name = cell(trial_id(row.nodeid))
    lines = [f"  {name:<{width}}  {row.outcome.upper():<6}  {trial}  {main}{verdict}".rstrip()]
    if is_failure(row):
        gated = [parse_change(text) for text in regressions(row)]
        message = "; ".join(f"{c.text(digits)}: {c.gate}" for c in gated if c is not None and c.gate) or _first_line(
            row.message
        )
        if message:
            lines.append(_cut(f"    {cell(message)}", WIDTH))
    if row.html and (verbose or is_failure(row)):
        lines.append(f"    {cell(shown_path(row.html, here))}")
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
    shown = ", ".join(_counted(counts[o], o) for o in (*order, *sorted(set(counts) - set(order))) if o in counts)
    total = sum(counts.values())
    what = f"{total} trial{'s' if total != 1 else ''}" + (f" ({shown})" if shown else "")
    command = " ".join(filter(None, ("python -m pytest_mitosis", options, f"history --session {key}")))
    return f"mitosis session {key}: {what}; {command}"
