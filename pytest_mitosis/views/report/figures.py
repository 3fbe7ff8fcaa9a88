"""A trial's figures, taken from its executed notebook and written as image files of the report.

The notebook has a header cell, a set-up cell, one cell per step, a result cell
(:mod:`pytest_mitosis.execution.notebook`): every ``image/png`` and ``image/svg+xml`` output
of a step's cell is a figure of that step. They are written once, with the trial's page, to
``<report>/figures/<key>-<n>-<step>.png|svg`` (so a listing of the folder says whose figures
they are: :func:`listing`) and shown with ``<img>`` (an SVG in ``<img>`` runs no
script). Only the notebook inside the trial's own folder inside the trials folder is read
(:meth:`Reader.artifacts`), and a notebook that cannot be parsed just has no figures.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ...store import Reader, TrialRecord
from .html import page_name, write

#: figures taken from one notebook at most (a step drawing in a loop should not fill a disk)
MOST = 40


@dataclass(frozen=True)
class Figure:
    """One image of a trial: its path under the report folder and a caption naming the step."""

    src: str
    caption: str


def notebook_file(reader: Reader, record: TrialRecord, suffix: str) -> Path | None:
    """The trial's ``<name><suffix>`` file, only when it lies inside its folder inside the trials folder."""
    folder = reader.artifacts(record)
    if folder is None or not isinstance(record.name, str) or Path(record.name).name != record.name:
        return None
    path = (folder / f"{record.name}{suffix}").resolve()
    return path if path.parent == folder and path.is_file() else None


def _images(output: dict[str, Any]) -> list[tuple[str, bytes]]:
    data = output.get("data") if isinstance(output, dict) else None
    if not isinstance(data, dict):
        return []
    found = []
    png = data.get("image/png")
    if isinstance(png, str):
        try:
            found.append(("png", base64.b64decode(png, validate=False)))
        except (binascii.Error, ValueError):
            pass
    svg = data.get("image/svg+xml")
    if isinstance(svg, list):
        svg = "".join(s for s in svg if isinstance(s, str))
    if isinstance(svg, str) and not png:
        found.append(("svg", svg.encode("utf-8")))
    return found


def extract(reader: Reader, record: TrialRecord, out: Path) -> list[Figure]:
    """Write the trial's figures into ``out/figures``; return them in notebook order."""
    notebook = notebook_file(reader, record, ".ipynb")
    if notebook is None:
        return []
    try:
        cells = json.loads(notebook.read_text(encoding="utf-8")).get("cells", [])
    except (OSError, ValueError, AttributeError):
        return []
    steps = [s.get("name", "?") for s in record.steps if isinstance(s, dict)]
    figures: list[Figure] = []
    code = [c for c in cells if isinstance(c, dict) and c.get("cell_type") == "code"]
    for index, cell in enumerate(code):
        # code cells: the set-up, one per step, the result
        step = steps[index - 1] if 1 <= index <= len(steps) else ("set-up" if index == 0 else "result")
        outputs = cell.get("outputs")
        for output in outputs if isinstance(outputs, list) else []:
            for kind, content in _images(output):
                if len(figures) >= MOST:
                    return figures
                (out / "figures").mkdir(exist_ok=True)
                name = f"{record.key}-{len(figures) + 1}-{page_name(step)}.{kind}"
                write(out / "figures" / name, content)
                figures.append(Figure(f"figures/{name}", f"step {step}, figure {len(figures) + 1}"))
    return figures


_NAME = re.compile(r"^([0-9a-f]{8})-([0-9]+)-(.+)\.(png|svg)$")


def listing(out: Path) -> dict[str, list[Figure]]:
    """Every trial's figures already in ``out/figures``, by key, in their order (one directory listing)."""
    found: dict[str, list[tuple[int, Figure]]] = {}
    for name in os.listdir(out / "figures"):
        match = _NAME.match(name)
        if match:
            key, number, step = match.group(1), int(match.group(2)), match.group(3)
            figure = Figure(f"figures/{name}", f"step {step}, figure {number}")
            found.setdefault(key, []).append((number, figure))
    return {key: [f for _, f in sorted(figures, key=lambda pair: pair[0])] for key, figures in found.items()}
