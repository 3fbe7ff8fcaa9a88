"""The hooks of a ``--mitosis`` session's end: the trials' summary rows, the report, the CI files, the terminal.

Registered beside :class:`.hooks.MitosisHooks` (as ``mitosis-session-end``) only when
``--mitosis`` is given. Each trial's report adds a row (:mod:`.views.summary`); on the
controller the session's end records the session, refreshes the report (:mod:`.views.report`)
and writes ``--mitosis-summary`` and ``--mitosis-benchmark-json`` (:mod:`.views.ci`), also
after Ctrl-C; the terminal summary lists the rows and where the files went.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from ..core.errors import ConfigError, MitosisError
from ..core.rules import Directions
from .session import MitosisSession


def _failure_text(report: pytest.TestReport) -> str:
    """The failure as written, without the ``[gw0] linux -- Python ...`` line that xdist's reports begin with."""
    if isinstance(report.longrepr, str):
        return report.longrepr
    text = report.longreprtext
    if hasattr(report, "node"):  # a report from an xdist worker: toterminal() writes the worker's line first
        text = text.split("\n", 1)[1] if "\n" in text else ""
    return text


def reader_options(mitosis: MitosisSession) -> str:
    """``--trials-folder`` and ``--store`` for ``python -m pytest_mitosis`` run where pytest was, when what it
    would read by itself (``./pyproject.toml``'s trials folder and store) is not this session's store:
    the end-of-session hint must work as printed."""
    import shlex

    from ..store import FILENAME, default_store, default_trials_folder, redact

    here = Path(mitosis.context.config.invocation_params.dir)
    try:
        folder = mitosis.context.project().trials_folder
        store = mitosis.context.store_url()
        found_folder, found_store = default_trials_folder(here), default_store(here)
    except (MitosisError, OSError):  # an unreadable ./pyproject.toml: the hint as it always was
        return ""

    def shown(path: Path) -> str:
        relative = os.path.relpath(path, here)
        return relative if not relative.startswith("..") else str(path)

    options: list[str] = []
    if folder != found_folder:
        options += ["--trials-folder", shown(folder)]
        found_store = None  # a folder given on the command line is read with its own store
    if store != found_store:
        options += ["--store", redact(store) if store is not None else f"sqlite:///{folder / FILENAME}"]
    return shlex.join(options)


