"""Record one new trial: take its record (the locks checked atomically), run it, judge it, finalise it.

The store checks the variant locks again inside the transaction that creates the record:
another process (an xdist worker, a second session) may have taken them since the trial's
setup. A trial that cannot be recorded is refused (``TrialFailed``) before its kernel starts.
Whatever happens while the kernel runs, the record is finalised (``failed``, ``interrupted``)
before the exception goes on. No pytest import here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..checks.verdict import judge
from ..core import profile
from ..core.errors import TrialFailed
from ..execution.runner import TrialOutcome, run_trial
from ..store import NewTrial, StoreError, VariantRedefined, new_key, start
from .pending import keep_outcome

if TYPE_CHECKING:
    from ..config.project import ProjectConfig
    from ..config.settings import Settings
    from ..config.variants import TrialSpec
    from ..identity.trial import TrialIdentity
    from ..store import TrialStore


@dataclass(frozen=True)
class Begun:
    """A trial whose record is taken (``running``): its key, iteration and file name, and what its record says."""

    key: str
    iteration: int | None
    name: str
    git: dict[str, Any]
    steps: list[dict[str, Any]]


def begin_trial(
    spec: TrialSpec,
    identity: TrialIdentity,
    *,
    nodeid: str,
    store: TrialStore,
    settings: Settings,
    environment: dict[str, Any],
    seed: int,
    session: str | None = None,
) -> Begun:
    """Take the trial's record (``running``), the variant locks checked again atomically; ``TrialFailed``
    when the store refuses it (another process took a lock since the trial's setup, the store is away)."""
    git = environment["git"]
    steps = [
        {"name": s.name, "function": str(s.function), "lookup": str(s.lookup) if s.lookup else None} for s in spec.steps
    ]
    refusal = None
    key = new_key()
    try:  # the store checks the locks again, atomically: another process may have taken them
        with profile.timed("store begin"):
            key, iteration = start(
                store,
                lambda key: NewTrial(
                    key,
                    spec.experiment,
                    identity.identity,
                    spec.id,
                    spec.slug,
                    nodeid,
                    settings.debug,
                    git,
                    seed,
                    environment,
                    steps,
                    identity.params,
                    session=session,
                    directions=spec.directions.to_json(),  # the directions it is judged by, for every view
                ),
                identity.locks,
                key,
            )
    except (VariantRedefined, StoreError) as err:
        refusal = str(err)
    except KeyboardInterrupt as err:
        # Ctrl-C or SIGTERM during the transaction is held back until it ends, then raised: the record may be
        # taken by then. Recorded interrupted (nothing happens when it was not taken), never left running.
        finish_unfinished(store, None, Begun(key, None, spec.slug, git, steps), err)
        raise
    if refusal is not None:  # outside the except block: no "during handling" chain in the report
        raise TrialFailed(refusal)
    name = spec.slug if iteration is None else f"{spec.slug}-{iteration}"
    return Begun(key, iteration, name, git, steps)


def trial_metadata(
    spec: TrialSpec,
    identity: TrialIdentity,
    begun: Begun,
    *,
    project: ProjectConfig,
    settings: Settings,
    environment: dict[str, Any],
) -> dict[str, Any]:
    """What the trial's notebook and ``trial.yaml`` say about it (its record's fields)."""
    return {
        "experiment": spec.experiment,
        "id": spec.id,
        "iteration": begun.iteration,
        "debug": settings.debug,
        "git": begun.git,
        "steps": begun.steps,
        "params": identity.params,
        "environment": environment,
        "working_dir": str(project.cwd),
    }


def finish_unfinished(store: TrialStore, trials: Path | None, begun: Begun, err: BaseException | str) -> None:
    """A trial whose run ended in an exception (Ctrl-C outside the cells, an error of ours), or that could not
    run for the reason given as text: recorded ``interrupted`` or ``failed`` with it, kept in the ``trials``
    folder when the store is away (``None``: not kept, for a record that may never have been taken)."""
    status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
    message = err if isinstance(err, str) else f"{type(err).__name__}: {err}"
    fields: dict[str, Any] = {"status": status, "main": None, "metrics": {}, "folder": None, "message": message}
    try:
        store.finish(begun.key, **fields)
    except StoreError:  # the store is away too: the record waits in the trials folder
        if trials is not None:
            keep_outcome(trials, begun.key, begun.name, fields)


def record_trial(
    spec: TrialSpec,
    identity: TrialIdentity,
    *,
    nodeid: str,
    store: TrialStore,
    project: ProjectConfig,
    settings: Settings,
    environment: dict[str, Any],
    seed: int,
    session: str | None = None,
    prepared: Callable[[], tuple[Any, Any]] | None = None,
    code_changed: Callable[[tuple[str, ...]], str | None] | None = None,
    progress: Callable[[str, str, dict[str, Any]], None] | None = None,
) -> TrialOutcome:
    """Run ``spec`` as a recorded trial and return its judged outcome.

    ``prepared`` returns a kernel started ahead for this trial (or ``None``) and a prepared HTML
    exporter (see :mod:`pytest_mitosis.execution.warmup`); it is called only once the record is
    taken, so a refused trial leaves the kernel for the next one. ``session`` is the key of the
    pytest session (recorded with the trial). ``code_changed`` is given the files the kernel imported and
    says why they are not the recorded commit's (the trial then fails, naming them). ``progress(key, name,
    state)`` hears how the trial goes about every second while its kernel runs. An outcome with ``interrupted``
    set is recorded ``interrupted`` and returned unjudged: the caller stops the session. ``TrialFailed`` means
    the store refused the record.
    """
    begun = begin_trial(
        spec,
        identity,
        nodeid=nodeid,
        store=store,
        settings=settings,
        environment=environment,
        seed=seed,
        session=session,
    )
    key, name = begun.key, begun.name
    launched = None
    try:  # from the record taken on: whatever stops the trial (a Ctrl-C while the kernel is taken) records it
        with profile.timed("kernel taken, the next one launched"):
            launched, html = prepared() if prepared is not None else (None, None)
        outcome = run_trial(
            spec,
            key=key,
            name=name,
            root=project.cwd,
            trials=project.trials_folder,
            timeout=settings.timeout,
            max_output=settings.max_cell_output,
            debug=settings.debug,
            seed=seed,
            launched=launched,
            html=html,
            code_changed=code_changed,
            progress=(lambda state: progress(key, name, state)) if progress is not None else None,
            # a store that sends the folder away as the trial ends (a remote worker's) needs the page in it
            pages_later=not getattr(store, "ships_folders", False),
            metadata=trial_metadata(spec, identity, begun, project=project, settings=settings, environment=environment),
        )
    except BaseException as err:
        if launched is not None:
            launched.close()  # run_trial stops the kernel it was given; one taken but never given is stopped here
        finish_unfinished(store, project.trials_folder, begun, err)
        raise
    return conclude_trial(
        outcome,
        spec,
        identity,
        begun,
        store=store,
        project=project,
        settings=settings,
        environment=environment,
        seed=seed,
    )


def conclude_trial(
    outcome: TrialOutcome,
    spec: TrialSpec,
    identity: TrialIdentity,
    begun: Begun,
    *,
    store: TrialStore,
    project: ProjectConfig,
    settings: Settings,
    environment: dict[str, Any],
    seed: int,
    job: dict[str, Any] | None = None,
    ended: float | None = None,
) -> TrialOutcome:
    """Judge a trial that ran (drift gate, hypothesis) and finalise its record; an interrupted one unjudged.

    ``job``: where it ran when an executor other than this process ran it (a Slurm job), for its record;
    ``ended``: when it ended there (default: now).
    The record waits in the trials folder when the store is away (``TrialFailed`` says where).
    """
    key, name = begun.key, begun.name
    extra: dict[str, Any] = {"job": job} if job is not None else {}
    when: dict[str, Any] = {"ended": ended} if ended is not None else {}
    folder = str(outcome.folder) if outcome.folder is not None else None
    if outcome.interrupted is not None:
        fields = {
            "status": "interrupted",
            "main": outcome.main,
            "metrics": outcome.metrics,
            "folder": folder,
            "message": outcome.message,
            **extra,
        }
        try:
            store.finish(key, **fields, **when)
        except StoreError:
            keep_outcome(project.trials_folder, key, name, fields, ended)
        return replace(outcome, iteration=begun.iteration)
    try:
        with profile.timed("judge"):
            outcome = judge(
                outcome,
                spec,
                identity.identity,
                store,
                settings,
                seed=seed,
                environment=environment,
                params=identity.params,
                root=project.cwd,
            )
    except StoreError as err:  # the previous trial to compare with cannot be read: recorded as it ran, unjudged
        note = f"not compared with the previous trial: {err}"
        outcome = replace(outcome, message=f"{outcome.message}\n{note}" if outcome.message else note)
    fields = {
        "status": "passed" if outcome.passed else "failed",
        "main": outcome.main,
        "metrics": outcome.metrics,
        "folder": folder,
        "message": outcome.message,
        "verdict": outcome.verdict,
        **extra,
    }
    lost: str | None = None
    try:
        with profile.timed("store finish"):
            warnings = store.finish(key, **fields, **when)
    except StoreError as err:  # the store stayed away past its patience: the folder is whole, the record waits
        kept = keep_outcome(project.trials_folder, key, name, fields, ended)
        lost = (
            f"{name} ran (main={outcome.main!r}; notebook: {outcome.html}), but the store could not record its "
            f"outcome: {err}\nIts outcome is kept in {kept}: it is recorded when the store is back, at the end of "
            "this session or by the next session that uses this trials folder."
        )
    if lost is not None:  # outside the except block: no "during handling" chain in the report
        raise TrialFailed(lost)
    return replace(outcome, iteration=begun.iteration, commit=begun.git["commit"], seed=seed, warnings=tuple(warnings))
