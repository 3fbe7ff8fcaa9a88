"""Lay out a trial's artifacts: a staging folder while it runs, the final folder once complete.

Everything is written into ``<trials>/.staging/<key>/`` first and renamed into place at the
end (one ``rename`` on one filesystem), so a crash never leaves a folder under its final
name that looks complete and is not: what sits in ``.staging`` is, by its place, unfinished.
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

STAGING = ".staging"


@dataclass(frozen=True)
class TrialFolder:
    """Where one trial's files go; ``name`` is the mitosis trial name used for the files."""

    trials: Path
    key: str
    name: str
    debug: bool

    @property
    def staging(self) -> Path:
        return self.trials / STAGING / self.key

    @property
    def final(self) -> Path:
        parent = self.trials / "debug" if self.debug else self.trials
        return parent / f"{self.name}_{self.key}"

    @property
    def html(self) -> Path:
        """The HTML's path once the trial is complete (what reports name)."""
        return self.final / f"{self.name}.html"

    def create(self) -> None:
        self.staging.mkdir(parents=True, exist_ok=False)

    def read_outcome(self) -> dict[str, Any]:
        """What the kernel's runtime last wrote; empty when the kernel never got that far."""
        try:
            data = json.loads((self.staging / "outcome.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def save(self, nb: Any, outcome: dict[str, Any], description: dict[str, Any], html: HtmlWriter | None = None) -> Path:
        """Write the notebook, its HTML, the outcome and ``trial.yaml``, then move the folder into place."""
        import nbformat
        import yaml

        with (self.staging / "trial.yaml").open("w", encoding="utf-8") as stream:
            yaml.safe_dump(description, stream, sort_keys=False, allow_unicode=True, width=100)
        nbformat.write(nb, str(self.staging / f"{self.name}.ipynb"))
        (self.staging / f"{self.name}.html").write_text((html or HtmlWriter())(nb, self.name), encoding="utf-8")
        tmp = self.staging / "outcome.json.tmp"
        tmp.write_text(json.dumps(outcome, indent=2, default=repr), encoding="utf-8")
        os.replace(tmp, self.staging / "outcome.json")
        self.final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(self.staging, self.final)
        return self.final


class HtmlWriter:
    """nbconvert's HTML exporter, prepared in a background thread and reused for every trial.

    Importing nbconvert and compiling its templates costs about half a second; started when a
    session's first kernel starts, that work overlaps the kernel and the trial instead of
    following them.
    """

    def __init__(self) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mitosis-html")
        self._exporter = self._pool.submit(self._prepare)

    @staticmethod
    def _prepare() -> Any:
        import nbformat.v4 as v4
        from nbconvert import HTMLExporter

        from .logs import quiet

        exporter = HTMLExporter(log=quiet("html"))
        exporter.from_notebook_node(v4.new_notebook(cells=[v4.new_code_cell("")]))  # compile the templates
        return exporter

    def __call__(self, nb: Any, title: str = "Notebook") -> str:
        """A self-contained HTML page of the executed notebook (figures are inline PNG data)."""
        body, _ = self._exporter.result().from_notebook_node(nb, resources={"metadata": {"name": title}})
        return str(body)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
