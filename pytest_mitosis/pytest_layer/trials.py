"""One trial's way through the session: identified, refused or resumed, checked against the commit,
recorded and run (or reproduced), with what the session's context knows.

The work belongs to the stages (:mod:`..identity.trial`, :mod:`..checks`, :mod:`..recording`);
this service hands each what it needs and keeps what one trial teaches the next (the files its
kernel imported, which are checked again before every later trial). The hooks call it at each
item's setup and call (:mod:`.hooks`).
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError, TrialFailed

if TYPE_CHECKING:
    from ..checks.code_drift import CommitFiles
    from ..config.variants import TrialSpec
    from ..execution.runner import TrialOutcome
    from ..identity.trial import TrialIdentity
    from ..recording.slurm_sweep import SlurmSweep
    from ..store import Reader, TrialRecord
    from .context import SessionContext
    from .heartbeat import Heartbeat
    from .state import SessionState


class TrialService:
    """Guards, runs and reproduces the session's trials."""

    def __init__(self, context: SessionContext, state: SessionState, heartbeat: Heartbeat) -> None:
        self.context = context
        self.state = state
        self.heartbeat = heartbeat
        self._identities: dict[str, TrialIdentity] = {}
        self._commit_files: CommitFiles | None = None
        #: the repository's files that this process's trials imported (checked again before every trial)
        self._sources: set[Path] = set()
        #: ``--mitosis-executor=slurm``: the session's job arrays (see :meth:`submit`)
        self.slurm: SlurmSweep | None = None
        #: under Slurm, why each trial that --mitosis-resume skips was skipped (decided at submission)
        self._skipped: dict[str, str] = {}

    def identify(self, nodeid: str, spec: TrialSpec) -> TrialIdentity:
        """A trial's fingerprints, computed once per session (the plan and the setup both need them)."""
        if nodeid not in self._identities:
            from ..identity.trial import identify

            self._identities[nodeid] = identify(spec, self.context.seed, strict=not self.context.settings.debug)
        return self._identities[nodeid]

    def resumed(self, nodeid: str, spec: TrialSpec) -> str | None:
        """Why ``--mitosis-resume`` skips this trial (it passed at the current commit), or ``None``.

        Asked at each trial's setup, not once at the start: another session (or xdist worker) may have
        passed it since, and an xdist worker then skips it like a session alone would.
        """
        if self.slurm is not None:
            return self._skipped.get(nodeid)
        if not self.context.settings.resume:
            return None
        from ..checks.sweep_plan import resumed

        return resumed(self.context.store(), spec, self.identify(nodeid, spec), self.context.repo().commit)

    def guard(self, nodeid: str, spec: TrialSpec) -> TrialIdentity:
        """Fingerprint a trial, check that its code is still the commit's and its variant locks (not in debug mode)."""
        identity = self.identify(nodeid, spec)
        if self.slurm is not None:  # guarded when the arrays were submitted (the job checks its code again)
            if nodeid in self.slurm.refused:
                raise TrialFailed(self.slurm.refused[nodeid])
            return identity
        if not self.context.settings.debug:
            changed = self.code_changed((), "since the session started")
            if changed is not None:
                raise TrialFailed(changed)
            self.context.store().check_locks(identity.locks)
        return identity

    def code_changed(self, sources: tuple[str, ...], when: str) -> str | None:
        """Why a trial's record would not name the code that ran (see :mod:`..checks.code_drift`), or ``None``.

        The files compared: ``pyproject.toml``, the step and lookup modules, every file of the repository
        that a kernel of this process imported, and ``sources`` (what the trial's own kernel imported).
        Never in debug mode or for a tree that was not clean at the start (nothing to compare with).
        """
        context = self.context
        if context.settings.debug or context.settings.reproduce:
            return None
        files = self._commit_files
        if files is None:
            repo = context.repo()
            if not repo.clean or repo.worktree is None or repo.commit is None:
                return None
            from ..checks.code_drift import CommitFiles

            own = tuple(p.resolve() for p in context.own_files())
            files = self._commit_files = CommitFiles(repo.worktree, repo.commit, own, context.settings.dirty_ignore)
        from ..checks.code_drift import changed_message, module_files, stop_message

        root, modules = context.step_modules()
        self._sources.update(Path(s) for s in sources)
        changed = files.changed([context.settings.pyproject, *module_files(root, modules), *self._sources])
        if not changed:
            return None
        self.state.code_moved = stop_message(changed)
        return changed_message(changed, files.commit, when)

    def changed_since_start(self) -> list[str]:
        """What ``git status`` lists now in a tree that was clean when the session started (empty otherwise)."""
        settings = self.context.settings
        if settings.debug or settings.reproduce or not self.context.repo().clean:
            return []
        try:
            return list(self.context.read_repo().dirty)
        except (ConfigError, OSError):
            return []

    def run(self, nodeid: str, spec: TrialSpec, identity: TrialIdentity) -> TrialOutcome:
        """Record and run one trial (see :mod:`..recording.trial`); an interruption stops the session."""
        from ..views.summary import SummaryRow

        try:
            outcome = self._record(nodeid, spec, identity) if self.slurm is None else self._await(nodeid)
        finally:
            self.heartbeat.erase()  # before pytest writes the outcome (or "KeyboardInterrupt")
        problem = self.context.ahead.problem()
        if problem is not None:  # once per session (per xdist worker), in the summary and the junit XML
            outcome = replace(outcome, warnings=(*outcome.warnings, f"kernels are spawned, not forked: {problem}"))
        if outcome.interrupted is not None:
            self.state.rows.append(
                SummaryRow(nodeid, "interrupted", outcome.main, str(outcome.html or ""), outcome.iteration, outcome.key)
            )
            raise KeyboardInterrupt  # pytest stops the session: "!!! KeyboardInterrupt !!!", exit code 2
        return outcome

    def submit(self, trials: list[tuple[str, TrialSpec]]) -> str:
        """``--mitosis-executor=slurm``: guard every trial now, take their records and submit them as job
        arrays (see :mod:`..recording.slurm_sweep`); the plan line's Slurm part. Each item then awaits its task."""
        from ..checks.code_drift import module_files
        from ..identity.trial import UnfingerprintableValue
        from ..recording.slurm_sweep import SlurmSweep
        from ..store.protocol import StoreError, VariantRedefined

        context = self.context
        settings = context.settings
        ready = []
        refused: dict[str, str] = {}
        for nodeid, spec in trials:
            done = self.resumed(nodeid, spec)
            if done is not None:
                self._skipped[nodeid] = done
                continue
            try:
                ready.append((nodeid, spec, self.guard(nodeid, spec)))
            except (VariantRedefined, UnfingerprintableValue, StoreError, TrialFailed) as err:
                refused[nodeid] = str(err)
        check = None
        repo = context.repo()
        if not settings.debug and repo.clean and repo.worktree is not None and repo.commit is not None:
            root, modules = context.step_modules()
            files = [settings.pyproject, *module_files(root, modules), *self._sources]
            check = {
                "worktree": str(repo.worktree),
                "commit": repo.commit,
                "own": [str(p.resolve()) for p in context.own_files()],
                "ignore": list(settings.dirty_ignore),
                "files": [str(p) for p in files],
            }
        sweep = SlurmSweep(
            store=context.store(),
            project=context.project(),
            settings=settings,
            environment=context.environment(),
            seed=context.seed,
            session=context.session_key,
            check=check,
            progress=self.heartbeat.on_progress,
        )
        sweep.refused.update(refused)
        self.slurm = sweep  # from here, every item's setup and call ask the sweep
        sweep.submit(ready)
        return sweep.describe()

    def _await(self, nodeid: str) -> TrialOutcome:
        """Under Slurm: the trial's task, awaited and recorded; Ctrl-C (or SIGTERM) cancels every task
        not yet ended and records them (this one ``interrupted``, then the session stops)."""
        sweep = self.slurm
        assert sweep is not None
        try:
            outcome = sweep.wait(nodeid)
        except KeyboardInterrupt:
            sweep.stop("the session was interrupted (Ctrl-C or SIGTERM)")
            stopped = sweep.tasks[nodeid].outcome
            if stopped is None:
                raise
            outcome = stopped
        if sweep.code_moved is not None:
            self.state.code_moved = sweep.code_moved
        return outcome

    def job_of(self, nodeid: str) -> str | None:
        """Under Slurm, the trial's task as ``<job>_<index>@<node>`` once recorded (``None`` otherwise)."""
        task = self.slurm.tasks.get(nodeid) if self.slurm is not None else None
        if task is None or task.outcome is None:
            return None
        node = task.state.node if task.state is not None else None
        return f"{task.job}_{task.index}" + (f"@{node}" if node else "")

    def stop_slurm(self, why: str) -> None:
        """The session ends with tasks not yet recorded (``-x``, the code changed, an error of pytest's):
        they are cancelled and recorded (see :meth:`SlurmSweep.stop`)."""
        if self.slurm is not None:
            self.slurm.stop(why)

    def _record(self, nodeid: str, spec: TrialSpec, identity: TrialIdentity) -> TrialOutcome:
        """:func:`~..recording.trial.record_trial` with what this session knows."""
        from ..recording.trial import record_trial

        context = self.context
        project = context.project()
        ahead = context.ahead
        return record_trial(
            spec,
            identity,
            nodeid=nodeid,
            store=context.store(),
            project=project,
            settings=context.settings,
            environment=context.environment(),
            seed=context.seed,
            session=context.session_key,
            prepared=lambda: (ahead.take(project.cwd if self.state.next_is_trial else None), ahead.html()),
            code_changed=lambda sources: self.code_changed(sources, "while the trial ran"),
            progress=lambda key, name, state: self.heartbeat.on_progress(nodeid, key, name, state),
        )

    def reproduce(self, nodeid: str, record: TrialRecord, reader: Reader) -> TrialOutcome:
        """``--mitosis-reproduce``: run a recorded trial again at its commit (see :mod:`..recording.reproduction`)."""
        from ..recording.reproduction import ReproductionError, reproduce_trial

        context = self.context
        settings = context.settings
        project = context.project()
        worktree = context.repo().worktree
        if worktree is None:
            raise ReproductionError(f"{project.root} is not in a git repository: a reproduction checks out a commit")
        return reproduce_trial(
            record,
            reader=reader,
            store=context.store(),
            project_root=project.root,
            trials=project.trials_folder,
            worktree=worktree,
            environment=context.environment(),
            nodeid=nodeid,
            timeout=settings.timeout,
            max_output=settings.max_cell_output,
            rtol=settings.rtol,
            atol=settings.atol,
            tolerances=project.tolerances_of(record.experiment),  # today's pyproject: how close is the same, now
            pyproject=project.path,
            session=context.session_key,
            vouched=frozenset((a.step, a.param, a.value) for a in settings.evals),
        )
