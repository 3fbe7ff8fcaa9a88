"""The per-session context behind ``--mitosis``: what a session reads once and the services its hooks call.

Settings, the project, the selected experiments, the git state, the environment record, the
seed, the store, each trial's identity: read or opened once per process, lazily (``--help``
and ``--collect-only`` never open a store or read git). The work itself belongs to the
stages: this class only hands each stage what it needs, and turns their refusals into
pytest's errors. The hooks that call it are in :mod:`pytest_mitosis.pytest_layer.hooks`.

Kept in ``config.stash[session_key]`` only when ``--mitosis`` is given.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..config.settings import Settings
from ..core.errors import ConfigError, TrialFailed
from ..execution.warmup import Ahead

if TYPE_CHECKING:
    from ..checks.clean_tree import RepoState
    from ..config.experiments import Collected
    from ..config.project import ProjectConfig
    from ..config.variants import TrialSpec
    from ..execution.runner import TrialOutcome
    from ..identity.trial import TrialIdentity
    from ..store import Reader, StoreURL, TrialRecord, TrialStore
    from ..views.summary import SummaryRow


def fact_imports() -> None:
    """What reading the facts imports, imported here in the main thread (see execution/warmup.py)."""
    import importlib.metadata  # noqa: F401

    import git  # noqa: F401

    from ..checks import clean_tree  # noqa: F401
    from ..identity import environment  # noqa: F401


class MitosisSession:
    """What one pytest session with ``--mitosis`` reads once, and the calls into the stages."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        import time

        #: when this session started (pytest's configure): its record's start
        self.started = time.time()
        self.config = config
        self.settings = settings
        self._project: ProjectConfig | None = None
        self._repo: RepoState | None = None
        self._store: TrialStore | None = None
        self._environment: dict[str, Any] | None = None
        self._seed: int | None = settings.seed
        from ..execution.shared import worker_paths

        self.ahead = Ahead(
            kernel=settings.kernel or "auto",
            preload=settings.preload,
            steps=self.step_modules,
            shared=worker_paths(config),
        )
        #: pytest-xdist's controller: the warm parent and HTML helper of its local workers (see configure_node)
        self.shared: Any = None
        self._identities: dict[str, TrialIdentity] = {}
        self._experiments: list[Collected] | None = None
        #: whether the item after the running one is a trial (then its kernel is started ahead)
        self.next_is_trial = False
        #: one row per trial for the terminal summary (built from reports: xdist sends those)
        self.rows: list[SummaryRow] = []
        #: experiments that cannot be collected, shown after --collect-only (a run shows their setup errors)
        self.broken: list[tuple[str, str]] = []
        #: where the static report was written, or why not
        self.report: Path | str | None = None
        self._swept = False
        #: what became of --mitosis-summary and --mitosis-benchmark-json (lines for the terminal summary)
        self.ci_notes: list[str] = []
        self._session_key: str | None = None
        #: whether this process wrote the session's row (the controller, once trials are about to run)
        self.session_recorded = False
        self._commit_files: Any = None
        #: why the sweep stops: the investigation's code changed while it ran (no later trial could pass)
        self.code_moved: str | None = None
        #: pytest-xdist's local workers (the controller passes a SIGTERM on to them: see hooks.py)
        self.worker_pids: list[int] = []
        #: the sweep's progress line (or log lines), on the process that reports (see progress.py)
        self.progress: Any = None
        self._beaten = 0.0
        self._beat_key: str | None = None
        self._session_beaten = 0.0
        #: the repository's files that this process's trials imported (checked again before every trial)
        self._sources: set[Path] = set()
        #: lines for the terminal summary: records kept while the store was away, recorded since (or not yet)
        self.store_notes: list[str] = []
        self._store_lock = threading.Lock()

    @property
    def seed(self) -> int:
        """The session's seed: given, sent by the xdist controller, or drawn once here."""
        if self._seed is None:
            workerinput = getattr(self.config, "workerinput", None)
            if workerinput is not None and "mitosis_seed" in workerinput:
                self._seed = int(workerinput["mitosis_seed"])
            else:
                import secrets

                from ..config.settings import MAX_SEED

                self._seed = secrets.randbelow(MAX_SEED + 1)
        return self._seed

    @property
    def session_key(self) -> str:
        """The session's key (see :mod:`.sessionrecord`): sent by the xdist controller, or drawn once here."""
        if self._session_key is None:
            workerinput = getattr(self.config, "workerinput", None)
            if workerinput is not None and "mitosis_session" in workerinput:
                self._session_key = str(workerinput["mitosis_session"])
            else:
                from ..store import new_key

                self._session_key = new_key()
        return self._session_key

    @session_key.setter
    def session_key(self, key: str) -> None:
        self._session_key = key

    def environment(self) -> dict[str, Any]:
        """The environment record, gathered once per process; plugins add keys through the hook."""
        if self._environment is None:
            from ..checks.clean_tree import summary
            from ..identity.environment import gather, merge

            facts = self.ahead.facts()
            found = dict(facts[1]) if facts is not None else gather(self.settings.env_vars)
            found["git"] = summary(self.repo())
            try:
                self._environment = merge(found, self.config.hook.pytest_mitosis_environment(config=self.config))
            except ValueError as err:
                raise pytest.UsageError(f"mitosis: {err}") from None
        return self._environment

    def step_modules(self) -> tuple[Path, list[str]]:
        """The investigation's root and the modules of its steps and lookups (what the fork server scans)."""
        project = self.project()
        modules = [ref.module for s in project.steps.values() for ref in (s.function, s.lookup) if ref is not None]
        return project.root, modules

    def project(self) -> ProjectConfig:
        """``[tool.mitosis]``, read once (lazily: ``--help`` never reads it)."""
        if self._project is None:
            from ..config.project import load_project

            self._project = load_project(self.settings.pyproject, self.settings.trials_folder)
        return self._project

    def experiments(self) -> list[Collected]:
        """The selected experiments with their trials (or why they cannot run), expanded once per process."""
        if self._experiments is None:
            from ..config.steps import ensure_importable

            project = self.project()
            ensure_importable(project.root)  # here too: each trial's kernel gets this process's sys.path
            # in a fork of the warm parent, which has the steps' libraries: this process need not import them
            found = self.ahead.collect(project, self.settings, quiet=self.config.getoption("capture", "fd") != "no")
            if found is None:
                from ..config.experiments import collect_experiments

                found = collect_experiments(project, self.settings)
            self._experiments = found
        return self._experiments

    def repo(self) -> RepoState:
        """The git state of the investigation, read once per process."""
        if self._repo is None:
            facts = self.ahead.facts()
            self._repo = facts[0] if facts is not None else self._read_repo()
        return self._repo

    def _read_repo(self) -> RepoState:
        from ..checks.clean_tree import repo_state

        project = self.project()
        own = (project.trials_folder, *self.settings.outputs, *self._store_files())
        return repo_state(project.root, own=own, ignore=self.settings.dirty_ignore)

    def _store_files(self) -> tuple[Path, ...]:
        """A SQLite store named by URL, with its journal files: written by us, never a dirty tree."""
        url = self.store_url()
        if url is None or not url.startswith("sqlite:///"):
            return ()
        path = Path(url.removeprefix("sqlite:///"))
        return (path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")))

    def read_facts(self) -> tuple[RepoState, dict[str, Any]]:
        """The git state and the environment, read together (in the warm-up thread while pytest collects)."""
        from ..identity.environment import gather

        return self._read_repo(), gather(self.settings.env_vars)

    def collects_trials(self) -> bool:
        """Whether this session's arguments include the investigation's pyproject.toml."""
        return str(self.settings.pyproject) in {str(Path(a.split("::")[0]).resolve()) for a in self.config.args}

    def store_url(self) -> str | None:
        """The store URL: ``--mitosis-store`` or ini ``mitosis_store``, else ``store`` of ``[tool.mitosis]``;
        ``None`` for ``<trials folder>/mitosis.sqlite``."""
        return self.settings.store or self.project().store

    def read_from(self) -> str | StoreURL | None:
        """What readers in this session open: the store this session writes, once it is open (so a
        store from a plugin's ``pytest_mitosis_make_store`` is read back too), else the configured URL."""
        from ..store import readable

        found = readable(self._store) if self._store is not None else None
        return found or self.store_url()

    def store(self) -> TrialStore:
        """The trial store, opened on first use (never by ``--collect-only`` or ``--help``)."""
        with self._store_lock:  # execnet's receiver threads may ask while the main thread opens it: one store
            if self._store is None:
                folder = self.project().trials_folder
                store = self.config.hook.pytest_mitosis_make_store(config=self.config, folder=folder)
                if store is None:
                    raise pytest.UsageError(
                        f"mitosis: no plugin provided a trial store for {folder}: every pytest_mitosis_make_store "
                        "implementation returned None. Return a TrialStore from yours, or let the built-in one answer."
                    )
                self._store = store
            return self._store

    def record_kept(self, earlier: bool) -> None:
        """Record the outcomes (and session ends) kept in the trials folder while the store was away
        (see :mod:`.recording.pending`), saying so in the terminal summary; never opens a store for it."""
        if self._store is None:
            return
        from ..recording.pending import record_kept

        recorded, problems = record_kept(self._store, self.project().trials_folder)
        when = "kept by an earlier session while the store was away" if earlier else "once the store was back"
        self.store_notes += [f"mitosis: recorded {when}: {line}" for line in recorded]
        self.store_notes += [f"mitosis: {line}" for line in problems]

    def preflight(self) -> None:
        """Session-wide refusals, before the first trial: a dirty tree, an unusable store.

        Then the leftovers of sessions that were killed: their staging folders (once the store
        has marked their trials interrupted) and their kernels' private folders.
        """
        from ..checks.clean_tree import refusal
        from ..store import StoreError

        try:
            project = self.project()
        except ConfigError:
            return  # reported as a collection error already
        if not self.settings.debug and not self.settings.reproduce:  # reproductions run in a clean checkout
            message = refusal(self.repo(), project.root)
            if message is not None:
                raise pytest.UsageError(message)
        self.prepare_trials_folder()
        try:
            store = self.store()
        except StoreError as err:
            raise pytest.UsageError(str(err)) from None
        self.record_kept(earlier=True)
        self.sweep(store)

    def prepare_trials_folder(self) -> None:
        """Create the trials folder (with its .gitignore); a path in the way is a usage error."""
        from ..execution.artifacts import prepare_trials_folder

        folder = self.project().trials_folder
        pyproject = self.settings.pyproject
        if folder == pyproject or folder in pyproject.parents:
            raise pytest.UsageError(
                f"mitosis: the trials folder {folder} {'is' if folder == pyproject else 'holds'} the investigation's "
                f"{pyproject.name} ({pyproject}): trial folders and the store go into a folder of their own, never "
                "over or around the code. Point --mitosis-trials-folder (or trials-folder in [tool.mitosis]) at a "
                f"new folder, such as {pyproject.parent / 'trials'}."
            )
        try:
            prepare_trials_folder(folder, gitignore=self.settings.gitignore)
        except OSError as err:
            what = err.strerror or str(err)
            if folder.exists() and not folder.is_dir():
                what = "it exists and is not a folder"
            raise pytest.UsageError(
                f"mitosis: the trials folder {folder} cannot be used: {what}. Point --mitosis-trials-folder (or "
                "trials-folder in [tool.mitosis]) at a folder you can write, or move what is in the way."
            ) from None

    def sweep(self, store: Any) -> None:
        """Remove what killed sessions left: staging folders of trials no longer running, kernel folders."""
        from ..execution.artifacts import leftover_staging, remove_staging
        from ..execution.private import sweep_stale_private_folders

        if self._swept:
            return
        self._swept = True
        trials = self.project().trials_folder
        keys = leftover_staging(trials)
        statuses = getattr(store, "statuses", None)
        if keys and statuses is not None:
            for key, status in statuses(keys).items():
                if status != "running":
                    remove_staging(trials, key)
        sweep_stale_private_folders()

    def identify(self, nodeid: str, spec: TrialSpec) -> TrialIdentity:
        """A trial's fingerprints, computed once per session (the plan and the setup both need them)."""
        if nodeid not in self._identities:
            from ..identity.trial import identify

            self._identities[nodeid] = identify(spec, self.seed, strict=not self.settings.debug)
        return self._identities[nodeid]

    def start_progress(self, experiments: list[str], workers: int) -> None:
        """The sweep's progress line (or log lines) for the selected trials' experiments (see progress.py)."""
        from .progress import Progress

        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None or self.progress is not None:
            return
        progress = Progress(reporter, self.settings.progress_every, workers)
        if progress.active:
            progress.plan(experiments)
            self.progress = progress

    def watch_workers(self, ids: list[str], workers: int) -> None:
        """On the xdist controller: the progress of every worker's trial (``ids``: the collected node ids)."""
        self.start_progress([i.rsplit("::", 1)[-1].split("[", 1)[0] for i in ids], workers)
        if self.progress is not None:
            from .progress import Heartbeats

            self.progress.watch(Heartbeats(self.project().trials_folder, self.read_from(), self.session_key))

    def beat_session(self) -> None:
        """The session's heartbeat with its progress (``status``), from the main thread: at each trial's start
        and end, and (a session alone) every few seconds while a trial runs."""
        import time

        progress = self.progress
        if not self.session_recorded or progress is None or time.monotonic() - self._session_beaten < 2.0:
            return  # at most one write every two seconds: a sweep of cheap trials pays next to nothing
        self._session_beaten = time.monotonic()
        beat = getattr(self.store(), "beat", None)
        if beat is not None:
            beat("session", self.session_key, None, progress.summary())

    def on_progress(self, nodeid: str, key: str, name: str, state: dict[str, Any]) -> None:
        """A running trial's state, about every second: the progress line, and every few seconds its heartbeat
        in the store (with this session's progress when it runs alone), for ``status`` and the xdist controller."""
        import time

        if self.progress is not None:
            self.progress.tick(key, nodeid.rsplit("::", 1)[-1], state)
        every = self.settings.heartbeat_every
        now = time.monotonic()
        if every <= 0 or (key == self._beat_key and now - self._beaten < every):
            return  # a trial's first tick beats at once: status and the xdist controller see it start
        self._beaten, self._beat_key = now, key
        beat = getattr(self.store(), "beat", None)
        if beat is None:  # a plugin's store, or a remote worker's proxy: no heartbeats
            return
        from ..store import StoreError

        try:  # a store that went away is not waited for here: the trial runs on, its next write waits
            self._beat(beat, nodeid, key, name, state)
        except StoreError:
            pass

    def _beat(self, beat: Any, nodeid: str, key: str, name: str, state: dict[str, Any]) -> None:
        beat("trial", key, self.session_key, {**state, "name": name, "nodeid": nodeid})
        self.beat_session()

    def changed_since_start(self) -> list[str]:
        """What ``git status`` lists now in a tree that was clean when the session started (empty otherwise)."""
        if self.settings.debug or self.settings.reproduce or not self.repo().clean:
            return []
        try:
            return list(self._read_repo().dirty)
        except (ConfigError, OSError):
            return []

    def resumed(self, nodeid: str, spec: TrialSpec) -> str | None:
        """Why ``--mitosis-resume`` skips this trial (it passed at the current commit), or ``None``.

        Asked at each trial's setup, not once at the start: another session (or xdist worker) may have
        passed it since, and an xdist worker then skips it like a session alone would.
        """
        if not self.settings.resume:
            return None
        from ..checks.sweep_plan import resumed

        return resumed(self.store(), spec, self.identify(nodeid, spec), self.repo().commit)

    def guard(self, nodeid: str, spec: TrialSpec) -> TrialIdentity:
        """Fingerprint a trial, check that its code is still the commit's and its variant locks (not in debug mode)."""
        identity = self.identify(nodeid, spec)
        if not self.settings.debug:
            changed = self.code_changed((), "since the session started")
            if changed is not None:
                raise TrialFailed(changed)
            self.store().check_locks(identity.locks)
        return identity

    def code_changed(self, sources: tuple[str, ...], when: str) -> str | None:
        """Why a trial's record would not name the code that ran (see :mod:`.checks.code_drift`), or ``None``.

        The files compared: ``pyproject.toml``, the step and lookup modules, every file of the repository
        that a kernel of this process imported, and ``sources`` (what the trial's own kernel imported).
        Never in debug mode or for a tree that was not clean at the start (nothing to compare with).
        """
        if self.settings.debug or self.settings.reproduce:
            return None
        files = self._commit_files
        if files is None:
            repo = self.repo()
            if not repo.clean or repo.worktree is None or repo.commit is None:
                return None
            from ..checks.code_drift import CommitFiles

            project = self.project()
            own = (project.trials_folder, *self.settings.outputs, *self._store_files())
            files = self._commit_files = CommitFiles(
                repo.worktree, repo.commit, tuple(p.resolve() for p in own), self.settings.dirty_ignore
            )
        from ..checks.code_drift import changed_message, module_files, stop_message

        root, modules = self.step_modules()
        self._sources.update(Path(s) for s in sources)
        changed = files.changed([self.settings.pyproject, *module_files(root, modules), *self._sources])
        if not changed:
            return None
        self.code_moved = stop_message(changed)
        return changed_message(changed, files.commit, when)

    def run(self, nodeid: str, spec: TrialSpec, identity: TrialIdentity) -> TrialOutcome:
        """Record and run one trial (see :mod:`pytest_mitosis.recording.trial`); an interruption stops the session."""
        from ..views.summary import SummaryRow

        try:
            outcome = self._record(nodeid, spec, identity)
        finally:
            if self.progress is not None:
                self.progress.erase()  # before pytest writes the outcome (or "KeyboardInterrupt")
        problem = self.ahead.problem()
        if problem is not None:  # once per session (per xdist worker), in the summary and the junit XML
            from dataclasses import replace

            outcome = replace(outcome, warnings=(*outcome.warnings, f"kernels are spawned, not forked: {problem}"))
        if outcome.interrupted is not None:
            self.rows.append(
                SummaryRow(nodeid, "interrupted", outcome.main, str(outcome.html or ""), outcome.iteration, outcome.key)
            )
            raise KeyboardInterrupt  # pytest stops the session: "!!! KeyboardInterrupt !!!", exit code 2
        return outcome

    def _record(self, nodeid: str, spec: TrialSpec, identity: TrialIdentity) -> TrialOutcome:
        """:func:`~.recording.trial.record_trial` with what this session knows."""
        from ..recording.trial import record_trial

        project = self.project()
        environment = self.environment()
        return record_trial(
            spec,
            identity,
            nodeid=nodeid,
            store=self.store(),
            project=project,
            settings=self.settings,
            environment=environment,
            seed=self.seed,
            session=self.session_key,
            prepared=lambda: (self.ahead.take(project.cwd if self.next_is_trial else None), self.ahead.html()),
            code_changed=lambda sources: self.code_changed(sources, "while the trial ran"),
            progress=lambda key, name, state: self.on_progress(nodeid, key, name, state),
        )

    def reproduce(self, nodeid: str, record: TrialRecord, reader: Reader) -> TrialOutcome:
        """``--mitosis-reproduce``: run a recorded trial again at its commit (see recording/reproduction.py)."""
        from ..recording.reproduction import ReproductionError, reproduce_trial

        project = self.project()
        worktree = self.repo().worktree
        if worktree is None:
            raise ReproductionError(f"{project.root} is not in a git repository: a reproduction checks out a commit")
        return reproduce_trial(
            record,
            reader=reader,
            store=self.store(),
            project_root=project.root,
            trials=project.trials_folder,
            worktree=worktree,
            environment=self.environment(),
            nodeid=nodeid,
            timeout=self.settings.timeout,
            max_output=self.settings.max_cell_output,
            rtol=self.settings.rtol,
            atol=self.settings.atol,
            tolerances=project.tolerances_of(record.experiment),  # today's pyproject: how close is the same, now
            pyproject=project.path,
            session=self.session_key,
            vouched=frozenset((a.step, a.param, a.value) for a in self.settings.evals),
        )

    def close(self) -> None:
        """Stop what was started ahead and close the store (at unconfigure)."""
        if self.progress is not None:
            self.progress.close()
            self.progress = None
        self.ahead.close()
        if self.shared is not None:
            self.shared.close(used=bool(self.rows))
            self.shared = None
        if self._store is not None:
            self._store.close()
            self._store = None


session_key = pytest.StashKey[MitosisSession]()
