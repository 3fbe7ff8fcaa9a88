"""The per-session object behind ``--mitosis``: settings, the project, running trials, the summary.

Registered as the plugin ``mitosis-session`` and kept in ``config.stash[session_key]`` only
when ``--mitosis`` is given, and unregistered at unconfigure. Nothing here runs for a
pytest session without ``--mitosis``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from .errors import ConfigError
from .options import Settings
from .reporting import SummaryRow, summary_lines, summary_row

if TYPE_CHECKING:
    from .project import ProjectConfig
    from .runner import TrialOutcome
    from .variants import TrialSpec


class MitosisSession:
    """Hooks and state for one pytest session with ``--mitosis``."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        self.config = config
        self.settings = settings
        self._project: ProjectConfig | None = None
        self.rows: list[SummaryRow] = []

    def project(self) -> ProjectConfig:
        """``[tool.mitosis]``, read once (lazily: ``--help`` never reads it)."""
        if self._project is None:
            from .project import load_project

            self._project = load_project(self.settings.pyproject, self.settings.trials_folder)
        return self._project

    def run(self, spec: TrialSpec) -> TrialOutcome:
        from .runner import run_trial

        project = self.project()
        return run_trial(
            spec,
            root=project.root,
            trials=project.trials_folder,
            timeout=self.settings.timeout,
            debug=self.settings.debug,
            metadata={"experiment": spec.experiment, "id": spec.id, "debug": self.settings.debug},
        )

    # -- hooks ---------------------------------------------------------------------------------

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
        lines = [f"mitosis: experiments from {self.settings.pyproject}, trials folder {folder}"]
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

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if hasattr(self.config, "workerinput") or not self.rows:
            return
        terminalreporter.write_sep("=", "mitosis trials")
        for line in summary_lines(self.rows):
            terminalreporter.write_line(line)


session_key = pytest.StashKey[MitosisSession]()

