"""The pytest hooks of a ``--mitosis`` session, each delegating to the stage that owns the work.

Registered as the plugin ``mitosis-session`` only when ``--mitosis`` is given (and
unregistered at unconfigure), so nothing here runs in a pytest session without it. Each hook
decides *when* (which phase, controller or xdist worker, ``--collect-only``, ``--mitosis-check``)
and turns refusals into pytest's own errors; *what* happens is in the stages: collection in
:mod:`.collection`, the sweep size guard in :mod:`.selection`, the plan in
:mod:`..checks.sweep_plan`, running and recording in :mod:`..recording` (through
:class:`.trials.TrialService`), the summary and the report in :mod:`..views`. The progress line's
hooks are :mod:`.progress_hooks`, those of the session's end :mod:`.session_end`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..core.errors import ConfigError
from .collection import BrokenExperiment, MitosisFile, ReproduceItem, TrialItem
from .context import warmup_imports
from .session import MitosisSession

if TYPE_CHECKING:
    from ..store import TrialStore


def check_ci_paths(settings: Any) -> None:
    """A summary or benchmark path that cannot be a file stops the session before any trial runs."""
    from ..views.ci import path_problem

    for option, path in (
        ("--mitosis-summary", settings.summary),
        ("--mitosis-benchmark-json", settings.benchmark_json),
    ):
        problem = path_problem(option, path) if path is not None else None
        if problem is not None:
            raise pytest.UsageError(problem)


class _Terminate:
    """SIGTERM (batch schedulers, CI runners) stops the session the way Ctrl-C does.

    On pytest-xdist's controller it is passed on to the local workers first.

    Ctrl-C reaches every process of the terminal's group; ``kill PID`` (or a scheduler's SIGTERM)
    reaches the controller alone, and its workers went on starting trials for seconds while it waited
    for them. Each worker stops its running trial (recorded ``interrupted``) and takes no other.
    """

    def __init__(self, workers: list[int]) -> None:
        self.workers = workers

    def __call__(self, signum: int, frame: Any) -> None:
        import signal

        for pid in self.workers:
            try:
                os.kill(pid, signal.SIGTERM)
            except OSError:
                pass  # gone already
        raise KeyboardInterrupt


class MitosisHooks:
    """The hook implementations of one pytest session with ``--mitosis``."""

    def __init__(self, mitosis: MitosisSession) -> None:
        self.mitosis = mitosis
        self.config = mitosis.context.config
        self.settings = mitosis.context.settings
        #: the trials folder, resolved (see pytest_ignore_collect)
        self._trials: Path | None = None
        self._sigterm: Any = None

    @pytest.hookimpl(trylast=True)
    def pytest_mitosis_make_store(self, config: pytest.Config, folder: Path) -> TrialStore:
        from ..store import make_store

        return make_store(
            self.mitosis.context.store_url(),
            folder,
            allow_network=self.settings.allow_network_store,
            patience=self.settings.store_patience,
        )

    def pytest_ignore_collect(self, collection_path: Path, config: pytest.Config) -> bool | None:
        """pytest never walks the trials folder: it holds no test, and a study's thousands of trial
        folders (notebooks, pages, pickles) made every session's collection walk them all (over a
        second per session at 400 trials, in every xdist worker)."""
        if self._trials is None:
            try:
                self._trials = self.mitosis.context.project().trials_folder.resolve()
            except (ConfigError, OSError):
                self._trials = Path()  # reported by collection; nothing to skip
            pyproject = self.settings.pyproject
            if self._trials == pyproject or self._trials in pyproject.parents:
                self._trials = Path()  # never skip the experiments: the session refuses that trials folder, saying why
        if collection_path.name == self._trials.name and collection_path.resolve() == self._trials:
            return True
        return None

    def pytest_collect_file(self, file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
        if file_path.resolve() == self.settings.pyproject:
            return MitosisFile.from_parent(parent, path=file_path, mitosis=self.mitosis)
        return None

    @pytest.hookimpl(wrapper=True)
    def pytest_collection(self, session: pytest.Session) -> Any:
        """Start the first trial's kernel and read git and the environment while pytest collects.

        The provenance thread is joined before collection ends: pytest's logging plugin walks every
        logger when collection ends, and must never meet a thread of ours importing modules.
        A node id that matches nothing gets pytest's error completed with what there is.
        """
        mitosis = self.mitosis
        if self._runs_trials_here():
            try:
                mitosis.context.ahead.launch(mitosis.context.project().cwd)
                mitosis.context.ahead.gather(mitosis.context.read_facts, imports=warmup_imports)
            except Exception:  # ConfigError, a kernel that cannot start (zmq, the OS): reported by the trial
                pass  # nothing gained, nothing lost: the trial starts its own kernel
        from ..core import profile

        try:
            with profile.timed("collection"):
                collected = yield
            profile.flush("session", "collection")
            return collected
        except pytest.UsageError as err:
            from .selection import explain_not_found

            raise pytest.UsageError(*(explain_not_found(str(arg), mitosis.context) for arg in err.args)) from None
        finally:
            mitosis.context.ahead.settle()

    def _runs_trials_here(self) -> bool:
        """Whether this process will run trials (so kernels are worth starting before they are needed):
        not ``--collect-only``, ``--mitosis-check`` or a reproduction, not pytest-xdist's controller
        (its workers run the trials), not a session whose trials are Slurm jobs (no warm parent or HTML
        helper on a cluster's shared login node), and the investigation's pyproject.toml is collected."""
        config = self.config
        controller = not hasattr(config, "workerinput") and (
            config.pluginmanager.has_plugin("dsession") or getattr(config.option, "dist", "no") != "no"
        )
        settings = self.settings
        return not (
            config.option.collectonly
            or settings.check
            or settings.reproduce
            or controller
            or settings.executor == "slurm"
            or not self.mitosis.context.collects_trials()
        )

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        if not any(isinstance(item, TrialItem) for item in session.items):
            self.mitosis.context.ahead.close()  # no trial runs here: the spare kernel, the warm parent, the HTML helper
        elif self._runs_trials_here():
            import gc

            # What collection imported (pytest, the steps' numpy or scikit-learn, jupyter_client) lives
            # until the process exits: the cyclic garbage collector need not walk it again. Without
            # this, pytest's collection at unconfigure and the interpreter's at exit walk it all once
            # more, about 0.1 s and 0.5 s of every session. Objects created later (each trial's) are
            # collected as usual.
            gc.freeze()

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtestloop(self, session: pytest.Session) -> bool | None:
        """Before the first trial: the check mode, or the sweep size guard, the session-wide guards and the plan."""
        if hasattr(self.config, "workerinput"):
            return None
        mitosis = self.mitosis
        broken = [(item.nodeid, item.message) for item in session.items if isinstance(item, BrokenExperiment)]
        if session.config.option.collectonly:
            if broken and not session.testsfailed:
                session.testsfailed = len(broken)  # exit code 1: a configuration to fix, listed in the summary
                mitosis.state.broken = broken
                return True  # not pytest's loop, which would call them "errors during collection"
            return None
        trials = [(item.nodeid, item.spec) for item in session.items if isinstance(item, TrialItem)]
        if self.settings.check:
            return self._check(session, trials, broken)
        if self.config.pluginmanager.has_plugin("dsession"):
            return None  # see pytest_xdist_node_collection_finished: the workers collect, the controller does not
        from .selection import sweep_size_refusal

        too_many = sweep_size_refusal(mitosis.context, trials)
        if too_many is not None:
            raise pytest.UsageError(too_many)
        check_ci_paths(self.settings)
        reproducing = any(isinstance(item, ReproduceItem) for item in session.items)
        if trials or reproducing:
            mitosis.preflight.run()
            from .session_record import open_session

            open_session(mitosis, False)
        if trials:
            mitosis.heartbeat.start([spec.experiment for _, spec in trials], 1)
        if trials and not self.settings.debug:
            from ..checks.sweep_plan import plan, totals

            reporter = self.config.pluginmanager.get_plugin("terminalreporter")
            if reporter is not None:
                resume_at = mitosis.context.repo().commit if self.settings.resume else None
                planned = plan(trials, mitosis.context.store(), mitosis.trials.identify, None, resume_at)
                reporter.write_line(f"mitosis plan: {totals(planned)}")
        if trials and self.settings.executor == "slurm":
            self._submit(trials)
        return None

    def _submit(self, trials: list[tuple[str, Any]]) -> None:
        """``--mitosis-executor=slurm``: every trial guarded, recorded and submitted before the first item runs."""
        import shutil

        if shutil.which("sbatch") is None:
            raise pytest.UsageError(
                "--mitosis-executor=slurm: sbatch is not on PATH. Run pytest where Slurm's commands are (a "
                "cluster's login node, or inside a Slurm job), or drop --mitosis-executor=slurm to run here."
            )
        said = self.mitosis.trials.submit(trials)
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"mitosis: {said}")

    def _check(self, session: pytest.Session, trials: list[tuple[str, Any]], broken: list[tuple[str, str]]) -> bool:
        """``--mitosis-check``: one line per trial, no kernel; blocked trials count as failures."""
        from ..checks.sweep_plan import check, rules, totals
        from ..store import StoreError

        mitosis = self.mitosis
        mitosis.preflight.prepare_trials_folder()  # the store it reads may be new: its folder ignores itself like a run's
        try:
            dirty, planned = check(
                trials,
                broken,
                mitosis.context.store(),
                mitosis.trials.identify,
                mitosis.context.repo(),
                mitosis.context.project().root,
                self.settings.resume,
            )
            judged_by = rules(trials, mitosis.context.store(), mitosis.trials.identify)
        except StoreError as err:
            raise pytest.UsageError(str(err)) from None
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_sep("=", "mitosis check")
            if dirty:
                reporter.write_line(dirty)
            for item in planned:
                reporter.write_line(item.line)
            for line in judged_by:
                reporter.write_line(line)
            reporter.write_line(f"mitosis check: {totals(planned)}")
        session.testsfailed = sum(1 for p in planned if p.status == "blocked") or (1 if dirty else 0)
        return True

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
        """A trial skipped by ``--mitosis-resume`` is reported at its pyproject.toml, not at our code's line; a
        Slurm task's call lasts what it ran in its job."""
        report = yield
        if report.when == "call" and isinstance(item, TrialItem) and item.ran_for is not None:
            report.duration = item.ran_for  # a Slurm task: its own time, not pytest's wait for it (junit, progress)
        if report.skipped and isinstance(item, TrialItem) and isinstance(report.longrepr, tuple):
            report.longrepr = (str(item.path), None, report.longrepr[2])
        return report

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_protocol(self, item: pytest.Item, nextitem: pytest.Item | None) -> None:
        self.mitosis.state.next_is_trial = isinstance(nextitem, TrialItem)

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """SIGTERM stops the session like Ctrl-C (the running trial is recorded ``interrupted``).

        The kernels' warm parent and the HTML helper start here, before pytest collects (collection
        imports the steps, and so numpy or scikit-learn, in this process): they import the same
        libraries, and nbconvert, on the other core meanwhile, and are ready sooner for the first trial.
        """
        import signal
        import threading

        if self._runs_trials_here():
            try:
                self.mitosis.context.ahead.start(self.mitosis.context.project().cwd)
            except ConfigError:  # reported by collection; the trials (if any) start their own kernels
                pass

        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) is not signal.SIG_IGN
        ):
            self._sigterm = signal.signal(signal.SIGTERM, _Terminate(self.mitosis.state.worker_pids))

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """The progress line's watcher stops and the line goes before anything of the session's end is written."""
        moved = self.mitosis.state.code_moved
        self.mitosis.trials.stop_slurm(
            "the sweep stopped: the investigation's code changed"
            if moved
            else "the session stopped before this trial's turn"
        )
        if self.mitosis.heartbeat.progress is not None:
            self.mitosis.heartbeat.progress.close()

    def pytest_unconfigure(self, config: pytest.Config) -> None:
        if self._sigterm is not None:
            import signal

            signal.signal(signal.SIGTERM, self._sigterm)
            self._sigterm = None
        self.mitosis.close()

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        from ..views.summary import header_lines

        try:
            folder = str(self.mitosis.context.project().trials_folder)
        except ConfigError:
            folder = "(unknown: see the collection error)"
        try:
            cwd = str(self.mitosis.context.project().cwd)
        except ConfigError:
            cwd = "(unknown)"
        lines = header_lines(self.settings.pyproject, folder, cwd, self.mitosis.context.seed, self.settings.debug)
        try:
            store = self.mitosis.context.store_url()
        except ConfigError:
            store = None
        if store is not None:  # the default (the trials folder's mitosis.sqlite) goes without saying
            from ..store import redact

            lines.insert(1, f"mitosis: store {redact(store)}")
        if os.environ.get("GITHUB_STEP_SUMMARY") and self.settings.summary is None:
            lines.append(
                "mitosis: on GitHub Actions: add --mitosis-summary=$GITHUB_STEP_SUMMARY "
                "to show the trials on the run's page"
            )
        return lines
