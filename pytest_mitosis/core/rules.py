"""Pass/fail rules on results: the metric-drift gate, hypotheses, and reproduction tolerance.

``--mitosis-compare-fail=main:5%`` (or an absolute ``main:0.01``, or a metric name) fails a
trial whose metric moved further than allowed, in the worse direction, from the previous
trial of the same identity. ``expect = "main < 0.05"`` in an experiment table is a hypothesis
declared before the trial runs. No pytest import here.
"""

from __future__ import annotations

import argparse
import math
import operator
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

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


def drift(
    before: Mapping[str, Any], after: Mapping[str, Any], limits: list[Limit], higher_is_better: bool
) -> list[Drift]:
    """Compare ``main`` and every metric; a change in the worse direction beyond its limit fails."""
    by_name = {limit.name: limit for limit in limits}
    found = []
    for name in dict.fromkeys([*before, *after]):
        old, new = before.get(name), after.get(name)
        if old == new:
            continue
        limit = by_name.get(name)
        failed = False
        a, b = as_number(old), as_number(new)
        if limit is not None and a is not None and b is not None:
            worse = (a - b) if higher_is_better else (b - a)
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
