"""Pass/fail rules on results: the metric-drift gate, hypotheses, reproduction tolerance, and per-metric rules.

``--mitosis-compare-fail=main:5%`` (or an absolute ``main:0.01``, or a metric name) fails a
trial whose metric moved further than allowed, in the worse direction, from the previous
trial of the same identity. ``expect = "main < 0.05"`` in an experiment table is a hypothesis
declared before the trial runs. Which direction is better and how close is equal can be said
per metric (:class:`Directions`, :class:`Tolerance`): every consumer asks the same resolver, so
the gate, ``best``, the report and the benchmark JSON agree. No pytest import here.
"""

from __future__ import annotations

import argparse
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

_LIMIT = re.compile(r"^(?P<name>[^:\s]+):(?P<value>[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)(?P<percent>%)?$")
_EXPECT = re.compile(
    r"^\s*(?P<name>[A-Za-z_][\w.]*)\s*(?P<op><=|>=|==|!=|<|>)\s*(?P<value>[-+]?[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$"
)
_OPS: dict[str, Callable[[Any, Any], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(frozen=True)
class Limit:
    """How far a metric may move from the previous trial: relative (``5%``) or absolute."""

    name: str
    value: float
    relative: bool

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.relative else f"{self.value:g}"


def parse_limit(text: str) -> Limit:
    """``NAME:5%`` or ``NAME:0.01``; an ``ArgumentTypeError`` otherwise (an argparse ``type=``)."""
    match = _LIMIT.match(text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected NAME:LIMIT such as main:5% (relative) or main:0.01 (absolute), got {text!r}"
        )
    return Limit(match.group("name"), float(match.group("value")), bool(match.group("percent")))


def as_number(value: Any) -> float | None:
    """A recorded value as a float, or ``None`` (booleans are not numbers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def series_points(value: Any) -> list[tuple[float, float]] | None:
    """A recorded metric series as ``(step, value)`` points; ``None`` for anything else.

    The kernel records a series as a list of numbers, or as ``{"step": [...], "value": [...]}``.
    """
    if isinstance(value, list) and value:
        return [(float(i), float(v)) for i, v in enumerate(value)]
    if isinstance(value, dict) and set(value) == {"step", "value"} and value["value"]:
        return [(float(s), float(v)) for s, v in zip(value["step"], value["value"])]
    return None


def is_series(value: Any) -> bool:
    """Whether :func:`series_points` reads ``value`` as a series, without converting its points."""
    if isinstance(value, list):
        return bool(value)
    return isinstance(value, dict) and set(value) == {"step", "value"} and bool(value["value"])


def series_length(value: Any) -> int:
    """The number of points :func:`series_points` makes of a series (``0`` for anything else)."""
    if not is_series(value):
        return 0
    return len(value) if isinstance(value, list) else min(len(value["step"]), len(value["value"]))


def scalars(results: Mapping[str, Any]) -> dict[str, Any]:
    """``main`` and the metrics without series: what comparisons and hypotheses look at."""
    return {k: v for k, v in results.items() if not is_series(v)}


#: the prefix a metric's name may carry (reproduction messages write ``metrics.NAME``): ``metrics.f1`` is ``f1``
METRICS_PREFIX = "metrics."


def metric_name(name: str) -> str:
    """``name`` as results key it: ``main`` or the bare metric name (``metrics.f1`` → ``f1``)."""
    return name[len(METRICS_PREFIX) :] if name.startswith(METRICS_PREFIX) and name != METRICS_PREFIX else name


#: a direction as written: ``True`` (main and every metric), ``False`` (none), or the names where higher is better
DirectionRule: TypeAlias = "bool | tuple[str, ...]"


@dataclass(frozen=True)
class Directions:
    """Which way is better, per metric: built once per experiment, asked by every consumer, recorded with each trial.

    ``default`` holds for every name not listed; ``higher`` and ``lower`` are the exceptions
    (kept normal: only those that differ from ``default``). A trial records it (see
    :meth:`to_json`), so a view reads the direction the trial was judged with, not today's.
    """

    default: bool = False
    higher: frozenset[str] = frozenset()
    lower: frozenset[str] = frozenset()

    def __call__(self, name: str) -> bool:
        """Whether a higher ``name`` (``main``, ``f1`` or ``metrics.f1``) is better."""
        name = metric_name(name)
        if name in self.higher:
            return True
        if name in self.lower:
            return False
        return self.default

    @classmethod
    def of(cls, rule: DirectionRule | None) -> Directions:
        """``true``, ``false`` or a list of names, as written in ``[tool.mitosis]``."""
        if rule is None or isinstance(rule, bool):
            return cls(bool(rule))
        return cls(False, frozenset(metric_name(n) for n in rule))

    def override(self, higher: DirectionRule | None, lower: DirectionRule | None) -> Directions:
        """The command line over the pyproject: a bare flag sets every direction, names set theirs only."""
        found = self
        if higher is True:
            found = Directions(True)
        if lower is True:
            found = Directions(False)
        if isinstance(higher, tuple):
            names = {metric_name(n) for n in higher}
            found = Directions(found.default, found.higher | names, found.lower - names)
        if isinstance(lower, tuple):
            names = {metric_name(n) for n in lower}
            found = Directions(found.default, found.higher - names, found.lower | names)
        return found.normal()

    def normal(self) -> Directions:
        """The same directions with only the exceptions to ``default`` listed."""
        if self.default:
            return Directions(True, frozenset(), self.lower)
        return Directions(False, self.higher, frozenset())

    def to_json(self) -> dict[str, Any]:
        normal = self.normal()
        return {
            "default": "higher" if normal.default else "lower",
            "higher": sorted(normal.higher),
            "lower": sorted(normal.lower),
        }

    @classmethod
    def from_json(cls, value: Any) -> Directions | None:
        """What :meth:`to_json` wrote, or ``None`` (not recorded, or not ours)."""
        if not isinstance(value, dict) or value.get("default") not in ("higher", "lower"):
            return None
        higher, lower = value.get("higher", []), value.get("lower", [])
        if not all(isinstance(v, list) and all(isinstance(n, str) for n in v) for v in (higher, lower)):
            return None
        return cls(value["default"] == "higher", frozenset(higher), frozenset(lower)).normal()

    def describe(self) -> str:
        """In a few words: ``lower is better``, ``higher is better for main, f1``, ``higher is better except loss``."""
        normal = self.normal()
        if normal.default:
            return "higher is better" + (f" except {', '.join(sorted(normal.lower))}" if normal.lower else "")
        if normal.higher:
            return f"higher is better for {', '.join(_main_first(normal.higher))}, lower for the rest"
        return "lower is better"

    def short(self) -> str:
        """For a table cell: ``lower``, ``higher``, ``higher: main, f1``, ``higher but: loss``."""
        normal = self.normal()
        if normal.default:
            return "higher" + (f" but: {', '.join(sorted(normal.lower))}" if normal.lower else "")
        return f"higher: {', '.join(_main_first(normal.higher))}" if normal.higher else "lower"


def _main_first(names: frozenset[str]) -> list[str]:
    return sorted(names, key=lambda n: (n != "main", n))


@dataclass(frozen=True)
class Tolerance:
    """How close a metric's new value must be to count as unchanged, or ``ignore``: never compared."""

    rtol: float = 0.0
    atol: float = 0.0
    ignore: bool = False

    def __str__(self) -> str:
        if self.ignore:
            return "ignored"
        return "exact" if not (self.rtol or self.atol) else f"rtol={self.rtol:g}, atol={self.atol:g}"


#: per metric name (``main`` or a bare metric name), as ``[tool.mitosis.tolerances]`` says it
Tolerances = Mapping[str, Tolerance]


def tolerance(tolerances: Tolerances, name: str, rtol: float = 0.0, atol: float = 0.0) -> Tolerance:
    """The tolerance of ``name``: its own entry wins over the session's ``rtol``/``atol``."""
    return tolerances.get(metric_name(name)) or Tolerance(rtol, atol)


def describe_tolerances(tolerances: Tolerances) -> str:
    """``main rtol=0.01, atol=0; fit_seconds ignored`` (empty without any)."""
    return "; ".join(f"{name} {tolerances[name]}" for name in _main_first(frozenset(tolerances)))


@dataclass(frozen=True)
class Drift:
    """One metric compared with the previous trial of the same identity."""

    name: str
    before: Any
    after: Any
    failed: bool
    limit: Limit | None

    def describe(self, previous: str, higher_is_better: bool) -> str:
        a, b = as_number(self.before), as_number(self.after)
        change = ""
        if a is not None and b is not None:
            change = f" ({b - a:+.6g}" + (f", {100 * (b - a) / abs(a):+.3g}%" if a else "") + ")"
        text = f"{self.name} moved from {self.before!r} ({previous}) to {self.after!r}{change}"
        if self.failed and self.limit is not None:
            worse = "lower" if higher_is_better else "higher"
            text += f": {worse} {GATE_FAILED} {self.limit}"
        return text


#: the words a drift-gate failure's message holds (the report tells a gate's failure from others by them)
GATE_FAILED = "by more than the allowed"

#: the failures that judged a trial's main after the trial measured it: such a trial ran to its end,
#: so its main is as valid a measurement of its code as a passed trial's (:func:`measured`)
JUDGED = ("drift gate", "drift gate, accepted", "hypothesis refuted")


def failure_kind(status: str, verdict: str | None, message: str | None, accepted: bool = False) -> str | None:
    """Why a finished trial did not pass, in the words the views show: a failed trial is never skipped silently.

    A trial the drift gate failed ran to its end and recorded its main: it is told from a
    trial that raised by the gate's words in its message (:data:`GATE_FAILED`). A trial whose
    code changed while it ran is never judged (the gate and the hypothesis run only after a
    run that passed), so it is an ``error``, as is any other failure.
    """
    if status in ("passed", "running"):
        return None
    if status != "failed":
        return status
    if verdict == "refuted":
        return "hypothesis refuted"
    if message and GATE_FAILED in message:
        return "drift gate, accepted" if accepted else "drift gate"  # accepted: the identity's baseline since
    return "error"


def measured(status: str, failure: str | None) -> bool:
    """Whether a trial's main measured its code: it passed, or only a judgement of main failed it (:data:`JUDGED`).

    What "which variant wins" aggregates (the report's grouped views, ``best --by``): the gate
    judged the change, not the measurement, so dropping a regressed variant's trials would rank
    the survivors. A trial that raised, was interrupted, still runs, or ran code that was not
    its commit's measured nothing to rank.
    """
    return status == "passed" or (status == "failed" and failure in JUDGED)


def drift(
    before: Mapping[str, Any],
    after: Mapping[str, Any],
    limits: list[Limit],
    higher_is_better: bool | Callable[[str], bool],
    tolerances: Tolerances | None = None,
) -> list[Drift]:
    """Compare ``main`` and every metric; a change in the worse direction beyond its limit fails.

    ``higher_is_better`` is one direction for all, or a :class:`Directions`. A metric whose
    tolerance is ``ignore`` is neither compared nor able to fail; a change within its
    tolerance counts as none.
    """
    direction = higher_is_better if callable(higher_is_better) else (lambda name: bool(higher_is_better))
    by_name = {metric_name(limit.name): limit for limit in limits}
    found = []
    for name in dict.fromkeys([*before, *after]):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        allowance = (tolerances or {}).get(name)
        if allowance is not None and (allowance.ignore or close(old, new, allowance.rtol, allowance.atol)):
            continue
        limit = by_name.get(name)
        failed = False
        a, b = as_number(old), as_number(new)
        if limit is not None and a is not None and b is not None:
            worse = (a - b) if direction(name) else (b - a)
            allowed = abs(a) * limit.value / 100 if limit.relative else limit.value
            failed = worse > allowed and not math.isclose(worse, allowed)
        found.append(Drift(name, old, new, failed, limit))
    return found


@dataclass(frozen=True)
class Hypothesis:
    """``expect = "main < 0.05"``: the outcome an experiment declares before it runs."""

    text: str
    name: str
    op: str
    value: float

    def verdict(self, results: Mapping[str, Any]) -> tuple[bool, str]:
        """``(holds, explanation)`` for the trial's ``main`` and metrics."""
        found = results.get(self.name)
        number = as_number(found)
        if number is None:
            return False, f"hypothesis {self.text!r} cannot be checked: {self.name} is {found!r}"
        holds = _OPS[self.op](number, self.value)
        return holds, f"hypothesis {self.text!r} {'holds' if holds else 'is refuted'}: {self.name} = {found!r}"


def parse_hypothesis(text: str) -> Hypothesis | None:
    """``None`` when ``text`` is not ``NAME OP NUMBER``."""
    match = _EXPECT.match(text) if isinstance(text, str) else None
    if match is None:
        return None
    return Hypothesis(text.strip(), match.group("name"), match.group("op"), float(match.group("value")))


def close(recorded: Any, reproduced: Any, rtol: float, atol: float) -> bool:
    """Equal, or numbers within ``atol + rtol * |recorded|`` (exact by default)."""
    a, b = as_number(recorded), as_number(reproduced)
    if a is not None and b is not None:
        if math.isnan(a) and math.isnan(b):
            return True
        return abs(a - b) <= atol + rtol * abs(a)
    return bool(recorded == reproduced)


def series_values(value: Any) -> list[Any] | None:
    """A recorded series as a list of its values (``(step, value)`` pairs for the step form); ``None`` otherwise."""
    if isinstance(value, list):
        return value
    if isinstance(value, dict) and set(value) == {"step", "value"}:
        steps, values = value["step"], value["value"]
        if isinstance(steps, list) and isinstance(values, list):
            return [tuple(pair) for pair in zip(steps, values)] if len(steps) == len(values) else [*values]
    return None


def _close_item(a: Any, b: Any, rtol: float, atol: float) -> bool:
    if isinstance(a, tuple) and isinstance(b, tuple) and len(a) == len(b):
        return all(close(x, y, rtol, atol) for x, y in zip(a, b))
    return close(a, b, rtol, atol)


#: how many values either side of a series' first difference its message shows
EXCERPT = 2


def _excerpt(values: list[Any], at: int) -> str:
    start, end = max(0, at - EXCERPT), min(len(values), at + EXCERPT + 1)
    inner = ", ".join(repr(v) for v in values[start:end])
    return f"[{'..., ' if start else ''}{inner}{', ...' if end < len(values) else ''}] (from index {start})"


def series_difference(recorded: Any, reproduced: Any, rtol: float = 0.0, atol: float = 0.0) -> str | None:
    """Where two series differ, in a few lines (never the whole lists); ``None`` when they match.

    The first differing index and both values there, both lengths when they differ, and the
    values around it. Values are compared one by one within ``rtol``/``atol``. A value that is
    not a series on one side is described by its length and first values.
    """
    a, b = series_values(recorded), series_values(reproduced)
    if a is None and b is None:
        return None
    if a is None or b is None:
        shown = [f"{'a series of ' + str(len(v)) + ' values ' + _excerpt(v, 0) if v is not None else repr(w)}"
                 for v, w in ((a, recorded), (b, reproduced))]  # fmt: skip
        return f"recorded {shown[0]}, reproduced {shown[1]}"
    at = next((i for i, (x, y) in enumerate(zip(a, b)) if not _close_item(x, y, rtol, atol)), None)
    if at is None:
        if len(a) == len(b):
            return None
        at = min(len(a), len(b))
    here = lambda values: repr(values[at]) if at < len(values) else "nothing (the series ended)"  # noqa: E731
    lengths = f" (lengths {len(a)} and {len(b)})" if len(a) != len(b) else f" (length {len(a)})"
    return (
        f"the series differ first at index {at}: recorded {here(a)}, reproduced {here(b)}{lengths}\n"
        f"    recorded   {_excerpt(a, at)}\n"
        f"    reproduced {_excerpt(b, at)}"
    )
