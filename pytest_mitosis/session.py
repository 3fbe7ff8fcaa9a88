"""The per-session object behind ``--mitosis``: settings, the project, running trials, the summary.

Registered as the plugin ``mitosis-session`` and kept in ``config.stash[session_key]`` only
when ``--mitosis`` is given, and unregistered at unconfigure. Nothing here runs for a
pytest session without ``--mitosis``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .ahead import Ahead
from .errors import ConfigError
from .options import Settings
from .reporting import SummaryRow, summary_lines, summary_row

if TYPE_CHECKING:
    from .collect import Collected
    from .guards import RepoState
    from .identity import TrialIdentity
    from .project import ProjectConfig
    from .store import TrialStore
    from .runner import TrialOutcome
    from .variants import TrialSpec


def _fact_imports() -> None:
    """What reading the facts imports, imported here in the main thread (see ahead.py)."""
    import importlib.metadata  # noqa: F401

    import git  # noqa: F401

    from . import environment, guards  # noqa: F401


def _terminate(signum: int, frame: Any) -> None:
    """SIGTERM (batch schedulers, CI runners) stops the session the way Ctrl-C does."""
    raise KeyboardInterrupt


class MitosisSession:
    """Hooks and state for one pytest session with ``--mitosis``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._project: ProjectConfig | None = None
        self._repo: RepoState | None = None
        self._store: TrialStore | None = None
        self._environment: dict[str, Any] | None = None
        self._seed: int | None = settings.seed
        self.ahead = Ahead()
        self._identities: dict[str, TrialIdentity] = {}
        self._experiments: list[Collected] | None = None
        self._next: pytest.Item | None = None
        self.rows: list[SummaryRow] = []
        #: experiments that cannot be collected, shown after --collect-only (a run shows their setup errors)
        self.broken: list[tuple[str, str]] = []
        self.report: Path | str | None = None
        self._sigterm: Any = None
        self._swept = False

    @property
    def seed(self) -> int:
        """The session's seed: given, sent by the xdist controller, or drawn once here."""
        if self._seed is None:
            workerinput = getattr(self.config, "workerinput", None)
            if workerinput is not None and "mitosis_seed" in workerinput:
                self._seed = int(workerinput["mitosis_seed"])
            else:
                import secrets

                from .options import MAX_SEED

                self._seed = secrets.randbelow(MAX_SEED + 1)
        return self._seed

    def environment(self) -> dict[str, Any]:
        """The environment record, gathered once per process; plugins add keys through the hook."""
        if self._environment is None:
            from .environment import gather
            from .guards import summary

            facts = self.ahead.facts()
            found = dict(facts[1]) if facts is not None else gather(self.settings.env_vars)
            found["git"] = summary(self.repo())
            builtin = set(found)
            for extra in self.config.hook.pytest_mitosis_environment(config=self.config):
                for key, value in dict(extra or {}).items():
                    if key in found:
                        origin = "the built-in record" if key in builtin else "another implementation"
                        raise pytest.UsageError(
                            f"mitosis: a pytest_mitosis_environment implementation returns the key {key!r}, which "
                            f"{origin} already has; use another key."
                        )
                    found[key] = value
            self._environment = found
        return self._environment

    def project(self) -> ProjectConfig:
        """``[tool.mitosis]``, read once (lazily: ``--help`` never reads it)."""
        if self._project is None:
            from .project import load_project

            self._project = load_project(self.settings.pyproject, self.settings.trials_folder)
        return self._project

    def experiments(self) -> list[Collected]:
        """The selected experiments with their trials (or why they cannot run), expanded once per process."""
        if self._experiments is None:
            from .collect import collect_experiments

            self._experiments = collect_experiments(self.project(), self.settings)
        return self._experiments

    def repo(self) -> RepoState:
        """The git state of the investigation, read once per process."""
        if self._repo is None:
            facts = self.ahead.facts()
            self._repo = facts[0] if facts is not None else self._read_repo()
        return self._repo

    def _read_repo(self) -> RepoState:
        from .guards import repo_state

        project = self.project()
        own = (project.trials_folder, *self.settings.outputs)
        return repo_state(project.root, own=own, ignore=self.settings.dirty_ignore)

    def _read_facts(self) -> tuple[RepoState, dict[str, Any]]:
        from .environment import gather

        return self._read_repo(), gather(self.settings.env_vars)

    def store(self) -> TrialStore:
        """The trial store, opened on first use (never by ``--collect-only`` or ``--help``)."""
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

    def preflight(self) -> None:
        """Session-wide refusals, before the first trial: a dirty tree, an unusable store.

        Then the leftovers of sessions that were killed: their staging folders (once the store
        has marked their trials interrupted) and their kernels' private folders.
        """
        from .guards import refusal
        from .store import StoreError

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
        self.sweep(store)

    def prepare_trials_folder(self) -> None:
        """Create the trials folder (with its .gitignore); a path in the way is a usage error."""
        from .artifacts import prepare_trials_folder

        folder = self.project().trials_folder
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
        from .artifacts import leftover_staging, remove_staging
        from .kernel import sweep_stale_private_folders

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
            from .identity import identify

            self._identities[nodeid] = identify(spec, self.seed, strict=not self.settings.debug)
        return self._identities[nodeid]

    def guard(self, nodeid: str, spec: TrialSpec) -> TrialIdentity:
        """Fingerprint a trial and check its variant locks (skipped in debug mode)."""
        identity = self.identify(nodeid, spec)
        if not self.settings.debug:
            self.store().check_locks(identity.locks)
        return identity

    def run(self, item: pytest.Item, identity: TrialIdentity) -> TrialOutcome:
        """Record the trial as running, run it in a fresh kernel, and finalise the record."""
        from dataclasses import replace

        from .collect import TrialItem
        from .judge import judge
        from .runner import new_key, run_trial
        from .store import NewTrial

        spec: TrialSpec = item.spec  # type: ignore[attr-defined]
        project = self.project()
        debug = self.settings.debug
        environment = self.environment()
        git = environment["git"]
        store = self.store()
        steps = [{"name": s.name, "function": str(s.function), "lookup": str(s.lookup) if s.lookup else None}
                 for s in spec.steps]
        from .errors import TrialFailed
        from .store import StoreError, VariantRedefined, start

        refusal = None
        try:  # the store checks the locks again, atomically: another process may have taken them
            key, iteration = start(
                store,
                lambda key: NewTrial(key, spec.experiment, identity.identity, spec.id, spec.slug, item.nodeid, debug,
                                     git, self.seed, environment, steps, identity.params),
                identity.locks,
                new_key(),
            )
        except (VariantRedefined, StoreError) as err:
            refusal = str(err)
        if refusal is not None:
            raise TrialFailed(refusal)
        name = spec.slug if iteration is None else f"{spec.slug}-{iteration}"
        try:
            outcome = run_trial(
                spec,
                key=key,
                name=name,
                root=project.cwd,
                trials=project.trials_folder,
                timeout=self.settings.timeout,
                debug=debug,
                seed=self.seed,
                launched=self.ahead.take(project.cwd if isinstance(self._next, TrialItem) else None),
                html=self.ahead.html(),
                metadata={"experiment": spec.experiment, "id": spec.id, "iteration": iteration, "debug": debug,
                          "git": git, "steps": steps, "params": identity.params, "environment": environment,
                          "working_dir": str(project.cwd)},
            )
        except BaseException as err:
            status = "interrupted" if isinstance(err, KeyboardInterrupt) else "failed"
            store.finish(key, status=status, main=None, metrics={}, folder=None, message=f"{type(err).__name__}: {err}")
            raise
        folder = str(outcome.folder) if outcome.folder is not None else None
        if outcome.interrupted is not None:
            store.finish(key, status="interrupted", main=outcome.main, metrics=outcome.metrics, folder=folder,
                         message=outcome.message)
            from .reporting import SummaryRow

            self.rows.append(SummaryRow(item.nodeid, "interrupted", outcome.main, str(outcome.html or ""), iteration, key))
            raise KeyboardInterrupt  # pytest stops the session: "!!! KeyboardInterrupt !!!", exit code 2
        outcome = judge(outcome, spec, identity.identity, store, self.settings, seed=self.seed)
        warnings = store.finish(
            key,
            status="passed" if outcome.passed else "failed",
            main=outcome.main,
            metrics=outcome.metrics,
            folder=folder,
            message=outcome.message,
            verdict=outcome.verdict,
        )
        return replace(outcome, iteration=iteration, commit=git["commit"], seed=self.seed, warnings=tuple(warnings))

    def reproduce(self, item: pytest.Item, record: Any, reader: Any) -> TrialOutcome:
        """``--mitosis-reproduce``: run a recorded trial again at its commit (see reproduce.py)."""
        from .reproduce import ReproductionError, reproduce_trial

        project = self.project()
        worktree = self.repo().worktree
        if worktree is None:
            raise ReproductionError(f"{project.root} is not in a git repository: a reproduction checks out a commit")
        return reproduce_trial(
            record, reader=reader, store=self.store(), project_root=project.root, trials=project.trials_folder,
            worktree=worktree, environment=self.environment(), nodeid=item.nodeid, timeout=self.settings.timeout,
            rtol=self.settings.rtol, atol=self.settings.atol, pyproject=project.path, working_dir=project.cwd,
            vouched=frozenset((a.step, a.param, a.value) for a in self.settings.evals),
        )

    # -- hooks ---------------------------------------------------------------------------------

    @pytest.hookimpl(trylast=True)
    def pytest_mitosis_make_store(self, config: pytest.Config, folder: Path) -> TrialStore:
        from .store import SQLiteStore

        return SQLiteStore(folder)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        """Before the first trial: the check mode, or the sweep size guard, the session-wide guards and the plan."""
        from .collect import BrokenExperiment, ReproduceItem, TrialItem

        if hasattr(self.config, "workerinput"):
            return None
        broken = [item for item in session.items if isinstance(item, BrokenExperiment)]
        if session.config.option.collectonly:
            if broken and not session.testsfailed:
                session.testsfailed = len(broken)  # exit code 1: a configuration to fix, listed in the summary
                self.broken = [(item.nodeid, item.message) for item in broken]
                return True  # not pytest's loop, which would call them "errors during collection"
            return None
        trials = [(item.nodeid, item.spec) for item in session.items if isinstance(item, TrialItem)]
        if self.settings.check:
            return self.check(session, trials, broken)
        distributed = self.config.pluginmanager.has_plugin("dsession")
        self.limit(session, trials if not distributed else None)
        reproducing = any(isinstance(item, ReproduceItem) for item in session.items)
        if distributed or trials or reproducing:
            self.preflight()
        if trials and not self.settings.debug:
            from .plan import plan, totals

            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                reporter.write_line(f"mitosis plan: {totals(plan(trials, self.store(), self.identify, None))}")
        return None

    def limit(self, session: pytest.Session, trials: Sequence[tuple[str, TrialSpec]] | None) -> None:
        """The sweep size guard: refuse to start more than ``max_trials`` kernels nobody chose.

        ``trials`` are the selected trials, or ``None`` under pytest-xdist, whose controller
        does not collect: then, as nothing was selected, every trial of the experiments counts.
        """
        from .sweep import explicit_selection, refusal

        limit = self.settings.max_trials
        if not limit or self.settings.reproduce or explicit_selection(self.config, self.settings):
            return
        if trials is None:
            if not self._collects_trials():
                return
            try:
                trials = [("", spec) for e in self.experiments() for spec in e.trials]
            except ConfigError:
                return  # the workers report it as a collection error
        if len(trials) <= limit:
            return
        per_experiment: dict[str, int] = {}
        examples: dict[str, str] = {}
        for _, spec in trials:
            per_experiment[spec.experiment] = per_experiment.get(spec.experiment, 0) + 1
            examples.setdefault(spec.experiment, spec.item_name)
        raise pytest.UsageError(refusal(per_experiment, limit, examples, self.config, self.settings.pyproject))

    def _collects_trials(self) -> bool:
        """Whether this session's arguments include the investigation's pyproject.toml."""
        return str(self.settings.pyproject) in {str(Path(a.split("::")[0]).resolve()) for a in self.config.args}

    def check(self, session: pytest.Session, trials: list[tuple[str, TrialSpec]], broken: Sequence[Any] = ()) -> bool:
        """``--mitosis-check``: one line per trial, no kernel; blocked trials count as failures."""
        from .guards import refusal
        from .plan import Planned, blocked_reason, plan, totals
        from .store import StoreError

        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        project = self.project()
        repo = self.repo()
        dirty = refusal(repo, project.root)
        try:
            planned = plan(trials, self.store(), self.identify, blocked_reason(repo) if dirty else None)
        except StoreError as err:
            raise pytest.UsageError(str(err)) from None
        planned += [Planned(item.nodeid, "blocked", f"blocked: cannot be collected:\n{item.message}") for item in broken]
        if reporter is not None:
            reporter.write_sep("=", "mitosis check")
            if dirty:
                reporter.write_line(dirty)
            for item in planned:
                reporter.write_line(item.line)
            reporter.write_line(f"mitosis check: {totals(planned)}")
        session.testsfailed = sum(1 for p in planned if p.status == "blocked") or (1 if dirty else 0)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Any:
        """Start the first trial's kernel and read git and the environment while pytest collects.

        The facts thread is joined before collection ends: pytest's logging plugin walks every
        logger when collection ends, and must never meet a thread of ours importing modules.
        A node id that matches nothing gets pytest's error completed with what there is.
        """
        settings = self.settings
        if not (
            session.config.option.collectonly
            or settings.check
            or settings.reproduce
            or self.config.pluginmanager.has_plugin("dsession")
            or not self._collects_trials()
        ):
            try:
                self.ahead.launch(self.project().cwd)
                self.ahead.gather(self._read_facts, imports=_fact_imports)
            except (ConfigError, OSError, RuntimeError):
                pass  # nothing gained, nothing lost: the trial starts its own kernel
        try:
            return (yield)
        except pytest.UsageError as err:
            from .sweep import explain_not_found

            raise pytest.UsageError(*(explain_not_found(str(arg), self) for arg in err.args)) from None
        finally:
            self.ahead.settle()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        self._next = nextitem

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        from .collect import TrialItem

        if not any(isinstance(item, TrialItem) for item in session.items):
            self.ahead.discard()

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """pytest-xdist: every worker uses the controller's seed."""
        node.workerinput["mitosis_seed"] = self.seed

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """SIGTERM stops the session like Ctrl-C (the running trial is recorded ``interrupted``)."""
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            self._sigterm = signal.signal(signal.SIGTERM, _terminate)

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._sigterm is not None:
            import signal

            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None
        self.ahead.close()
        if self._store is not None:
            self._store.close()
            self._store = None

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        if file_path.resolve() == self.settings.pyproject:
            from .collect import MitosisFile

            return MitosisFile.from_parent(parent, path=file_path)
        return None

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        try:
            folder = str(self.project().trials_folder)
        except ConfigError:
            folder = "(unknown: see the collection error)"
        try:
            cwd = str(self.project().cwd)
        except ConfigError:
            cwd = "(unknown)"
        lines = [
            f"mitosis: experiments from {self.settings.pyproject}, trials folder {folder}",
            f"mitosis: kernels run in {cwd}",
            f"mitosis: seed {self.seed} (repeat with --mitosis-seed {self.seed})",
        ]
        if self.settings.debug:
            lines.append("mitosis: DEBUG MODE: guards waived; trials kept apart in the debug folder")
        return lines

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        props = list(report.user_properties)
        is_trial = any(name == "mitosis.trial" for name, _ in props)
        if report.when == "call" and is_trial:
            self.rows.append(summary_row(report.nodeid, report.outcome, props))
        elif report.failed and report.when == "setup" and "pyproject.toml::" in report.nodeid:
            self.rows.append(summary_row(report.nodeid, "error", props))

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Refresh the static report once, on the controller, when trials ran."""
        if hasattr(self.config, "workerinput") or not self.rows or not self.settings.report:
            return
        from .records import RecordsError
        from .report import build

        try:
            self.report = build(self.project().trials_folder)  # debug trials only on request (report --debug)
        except (RecordsError, OSError) as err:
            self.report = f"not refreshed: {err}"

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if self.broken:
            terminalreporter.write_sep("=", "mitosis: experiments that cannot run")
            for nodeid, message in self.broken:
                terminalreporter.write_line(f"ERROR {nodeid}\n{message}\n")
        if hasattr(self.config, "workerinput") or not self.rows:
            return
        terminalreporter.write_sep("=", "mitosis trials")
        for line in summary_lines(self.rows):
            terminalreporter.write_line(line)
        if self.report is not None:
            terminalreporter.write_line(f"report: {self.report}")


session_key = pytest.StashKey[MitosisSession]()

