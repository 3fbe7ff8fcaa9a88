"""Judge a finished trial by the rules beyond "it ran": the drift gate and the hypothesis.

Runs in the pytest process after the kernel finished and before the record is finalised,
so the verdict, the comparisons and a gate's failure are stored with the trial. No pytest
import here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.rules import drift, parse_hypothesis, scalars
from .what_changed import since

if TYPE_CHECKING:
    from ..config.settings import Settings
    from ..config.variants import TrialSpec
    from ..execution.runner import TrialOutcome
    from ..store.protocol import TrialStore


def judge(
    outcome: TrialOutcome,
    spec: TrialSpec,
    identity: str,
    store: TrialStore,
    settings: Settings,
    seed: int | None = None,
    environment: Mapping[str, Any] | None = None,
    params: Sequence[Mapping[str, Any]] = (),
    root: Path | None = None,
) -> TrialOutcome:
    """``outcome`` with comparisons and verdict; failed when a gate or the hypothesis says so.

    ``seed`` is this trial's: when the previous trial ran with another seed, every change
    says so, since the seed alone may explain it (the seed is not part of the identity).
    ``environment`` (with its ``git`` part) and ``params`` are the trial's records: a failed gate
    says what changed since its baseline, with the files of the code's change read in ``root``'s
    repository, and how to accept the new value (``python -m pytest_mitosis accept KEY``).
    """
    if not outcome.passed:
        return outcome
    results = scalars({"main": outcome.main, **outcome.metrics})
    comparisons: list[str] = []
    failures: list[str] = []
    why: list[str] = []  # what changed since the baseline, when the gate failed
    higher = spec.directions  # per metric: the pyproject's and the command line's, resolved at collection
    if settings.compare and not settings.debug:
        previous = store.previous(spec.experiment, identity, before=outcome.key)
        if previous is None:
            comparisons.append("no earlier passed trial of this identity to compare with")
        else:
            where = f"{previous.name}, key {previous.key}{', accepted' if previous.accepted else ''}"
            before = scalars({"main": previous.main, **previous.metrics})
            found = drift(before, results, list(settings.compare_fail), higher, dict(spec.tolerances))
            reseeded = previous.seed is not None and seed is not None and previous.seed != seed
            also = f"; the seed changed too ({previous.seed} -> {seed}), which alone may explain it" if reseeded else ""
            if not found:
                comparisons.append(f"main and metrics unchanged since {where}")
            for item in found:
                text = item.describe(where, higher(item.name)) + also
                comparisons.append(text)
                if item.failed:
                    failures.append(text)
            if failures and environment is not None:
                changed = since(
                    previous,
                    commit=(environment.get("git") or {}).get("commit"),
                    environment=environment,
                    params=params,
                    seed=seed,
                    root=root or Path.cwd(),
                )
                why = [f"what changed since {previous.name} (key {previous.key}):", *[f"  {line}" for line in changed]]
    verdict = None
    if spec.expect is not None:
        hypothesis = parse_hypothesis(spec.expect)
        if hypothesis is not None:
            holds, text = hypothesis.verdict(results)
            verdict = "holds" if holds else "refuted"
            if not holds:
                failures.append(text)
    if why:  # after the gate's and the hypothesis' lines; accepting is offered for the gate alone
        fix = f"if the new value is right, make it the baseline: python -m pytest_mitosis accept {outcome.key}"
        failures += why + ([fix] if verdict != "refuted" else [])
    passed = not failures
    message = outcome.message
    if failures:
        message = "\n".join(failures) + f"\n\nnotebook: {outcome.html}"
    return replace(outcome, passed=passed, message=message, comparisons=tuple(comparisons), verdict=verdict)
