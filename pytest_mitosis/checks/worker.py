"""Whether an xdist worker on another host may run this session's trials: its checkout, its variants.

With remote gateways (``--tx ssh=...``, ``socket=...``, ``popen//chdir=...``) every worker runs
trials from its own checkout, yet each trial is recorded as having run the controller's commit
with the controller's variant values. A worker whose checkout is at another commit, has
uncommitted changes, or gives a variant another value (a file git ignores, an environment
variable, another version of a package the lookup dict reads) would make those records lie:
its trials are refused before any kernel starts, with the host, both commits and what to do.

The controller computes :func:`variant_fingerprints` for every trial it would collect and sends
them to the workers (``workerinput``); each worker compares its own with :func:`refusal`. No
pytest import here.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..identity.trial import TrialIdentity
    from .clean_tree import RepoState

SHOWN = 8


def _label(kind: str, step: str, param: str, name: str) -> str:
    if kind == "expect":
        return "the hypothesis"
    what = "variant" if kind == "lookup" else "eval expression"
    return f"{what} {name!r} of {step}.{param}"


def variant_fingerprints(identity: TrialIdentity) -> dict[str, str]:
    """What a worker must agree on for one trial: each tracked value's fingerprint, and the identity."""
    found = {"its identity": identity.identity}
    for lock in identity.locks:
        found[_label(lock.kind, lock.step, lock.param, lock.name)] = lock.fingerprint
    return found


def _short(commit: str | None) -> str:
    return commit[:12] if commit else "(none)"


def headline(worker: str, host: str) -> str:
    """The first words of every refusal of worker ``worker`` (its later trials repeat only these)."""
    return f"mitosis: worker {worker} on host {host} cannot run this session's trials"


def refusal(
    *,
    worker: str,
    host: str,
    controller_host: str,
    controller_commit: str | None,
    state: RepoState,
    root: Path,
    debug: bool,
    controller_variants: Mapping[str, Mapping[str, str]] | None,
    own_variants: Mapping[str, Mapping[str, str]],
) -> str | None:
    """Why worker ``worker`` on ``host`` must not run trials for this session (``None`` when it may).

    ``state`` is the worker's checkout; ``own_variants`` its fingerprints per trial name
    (``experiment[variants]``), ``controller_variants`` the controller's (``None``: not known,
    not compared). In ``debug`` mode (trials kept apart, never results) only the commit is
    compared, since uncommitted changes are allowed there on the controller too.
    """
    head = headline(worker, host)
    leave = f"or leave {host} out of --tx, and run again."
    if debug and (controller_commit is None or state.commit is None or state.commit == controller_commit):
        return None  # debug trials may run outside git, or from a dirty tree, on the controller too
    if state.worktree is None or state.commit is None or state.error is not None:
        what = (
            "is not in a git repository"
            if state.worktree is None
            else (
                "is a git repository without a commit"
                if state.commit is None
                else f"cannot be read by git: {state.error}"
            )
        )
        return (
            f"{head}: its folder {root} {what}, so it cannot be at the controller's commit "
            f"{_short(controller_commit)} (host {controller_host}). Clone the investigation there and check out "
            f"{controller_commit} (git clone URL {root} && git -C {root} checkout {controller_commit}), {leave}"
        )
    ours = f"{_short(state.commit)}"
    if controller_commit is not None and state.commit != controller_commit:
        return (
            f"{head}: its checkout {state.worktree} is at commit {ours}, the controller (host {controller_host}) at "
            f"{_short(controller_commit)}. Every worker runs the controller's commit, so that each trial's record says "
            f"what ran. On {host}: git -C {state.worktree} fetch && git -C {state.worktree} checkout {controller_commit}, "
            f"{leave}"
        )
    if debug:
        return None
    if state.dirty:
        shown = "\n".join(f"  {line}" for line in state.dirty[:SHOWN])
        more = f"\n  ... and {len(state.dirty) - SHOWN} more" if len(state.dirty) > SHOWN else ""
        return (
            f"{head}: its checkout {state.worktree} (commit {ours}, the controller's on host {controller_host}) has "
            f"uncommitted changes, so the commit its trials would record would not say what ran:\n{shown}{more}\n"
            f"Discard them on {host} (git -C {state.worktree} stash --include-untracked), or commit them, check the "
            f"new commit out on the controller and on every worker, {leave}"
        )
    if controller_variants is None:
        return None
    differ: list[str] = []
    for trial, values in sorted(own_variants.items()):
        theirs = controller_variants.get(trial)
        if theirs is None:
            differ.append(f"{trial}: not a trial on the controller")
            continue
        for label in sorted(set(values) | set(theirs)):
            if values.get(label) != theirs.get(label):
                differ.append(f"{trial}: {label}")
    if not differ:
        return None
    shown = "\n".join(f"  {line}" for line in differ[:SHOWN])
    more = f"\n  ... and {len(differ) - SHOWN} more" if len(differ) > SHOWN else ""
    return (
        f"{head}: at commit {ours} (the controller's on host {controller_host}), these values differ from the "
        f"controller's:\n{shown}{more}\n"
        f"Something outside git gives them another value on {host} (a file git ignores, an environment variable, "
        f"an installed package): trials of one name would mean different things. Make {host} give the same values "
        f"as the controller, {leave}"
    )
