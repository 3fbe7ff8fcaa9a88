"""Reproduction as a test: re-run a recorded trial at its commit and compare with the record.

The recorded commit is checked out into a temporary ``git worktree`` (:mod:`.checkout`; the
user's work tree is never touched); the trial is rebuilt from that commit's pyproject.toml,
never from the record's code (:mod:`.rebuild`), and run in a fresh kernel whose ``sys.path``
starts at that checkout. Its ``main`` and metrics must equal the recorded ones, exactly or
within ``rtol``/``atol``. No pytest import.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.rules import Tolerances, close, describe_tolerances, is_series, series_difference, tolerance
from ..identity.environment import package_changes
from ..store import Reader, RecordsError, TrialRecord, printable, valid_commit, valid_key
from .checkout import checkout, kernel_path
from .rebuild import ReproductionError, project_at, rebuild

__all__ = ["ReproductionError", "reproduce_trial", "select"]


def select(reader: Reader, selectors: tuple[str, ...]) -> list[TrialRecord]:
    """Keys (unique prefixes), experiment names (their latest trial of every identity), or ``all``."""
    experiments = set(reader.experiments())
    found: dict[str, TrialRecord] = {}
    for selector in selectors:
        if selector == "all":
            chosen = list(reader.latest())
        elif selector in experiments:
            chosen = list(reader.latest(selector))
        else:
            try:
                chosen = [reader.get(selector)]
            except RecordsError as err:
                raise ConfigError(f"--mitosis-reproduce {selector}: {err}") from None
        for record in chosen:
            if not valid_key(record.key):
                raise ConfigError(
                    printable(
                        f"--mitosis-reproduce {selector}: the store {reader.location} holds a trial whose key {record.key!r} "
                        "is not a pytest-mitosis key (8 hex digits): the store was edited or is not ours. Nothing was run."
                    )
                )
            found.setdefault(record.key, record)
    return list(found.values())


def differences(
    record: TrialRecord,
    main: Any,
    metrics: dict[str, Any],
    rtol: float,
    atol: float,
    tolerances: Tolerances | None = None,
) -> list[str]:
    """``name: recorded X, reproduced Y`` for ``main`` and each metric that does not match.

    A metric's own tolerance (``[tool.mitosis.tolerances]``) wins over ``rtol``/``atol``; an
    ignored one is not compared. A series is compared value by value and described by its
    first difference, never printed whole.
    """
    found = []
    pairs = [("main", "main", record.main, main)]
    pairs += [(name, f"metrics.{name}", record.metrics.get(name), metrics.get(name))
              for name in dict.fromkeys([*record.metrics, *metrics])]  # fmt: skip
    for name, label, old, new in pairs:
        allowed = tolerance(tolerances or {}, name, rtol, atol)
        if allowed.ignore:
            continue
        if is_series(old) or is_series(new):
            text = series_difference(old, new, allowed.rtol, allowed.atol)
            if text is not None:
                found.append(f"{label}: {text}")
        elif not close(old, new, allowed.rtol, allowed.atol):
            within = f" (within {allowed})" if allowed.rtol or allowed.atol else ""
            found.append(f"{label}: recorded {old!r}, reproduced {new!r}{within}")
    return found


def environment_changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """What differs from the recorded environment that could explain a difference."""
    found = []
    for part in ("python", "platform"):
        if recorded.get(part) != current.get(part):
            old = recorded.get(part, {}).get("version" if part == "python" else "platform")
            new = current.get(part, {}).get("version" if part == "python" else "platform")
            found.append(f"{part}: {old} -> {new}")
    changes = package_changes(recorded.get("packages", {}), current.get("packages", {}))
    found += [f"package {kind}: {p}" for kind in ("changed", "added", "removed") for p in changes[kind]]
    return found


def reproduce_trial(
    record: TrialRecord,
    *,
    reader: Reader,
    store: Any,
    project_root: Path,
    trials: Path,
    worktree: Path,
    environment: dict[str, Any],
    nodeid: str,
    timeout: float | None,
    rtol: float,
    atol: float,
    tolerances: Tolerances | None = None,
    pyproject: Path | None = None,
    vouched: frozenset[tuple[str, str, str]] = frozenset(),
    session: str | None = None,
    max_output: int = 0,
) -> Any:
    """Run ``record`` again at its commit, record it as a trial linked to it, and judge it.

    ``pyproject`` is the investigation's pyproject.toml (default: ``project_root/pyproject.toml``);
    the same file at the recorded commit says which steps may run (``session``: the pytest session's key,
    recorded with the reproduction). ``vouched`` holds the
    ``(step, param, expression)`` the user gave with ``--mitosis-eval``. The kernel runs in the
    ``working-dir`` of ``[tool.mitosis]`` *as committed* (default: the pyproject's directory),
    moved into the checkout when it is inside the work tree: today's value may name another
    directory, or none.
    """

    from ..execution.runner import run_trial
    from ..store import NewTrial, new_key, start

    if record.commit is None:
        raise ReproductionError(
            f"trial {record.name} (key {record.key}) recorded no commit, so it cannot be reproduced"
        )
    if not valid_commit(record.commit):
        raise ReproductionError(
            printable(
                f"trial {record.name} (key {record.key}) recorded the commit {record.commit!r}, which is not a git object "
                "name (hex digits): the store was edited or is not ours. Nothing was run."
            )
        )
    pyproject = pyproject if pyproject is not None else project_root / "pyproject.toml"
    # the steps that may run: the pyproject at the recorded commit, checked before anything is checked out
    committed = project_at(worktree, record.commit, pyproject, trials, record)
    spec = rebuild(record, committed, vouched)
    cwd = committed.working_dir or pyproject.parent
    relative = cwd.relative_to(worktree) if cwd.is_relative_to(worktree) else None
    with checkout(worktree, record.commit, bool(record.git.get("submodules"))) as path:
        root = path / relative if relative is not None else cwd
        if not root.is_dir():
            raise ReproductionError(
                f"cannot reproduce trial {record.name} (key {record.key}): the working-dir of "
                f"{pyproject.relative_to(worktree).as_posix()} at commit {record.commit[:12]} is {root}, which is not a "
                "directory; nothing was run."
            )
        slug = record.name.rsplit("-", 1)[0] if record.iteration is not None else record.name
        git = {**record.git, "commit": record.commit, "dirty": [], "worktree": str(worktree), "checkout": str(path)}
        env = {**environment, "git": git}
        key, iteration = start(
            store,
            lambda key: NewTrial(
                key,
                record.experiment,
                record.identity,
                record.variants,
                slug,
                nodeid,
                False,
                git,
                int(record.seed or 0),
                env,
                record.steps,
                record.params,
                reproduces=record.key,
                session=session,
                directions=record.directions,  # the reproduced trial's: its views agree with the original's
            ),
            (),
            new_key(),
        )
        name = f"{slug}-{iteration}"
        try:
            outcome = run_trial(
                spec,
                key=key,
                name=name,
                root=root,
                trials=trials,
                timeout=timeout,
                max_output=max_output,
                debug=False,
                seed=int(record.seed or 0),
                sys_path=kernel_path(path, worktree, project_root),
                metadata={
                    "experiment": record.experiment,
                    "id": record.variants,
                    "iteration": iteration,
                    "debug": False,
                    "git": git,
                    "steps": record.steps,
                    "params": record.params,
                    "environment": env,
                    "reproduces": record.key,
                    "working_dir": str(root),
                },
            )
        except BaseException as err:
            store.finish(
                key, status="failed", main=None, metrics={}, folder=None, message=f"{type(err).__name__}: {err}"
            )
            raise
    message = outcome.message
    passed = outcome.passed
    if passed:
        found = differences(record, outcome.main, outcome.metrics, rtol, atol, tolerances)
        if found:
            passed = False
            tolerance = "exactly" if not (rtol or atol) else f"within rtol={rtol:g}, atol={atol:g}"
            if tolerances:
                tolerance += f" (per metric: {describe_tolerances(tolerances)})"
            lines = [
                f"reproduction of {record.name} (key {record.key}) at commit {record.commit[:12]} does not match "
                f"its record {tolerance}:",
                *[f"  {d}" for d in found],
            ]
            changed = environment_changes(reader.environment(record), env)
            lines += (
                ["the environment differs from the recorded one:", *[f"  {c}" for c in changed]]
                if changed
                else ["the environment matches the recorded one (python, platform, packages)"]
            )
            message = "\n".join(lines) + f"\n\nnotebook: {outcome.html}"
    elif message:
        message = f"reproduction of {record.name} (key {record.key}) at commit {record.commit[:12]} failed: {message}"
    warnings = store.finish(
        key,
        status="passed" if passed else "failed",
        main=outcome.main,
        metrics=outcome.metrics,
        folder=str(outcome.folder),
        message=message,
        verdict="reproduced" if passed else "not reproduced",
    )
    return replace(
        outcome,
        passed=passed,
        message=message,
        iteration=iteration,
        commit=record.commit,
        seed=record.seed,
        warnings=tuple(warnings),
    )
