"""What pytest-xdist adds to a session: the controller's part for its workers, and a worker's start.

The controller hands every worker its seed and session key, and the remote-worker plumbing of
:mod:`.remote`; its local workers share its warm parent and HTML helper
(:mod:`.execution.shared`). It never collects: the sweep size guard counts the trials before the
workers start (:mod:`.sweep_count`, which expands the experiments here, only when the guard
applies), or, where it cannot count them exactly, once the first worker has collected; the
session-wide guards and the session's record wait until then
(``pytest_xdist_node_collection_finished``), before any trial is scheduled. A worker registers
the checks and the store of :mod:`.remote`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..core.errors import ConfigError, MitosisError

if TYPE_CHECKING:
    from ..pytest_layer.session import MitosisSession


class DistributedHooks:
    """The pytest-xdist hooks of one ``--mitosis`` session (optional: pytest-xdist may be absent)."""

    def __init__(self, mitosis: MitosisSession) -> None:
        self.mitosis = mitosis
        self.config = mitosis.context.config
        self.settings = mitosis.context.settings
        #: the controller has run the session-wide guards (when the first worker had collected)
        self._started = False
        #: the workers configured (the estimate of the sweep's end divides by their number)
        self._workers = 0

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        """Every worker uses the controller's seed and session key, checks its checkout against the
        controller's and, on another host or trials folder, records its trials through the controller."""
        from .remote import controller

        self._workers += 1
        popen = getattr(getattr(getattr(node, "gateway", None), "_io", None), "popen", None)  # execnet's popen gateway
        pid = getattr(popen, "pid", None)
        if isinstance(pid, int):
            self.mitosis.state.worker_pids.append(pid)
        node.workerinput["mitosis_seed"] = self.mitosis.context.seed
        node.workerinput["mitosis_session"] = self.mitosis.context.session_key
        controller(self.mitosis).configure_node(node)
        self._share_helpers(node)

    def _share_helpers(self, node: Any) -> None:
        """A local worker uses the controller's warm parent and HTML helper (see :mod:`.execution.shared`),
        started when the first one is configured, if this session runs trials."""
        from ..execution.shared import WORKERINPUT_KEY, SharedHelpers, is_local

        mitosis = self.mitosis
        settings = self.settings
        if (
            not is_local(getattr(getattr(node, "gateway", None), "spec", None))
            or self.config.option.collectonly
            or settings.check
            or settings.reproduce
            or not mitosis.context.collects_trials()
        ):
            return
        if mitosis.context.shared is None:
            try:
                cwd = mitosis.context.project().cwd
            except ConfigError:  # each worker reports it
                return
            mitosis.context.shared = SharedHelpers(
                cwd, settings.kernel or "auto", settings.preload, mitosis.context.step_modules
            )
        if mitosis.context.shared.paths:
            node.workerinput[WORKERINPUT_KEY] = dict(mitosis.context.shared.paths)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_setupnodes(self, config: pytest.Config, specs: Any) -> None:
        """Nothing is copied into a worker's checkout: pytest-xdist rsyncs pytest's own packages (``pytest/``,
        ``_pytest/``) into the directory of every worker with ``//chdir`` or on another host, where they
        made the checkout dirty (a later session there was refused) and shadowed the pytest installed on
        that host. Each host runs its own pytest and pytest-mitosis (see docs/team.md); only the folders a
        user names with ``--rsyncdir`` or ``rsyncdirs`` are still copied."""
        import _pytest

        manager = getattr(config.pluginmanager.getplugin("dsession"), "nodemanager", None)
        roots = getattr(manager, "roots", None)
        if manager is None or not roots:
            return
        own = {Path(pytest.__file__).resolve().parent, Path(_pytest.__file__).resolve().parent}
        manager.roots = [root for root in roots if Path(root).resolve() not in own]

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """On pytest-xdist's controller, before its workers start (xdist starts them in its own
        ``pytest_sessionstart``, which runs last): the sweep size guard, counting the trials here (see
        :mod:`.sweep_count`). A session over the limit is refused at once, with the message a session
        without xdist gives; one the controller cannot count exactly waits for its workers' collection."""
        config = self.config
        if (
            hasattr(config, "workerinput")
            or not config.pluginmanager.has_plugin("dsession")
            or config.option.collectonly
            or self.settings.check
        ):
            return
        from ..pytest_layer.selection import guarded, sweep_size_refusal

        context = self.mitosis.context
        if not guarded(context) or not context.collects_trials():
            return
        from .sweep_count import trials_before_workers

        trials = trials_before_workers(self.mitosis, session)
        if trials is None:
            return
        too_many = sweep_size_refusal(context, trials)
        if too_many is not None:
            raise pytest.UsageError(too_many)

    @pytest.hookimpl(optionalhook=True)
    def pytest_xdist_node_collection_finished(self, node: Any, ids: list[str]) -> None:
        """When the first worker has collected, before any trial is scheduled: the sweep size guard
        (counting the worker's node ids: the controller never imports the steps, which cost each
        session a second of CPU while its workers started), the session-wide guards, and the session's
        record. A refusal here stops the session before any trial runs."""
        if self._started or self.settings.check or self.config.option.collectonly:
            return
        self._started = True
        from ..pytest_layer.hooks import check_ci_paths
        from ..pytest_layer.selection import sweep_size_refusal
        from ..pytest_layer.session_record import open_session

        too_many = sweep_size_refusal(self.mitosis.context, None, ids)
        if too_many is not None:
            raise pytest.UsageError(too_many)
        check_ci_paths(self.settings)
        self.mitosis.preflight.run()
        open_session(self.mitosis, True)
        self.mitosis.heartbeat.watch_workers(ids, self._workers)

    @pytest.hookimpl(optionalhook=True)
    def pytest_handlecrashitem(self, crashitem: str, report: pytest.TestReport, sched: Any) -> None:
        """A worker died while running ``crashitem`` (killed, out of memory, a crash in native code): its
        trial is recorded ``failed`` at once, its staging folder removed, and xdist's failed report (which
        pytest counts, and which follows this hook) carries the trial's key, so the summary counts it too.

        Without this the trial stayed ``running`` until the next session, with its staging folder, and
        the summary said "11 passed" where pytest said "1 failed, 11 passed".
        """
        prefix = os.path.relpath(self.settings.pyproject, self.config.rootpath).replace(os.sep, "/")
        if not crashitem.startswith(f"{prefix}::") or hasattr(self.config, "workerinput"):
            return None  # not a trial
        gateway = getattr(getattr(getattr(report, "node", None), "gateway", None), "id", None) or "?"
        props: list[tuple[str, Any]] = [("mitosis.trial", crashitem.rsplit("::", 1)[-1])]
        try:
            done = self._record_crash(crashitem, str(gateway))
        except (MitosisError, OSError, pytest.UsageError) as err:  # never an INTERNALERROR in xdist's loop
            note = f"mitosis: its record could not be completed: {err}; the next session marks it interrupted."
        else:
            if done is None:
                note = (
                    "mitosis: this session has no running record of it: the worker died before the trial began its "
                    "record (nothing of it was kept), or after it finished it."
                )
            else:
                record, message = done
                props = [
                    ("mitosis.trial", record.name),
                    ("mitosis.key", record.key),
                    ("mitosis.session", self.mitosis.context.session_key),
                    *([("mitosis.iteration", record.iteration)] if record.iteration is not None else []),
                ]
                note = f"mitosis: trial {record.name} (key {record.key}) recorded failed: {message}."
        report.user_properties = props
        report.longrepr = f"{report.longrepr}\n{note}"
        return None

    def _record_crash(self, nodeid: str, gateway: str) -> tuple[Any, str] | None:
        """Record the crashed worker's trial of ``nodeid`` ``failed`` (once its record is found) and remove its
        staging folder; return that record and the message, or ``None`` if the trial had not begun it.

        The trial is found by this session's key, its node id and ``running`` (a local worker writes the
        store itself); a worker on another host, whose store is this controller's server, is asked for
        its trials too (the server may have recorded them ``interrupted`` when the worker's channel ended
        a moment before xdist reported the crash). Under the servers' lock: execnet's threads write too.
        """
        import socket

        from ..execution.artifacts import remove_staging
        from ..store import Reader
        from .remote import controller

        mitosis = self.mitosis
        trials = mitosis.context.project().trials_folder
        remote = controller(mitosis)
        server = remote.servers.get(gateway)
        with remote.lock:
            store = mitosis.context.store()
            keys = server.crashed() if server is not None else []
            with Reader(trials, mitosis.context.read_from()) as reader:
                found = {r.key: r for r in reader.unfinished(mitosis.context.session_key, nodeid)}
                found.update(
                    {r.key: r for r in reader.trials_with_keys(keys) if r.status in ("running", "interrupted")}
                )
                if not found:
                    return None
                records = sorted(found.values(), key=lambda r: r.started, reverse=True)
                host = reader.environment(records[0]).get("hostname") or socket.gethostname()
            message = (
                f"worker {gateway} on host {host} crashed while running this trial: its process ended before the "
                "trial finished (killed, out of memory, or a crash in native code)"
            )
            for record in records:
                store.finish(record.key, status="failed", main=None, metrics={}, folder=None, message=message)
                remove_staging(trials, record.key)
        return records[0], message

    def pytest_configure(self, config: pytest.Config) -> None:
        """On a pytest-xdist worker: the checks and the store of :mod:`.remote`."""
        if hasattr(config, "workerinput"):
            from .remote import register_worker

            register_worker(self.mitosis)
