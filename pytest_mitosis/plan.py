"""The whole-sweep plan: for every selected trial, ``new``, ``repeat (iteration N)`` or ``blocked``.

Computed from the guards and the store alone, before any kernel starts: ``--mitosis-check``
prints it and runs nothing (for CI and pre-commit), and an ordinary run prints its totals in
the header. No pytest import here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .identity import TrialIdentity, UnfingerprintableValue
from .store import TrialStore, VariantRedefined
from .variants import TrialSpec


@dataclass(frozen=True)
class Planned:
    nodeid: str
    status: str  # "new", "repeat" or "blocked"
    detail: str

    @property
    def line(self) -> str:
        return f"{self.nodeid}  {self.detail}"


def plan(
    trials: Sequence[tuple[str, TrialSpec]],
    store: TrialStore,
    identify: Callable[[str, TrialSpec], TrialIdentity],
    dirty: str | None,
) -> list[Planned]:
    """What would happen to each ``(nodeid, spec)``; ``dirty`` names why the tree blocks everything.

    ``identify`` fingerprints a trial (the session caches it, so setup does not do it again).
    """
    found = []
    for nodeid, spec in trials:
        try:
            identity = identify(nodeid, spec)
            store.check_locks(identity.locks)
        except UnfingerprintableValue as err:
            found.append(Planned(nodeid, "blocked", f"blocked: {str(err).split(': ', 1)[-1].split(', so ')[0]}"))
            continue
        except VariantRedefined as err:
            found.append(Planned(nodeid, "blocked", f"blocked: {err.short}"))
            continue
        if dirty is not None:
            found.append(Planned(nodeid, "blocked", f"blocked: {dirty}"))
            continue
        iteration = store.next_iteration(spec.experiment, identity.identity)
        found.append(Planned(nodeid, "new", "new") if iteration == 1 else Planned(nodeid, "repeat", f"repeat (iteration {iteration})"))
    return found


def totals(planned: Sequence[Planned]) -> str:
    count = {status: sum(1 for p in planned if p.status == status) for status in ("new", "repeat", "blocked")}
    return (
        f"{len(planned)} trial{'s' if len(planned) != 1 else ''}: {count['new']} new, "
        f"{count['repeat']} repeat{'s' if count['repeat'] != 1 else ''}, {count['blocked']} blocked"
    )