class SessionEndHooks:
    """What one ``--mitosis`` session leaves: rows as trials end, then the report, the CI files and the summary."""

    def __init__(self, mitosis: MitosisSession) -> None:
        self.mitosis = mitosis
        self.config = mitosis.context.config
        self.settings = mitosis.context.settings
        #: each experiment's directions, resolved once (see :meth:`_higher_is_better`)
        self._directions: dict[str, Directions] = {}
        #: the trials whose HTML page is not nbconvert's, and why (see :meth:`_finish_pages`)
        self._page_notes: list[str] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        from ..views.summary import CRASHED, summary_row

        props = list(report.user_properties)
        is_trial = any(name == "mitosis.trial" for name, _ in props)
        message = _failure_text(report) if report.failed else None
        if report.when in ("call", CRASHED) and is_trial:  # a crashed worker's trial: failed, as pytest counts it
            self.mitosis.state.rows.append(summary_row(report.nodeid, report.outcome, props, message))
        elif report.failed and report.when == "setup" and "pyproject.toml::" in report.nodeid:
            self.mitosis.state.rows.append(summary_row(report.nodeid, "error", props, message))

    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        """Refresh the static report once, on the controller, when trials ran; then the CI files.

        Also after Ctrl-C (pytest calls this hook with exit status 2), so CI keeps what ran; an
        interrupted trial then counts as failed for ``--lf`` and ``--ff`` (see :meth:`_last_failed`).
        """
        mitosis = self.mitosis
        exitstatus = self._finish_pages(session, int(exitstatus))
        mitosis.preflight.record_kept(earlier=False)  # outcomes kept while the store was away, if it is back
        if hasattr(self.config, "workerinput"):
            return
        if int(exitstatus) == int(pytest.ExitCode.INTERRUPTED) and self.config.pluginmanager.has_plugin("dsession"):
            self._rows_from_workers()
        self._last_failed()
        from .session_record import end_session

        end_session(mitosis, int(exitstatus))  # before the report, which shows the session
        if mitosis.state.rows and self.settings.report:
            from ..core import profile
            from ..store import RecordsError
            from ..views.report import build

            try:
                # debug trials only with report --debug
                with profile.timed("report refresh"):
                    mitosis.state.report = build(
                        mitosis.context.project().trials_folder, store=mitosis.context.read_from()
                    )
            except (RecordsError, OSError) as err:
                mitosis.state.report = f"not refreshed: {err}"
            profile.flush("session", "end")
        if not (session.config.option.collectonly or self.settings.check):
            self._write_ci_files(session, int(exitstatus))
            if int(session.exitstatus) != int(exitstatus):  # a CI file that could not be written
                end_session(mitosis, int(session.exitstatus))

    def _finish_pages(self, session: pytest.Session, exitstatus: int) -> int:
        """Wait for the HTML pages this process's trials asked for (rendered in the background, see
        :mod:`..execution.htmlworker`): every page is whole before the report (which links them) is
        refreshed and before pytest exits. A page that is not nbconvert's is named in the terminal
        summary (on an xdist worker, as a warning the controller shows). A Ctrl-C during the wait stops it
        (the pages not written are named) and the session exits as interrupted: the exit status returned."""
        from ..core import profile

        interrupted = exitstatus == int(pytest.ExitCode.INTERRUPTED)
        with profile.timed("waiting for the pages at the end"):
            notes, stopped = self.mitosis.context.ahead.finish_pages(interrupted)
        if stopped:
            session.exitstatus = pytest.ExitCode.INTERRUPTED
            exitstatus = int(pytest.ExitCode.INTERRUPTED)
        if notes and hasattr(self.config, "workerinput"):
            import warnings

            for note in notes:
                warnings.warn(pytest.PytestWarning(f"mitosis: {note}"), stacklevel=1)
        self._page_notes += notes
        return exitstatus

    def _last_failed(self) -> None:
        """Interrupted trials into pytest's ``lastfailed`` (its item sends no report, so pytest never
        learns of them). Into the cache plugin's dict, which it writes when its own hook runs after
        this one, and into the cache itself, for when it ran before (xdist's controller must first
        hear from its workers, whose hooks run before ours: so this one is not ``tryfirst``)."""
        interrupted = {row.nodeid: True for row in self.mitosis.state.rows if row.outcome == "interrupted"}
        plugin = self.config.pluginmanager.get_plugin("lfplugin")
        cache = getattr(self.config, "cache", None)
        if not interrupted or plugin is None or cache is None:
            return
        lastfailed = getattr(plugin, "lastfailed", None)
        if isinstance(lastfailed, dict):
            lastfailed.update(interrupted)
        saved = cache.get("cache/lastfailed", {})
        if isinstance(saved, dict) and not interrupted.items() <= saved.items():
            cache.set("cache/lastfailed", {**saved, **interrupted})

    def _rows_from_workers(self) -> None:
        """Under pytest-xdist, once interrupted, the controller reads no more reports: a worker's
        interrupted trial sends none, and trials a worker finished meanwhile are never shown. Their rows
        come from the store, once the local workers have exited (each records its trial first): every
        trial recorded with this session's key that the summary does not list yet, with the status the
        worker recorded."""
        import time

        from ..core.processes import running
        from ..store import Reader, RecordsError
        from ..views.summary import SummaryRow

        mitosis = self.mitosis
        deadline = time.monotonic() + 15.0  # each worker records its interrupted trial, then exits
        while any(running(pid) for pid in mitosis.state.worker_pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        shown = {row.key for row in mitosis.state.rows}
        prefix = os.path.relpath(self.settings.pyproject, self.config.rootpath).replace(os.sep, "/")
        try:
            with Reader(mitosis.context.project().trials_folder, mitosis.context.read_from()) as reader:
                records = [
                    r
                    for r in reader.trials(debug=True, session=mitosis.context.session_key)
                    if r.status in ("passed", "failed", "interrupted")
                ]
        except (RecordsError, OSError, ConfigError):
            return
        for record in reversed(records):  # oldest first, like the rest of the summary
            if record.key in shown or record.reproduces:
                continue
            name = f"{record.experiment}[{record.variants}]" if record.variants else record.experiment
            html = str(Path(record.folder) / f"{record.name}.html") if record.folder else None
            mitosis.state.rows.append(
                SummaryRow(f"{prefix}::{name}", record.status, record.main, html, record.iteration, record.key)
            )

    def _write_ci_files(self, session: pytest.Session, exitstatus: int) -> None:
        """``--mitosis-summary`` and ``--mitosis-benchmark-json``: a path that cannot be written is one line.

        The trials are recorded already; a CI file that cannot be written fails nothing but
        says so in the terminal summary, and a session that would exit 0 exits 1: CI must notice.
        """
        from ..views.ci import append_summary, benchmarks, markdown_summary, write_benchmark

        mitosis = self.mitosis
        settings = self.settings
        notes: list[str] = []
        failed = False
        if settings.summary is not None:
            report = mitosis.state.report if isinstance(mitosis.state.report, Path) else None
            text = markdown_summary(
                mitosis.state.rows,
                compare=settings.compare,
                report=str(report) if report is not None else None,
                seed=mitosis.context.seed,
                exitstatus=exitstatus,
                session=mitosis.context.session_key if mitosis.state.session_recorded else None,
                higher_is_better=lambda trial: self._higher_is_better(trial, "main"),
            )
            try:
                append_summary(settings.summary, text)
                notes.append(f"summary: {settings.summary}")
            except OSError as err:
                failed = True
                notes.append(f"summary: not written to {settings.summary}: {err.strerror or err}")
        if settings.benchmark_json is not None:
            for bench in benchmarks(mitosis.state.rows, settings.benchmark_json, self._higher_is_better):
                try:
                    write_benchmark(bench)
                    notes.append(f"benchmark: {bench.path} ({len(bench.entries)} values, tool: {bench.tool})")
                except OSError as err:
                    failed = True
                    notes.append(f"benchmark: not written to {bench.path}: {err.strerror or err}")
        mitosis.state.ci_notes = notes
        if failed and exitstatus == 0:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _higher_is_better(self, trial: str, metric: str) -> bool:
        """The direction of a trial id's metric: the resolver its trials were judged (and recorded) with."""
        experiment = trial.split("[", 1)[0]
        resolved = self._directions.get(experiment)
        if resolved is None:
            try:
                project = self.mitosis.context.project()
            except ConfigError:
                resolved = Directions().override(self.settings.higher_is_better, self.settings.lower_is_better)
            else:
                resolved = project.directions(experiment, self.settings.higher_is_better, self.settings.lower_is_better)
            self._directions[experiment] = resolved
        return resolved(metric)

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        from ..views.summary import shown_path, summary_lines

        mitosis = self.mitosis
        if mitosis.state.broken:
            terminalreporter.write_sep("=", "mitosis: experiments that cannot run")
            for nodeid, message in mitosis.state.broken:
                terminalreporter.write_line(f"ERROR {nodeid}\n{message}\n")
        if hasattr(self.config, "workerinput"):
            return
        if mitosis.state.rows:
            here = Path(self.config.invocation_params.dir)
            terminalreporter.write_sep("=", "mitosis trials")
            sources = {row.nodeid.split("::", 1)[0] for row in mitosis.state.rows if "::" in row.nodeid}
            lines = summary_lines(
                mitosis.state.rows,
                here=here,
                higher_is_better=lambda trial: self._higher_is_better(trial, "main"),
                verbose=self.config.get_verbosity() > 0,
                source=sources.pop() if len(sources) == 1 else None,  # what pytest's node ids start with
            )
            for line in lines:
                terminalreporter.write_line(line)
            if isinstance(mitosis.state.report, Path):
                terminalreporter.write_line(f"report: {shown_path(mitosis.state.report, here)}")
            elif mitosis.state.report is not None:
                terminalreporter.write_line(f"report: {mitosis.state.report}")
        if mitosis.state.session_recorded:
            from ..views.summary import session_line

            terminalreporter.write_line(
                session_line(mitosis.context.session_key, mitosis.state.rows, reader_options(mitosis))
            )
        for note in self._page_notes:
            terminalreporter.write_line(f"page not rendered: {note}")
        for line in mitosis.state.ci_notes:
            terminalreporter.write_line(line)
        for line in mitosis.state.store_notes:
            terminalreporter.write_line(line)
