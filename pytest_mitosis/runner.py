"""One trial's pipeline: notebook → fresh kernel → artifacts → a ``TrialOutcome``.

Knows nothing of pytest: the item calls :func:`run_trial` and reports what it returns. A
failing step, a dead kernel or a timeout is an outcome, not an exception, and the notebook
and its HTML are saved in every case before the outcome is returned.
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .artifacts import TrialFolder
from .variants import TrialSpec


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial produced; ``message`` explains a failure in the user's terms."""

    spec: TrialSpec
    key: str
    name: str
    passed: bool
    main: Any
    metrics: dict[str, Any]
    folder: Path
    html: Path
    seconds: float
    message: str | None = None
    iteration: int | None = None
    commit: str | None = None
    seed: int | None = None
    warnings: tuple[str, ...] = ()
    comparisons: tuple[str, ...] = ()
    verdict: str | None = None


def new_key() -> str:
    """A short random key: unique names for folders without any coordination between workers."""
    return secrets.token_hex(4)


def _step_label(spec: TrialSpec, name: str | None) -> str:
    for step in spec.steps:
        if step.name == name:
            return f"step {name!r} ({step.function})"
    return "the set-up cell"


def _failure(spec: TrialSpec, kind: str | None, error: str | None, outcome: dict[str, Any]) -> str:
    step = _step_label(spec, outcome.get("step"))
    if kind == "dead":
        return f"kernel died during {step}"
    if kind == "timeout":
        return f"{error} during {step}"
    if kind == "startup":
        return str(error)
    if outcome.get("status") == "failed":
        if outcome.get("result_error"):
            return str(outcome.get("error", "")).split(": ", 1)[-1]
        return f"{step} raised {outcome.get('error')}\n\n{outcome.get('traceback', '')}".rstrip()
    return f"the notebook failed outside the steps' own code ({error})"


def run_trial(
    spec: TrialSpec,
    *,
    key: str,
    name: str,
    root: Path,
    trials: Path,
    timeout: float | None,
    debug: bool,
    seed: int,
    metadata: dict[str, Any],
    sys_path: list[str] | None = None,
    launched: Any = None,
    html: Any = None,
) -> TrialOutcome:
    """Run ``spec`` in a fresh kernel and save its artifacts under ``trials`` as ``name_key``."""
    from . import kernel, notebook

    started = time.monotonic()
    folder = TrialFolder(trials, key, name, debug)
    folder.create()
    title = f"{folder.name} ({folder.key})"
    nb = notebook.build(
        spec, title=title, folder=folder.staging, debug=debug, seed=seed, sys_path=sys_path,
        metadata={**metadata, "key": folder.key, "trial": folder.name, "seed": seed},
    )
    execution = kernel.execute(nb, root, timeout, launched)
    outcome = folder.read_outcome()
    passed = execution.error is None and outcome.get("status") == "passed"
    message = None
    if not passed:
        outcome["status"] = "failed"
        message = _failure(spec, execution.kind, execution.error, outcome)
        outcome["message"] = message
    description = {
        "trial": folder.name,
        "key": folder.key,
        **{k: v for k, v in metadata.items() if k != "environment"},
        "seed": seed,
        "results": {k: outcome.get(k) for k in ("status", "main", "metrics", "message") if k in outcome},
        "environment": metadata.get("environment"),
    }
    final = folder.save(execution.notebook, outcome, description, html)
    html = folder.html
    if message is not None:
        message = f"{message}\n\nnotebook: {html}"
    return TrialOutcome(
        spec=spec,
        key=folder.key,
        name=folder.name,
        passed=passed,
        main=outcome.get("main"),
        metrics=dict(outcome.get("metrics") or {}),
        folder=final,
        html=html,
        seconds=time.monotonic() - started,
        message=message,
    )
