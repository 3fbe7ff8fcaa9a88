"""A long sweep keeps nothing per trial that it does not need (issue 28: ten thousand trials, flat memory).

``benchmarks/sweep_resources.py`` measures every process's RSS over a sweep; these tests pin what it
found, by counting the objects a component keeps alive (never by RSS or time, which depend on the
machine): the HTML helper's exporter kept every page's notebook metadata (nbconvert's
``Exporter._nb_metadata``, keyed by the page's title: a new key for every trial).
"""

from __future__ import annotations

import gc
from pathlib import Path

import nbformat
from nbformat import v4

from pytest_mitosis.execution.artifacts import HtmlWriter


def _notebook() -> nbformat.NotebookNode:
    """A trial's notebook as the runner builds it: a code cell with an output, and its metadata."""
    cell = v4.new_code_cell("main = {'main': 1.0}", execution_count=1)
    cell.outputs = [v4.new_output("stream", name="stdout", text="step ran\n")]
    nb = v4.new_notebook(cells=[v4.new_markdown_cell("# trial"), cell])
    nb.metadata["mitosis"] = {"environment": {"packages": {f"package{i}": f"1.{i}" for i in range(50)}}}
    return nb


def _notebook_nodes() -> int:
    gc.collect()
    return sum(1 for o in gc.get_objects() if isinstance(o, nbformat.NotebookNode))


def test_the_html_writer_keeps_nothing_of_the_pages_it_rendered(tmp_path: Path) -> None:
    notebook = tmp_path / "trial.ipynb"
    nbformat.write(_notebook(), str(notebook))
    writer = HtmlWriter()
    for i in range(3):  # the exporter's own caches fill up on the first pages
        writer.page(notebook, tmp_path / f"warm-{i}.html", f"warm-{i}")
    before = _notebook_nodes()
    for i in range(40):  # every trial of a sweep has a title of its own
        writer.page(notebook, tmp_path / f"trial-{i}.html", f"trial_cheap-v{i:05d}-1")
    assert _notebook_nodes() == before
    page = (tmp_path / "trial-39.html").read_text(encoding="utf-8")
    assert "trial_cheap-v00039-1" in page and "step ran" in page
