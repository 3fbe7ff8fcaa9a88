"""The whole-sweep plan: for every selected trial, ``new``, ``repeat (iteration N)`` or ``blocked``.

Computed from the guards and the store alone, before any kernel starts: ``--mitosis-check``
prints it and runs nothing (for CI and pre-commit), and an ordinary run prints its totals in
the header. No pytest import here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..config.variants import TrialSpec
from ..core.rules import Directions, describe_tolerances
from ..identity.trial import TrialIdentity, UnfingerprintableValue
from ..store.protocol import TrialStore, VariantRedefined
from .clean_tree import RepoState, refusal


@dataclass(frozen=True)
class Planned:
    nodeid: str
    status: str  # "new", "repeat", "blocked" or "done" (passed at this commit: skipped by --mitosis-resume)
    detail: str

    @property
    def line(self) -> str:
        return f"{self.nodeid}  {self.detail}"


def plan(
    trials: Sequence[tuple[str, TrialSpec]],
    store: TrialStore,
    identify: Callable[[str, TrialSpec], TrialIdentity],
    dirty: str | None,
    resume_at: str | None = None,
) -> list[Planned]:
    """What would happen to each ``(nodeid, spec)``; ``dirty`` names why the tree blocks everything.

    ``identify`` fingerprints a trial (the session caches it, so setup does not do it again).
    ``resume_at`` is the current commit under ``--mitosis-resume``: a trial whose identity passed there is done.
    """
    found = []
    for nodeid, spec in trials:
        try:
            identity = identify(nodeid, spec)
        except UnfingerprintableValue as err:
            found.append(Planned(nodeid, "blocked", f"blocked: {str(err).split(': ', 1)[-1].split(', so ')[0]}"))
            continue
        conflicts = []
        for lock in identity.locks:  # one by one: the store stops at the first conflict, the check shows all
            try:
                store.check_locks([lock])
            except VariantRedefined as err:
                conflicts.append(err.short)
        if conflicts:
            found.append(Planned(nodeid, "blocked", "blocked: " + "; ".join(conflicts)))
            continue
        if dirty is not None:
            found.append(Planned(nodeid, "blocked", f"blocked: {dirty}"))
            continue
        done = resumed(store, spec, identity, resume_at)
        if done is not None:
            found.append(Planned(nodeid, "done", done))
            continue
        iteration = store.next_iteration(spec.experiment, identity.identity)
        found.append(
            Planned(nodeid, "new", "new")
            if iteration == 1
            else Planned(nodeid, "repeat", f"repeat (iteration {iteration})")
        )
    return found


def resumed(store: TrialStore, spec: TrialSpec, identity: TrialIdentity, commit: str | None) -> str | None:
    """Why ``--mitosis-resume`` skips this trial (its identity passed at ``commit``), or ``None``."""
    if commit is None:
        return None
    previous = store.previous(spec.experiment, identity.identity)
    if previous is None or previous.commit != commit:
        return None
    return f"passed at this commit ({commit[:8]}) as {previous.name}, key {previous.key}: skipped by --mitosis-resume"


def blocked_reason(repo: RepoState) -> str:
    """Why every trial is blocked by the tree, in a few words (the full message is printed above the lines)."""
    if repo.worktree is None:
        return "not in a git repository (see the message above)"
    if repo.error is not None:
        return "git could not report the state of the tree (see the message above)"
    if repo.commit is None:
        return "the git repository has no commit yet (see the message above)"
    return "the git tree has uncommitted changes (listed above)"


def totals(planned: Sequence[Planned]) -> str:
    count = {status: sum(1 for p in planned if p.status == status) for status in ("new", "repeat", "blocked", "done")}
    done = f", {count['done']} skipped (passed at this commit: --mitosis-resume)" if count["done"] else ""
    return (
        f"{len(planned)} trial{'s' if len(planned) != 1 else ''}: {count['new']} new, "
        f"{count['repeat']} repeat{'s' if count['repeat'] != 1 else ''}, {count['blocked']} blocked{done}"
    )


def check(
    trials: Sequence[tuple[str, TrialSpec]],
    broken: Sequence[tuple[str, str]],
    store: TrialStore,
    identify: Callable[[str, TrialSpec], TrialIdentity],
    repo: RepoState,
    root: Path,
    resume: bool = False,
) -> tuple[str | None, list[Planned]]:
    """``--mitosis-check``: why the tree blocks every trial (or ``None``), and each trial's plan.

    ``broken`` are the experiments that cannot be collected, as ``(nodeid, message)``: each is
    one more blocked line. Raises ``StoreError`` when the store cannot be read.
    """
    dirty = refusal(repo, root)
    planned = plan(trials, store, identify, blocked_reason(repo) if dirty else None, repo.commit if resume else None)
    planned += [Planned(nodeid, "blocked", f"blocked: cannot be collected:\n{message}") for nodeid, message in broken]
    return dirty, planned


def rules(
    trials: Sequence[tuple[str, TrialSpec]],
    store: TrialStore,
    identify: Callable[[str, TrialSpec], TrialIdentity],
) -> list[str]:
    """``--mitosis-check``: the directions and tolerances each experiment's trials will be judged by (when not the
    defaults: lower is better, exact).

    A name in a direction or a tolerance that no earlier passed trial of the experiment recorded
    is listed: a typo (``fit_second``) would otherwise silently compare as before.
    """
    lines = []
    by_experiment: dict[str, list[tuple[str, TrialSpec]]] = {}
    for nodeid, spec in trials:
        by_experiment.setdefault(spec.experiment, []).append((nodeid, spec))
    for experiment, chosen in by_experiment.items():
        spec = chosen[0][1]
        tolerances = dict(spec.tolerances)
        if spec.directions == Directions() and not tolerances:
            continue  # the defaults (lower is better, exact): nothing to say
        text = f"mitosis rules of {experiment}: {spec.directions.describe()}"
        lines.append(text + (f"; tolerances: {describe_tolerances(tolerances)}" if tolerances else ""))
        named = {*spec.directions.higher, *spec.directions.lower, *tolerances}
        if not named - {"main"}:
            continue
        recorded: set[str] = set()
        for nodeid, each in chosen:
            try:
                previous = store.previous(experiment, identify(nodeid, each).identity)
            except UnfingerprintableValue:
                continue
            if previous is not None:
                recorded |= {"main", *previous.metrics}
        unknown = sorted(named - recorded)
        if recorded and unknown:
            lines.append(
                f"  {', '.join(unknown)}: no earlier passed trial of {experiment} recorded "
                f"{'this metric' if len(unknown) == 1 else 'these metrics'} (its metrics: {', '.join(sorted(recorded))})"
            )
    return lines
