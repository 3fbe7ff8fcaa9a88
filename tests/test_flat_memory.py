"""A long sweep keeps nothing per trial that it does not need (issue 28: ten thousand trials, flat memory).

``benchmarks/sweep_resources.py`` measures every process's RSS over a sweep; these tests pin what it
found, by what a component keeps (never by RSS or time, which depend on the machine): the HTML
helper's exporter kept every page's notebook metadata (nbconvert's ``Exporter._nb_metadata``, keyed
by the page's title: a new key for every trial); every trial's report carried pytest-html extras
(its notebook read again to find a figure) in sessions that write no pytest-html report.
"""

from __future__ import annotations

import gc
import json
from pathlib import Path

import nbformat
import pytest
from nbformat import v4

from pytest_mitosis.execution.artifacts import HtmlWriter

from .conftest import clean_env, git_init, run_pytest, write_investigation


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


#: records, for every call report, its outcome and how many pytest-html extras it carries
EXTRAS_PROBE = """
import json
import os


def pytest_runtest_logreport(report):
    if report.when == "call":
        with open(os.environ["MITOSIS_TEST_REPORTS"], "a") as stream:
            stream.write(json.dumps([report.outcome, len(getattr(report, "extras", []))]) + "\\n")
"""


@pytest.mark.kernel
def test_trials_carry_no_pytest_html_extras_when_no_pytest_html_report_is_written(tmp_path: Path) -> None:
    """pytest-html registers itself whenever it is installed, but only ``--html`` writes its report."""
    pytest.importorskip("pytest_html")  # without it no report carries extras: the test would prove nothing
    root = git_init(
        write_investigation(
            tmp_path / "study",
            "[tool.mitosis.steps]\ncheap = ['steps:cheap', 'steps:lookup']\n",
            {
                "steps": "lookup = {'i': {'a': 1, 'b': 2, 'c': 3}}\n\n\ndef cheap(i):\n    return {'main': i}\n",
                "conftest": EXTRAS_PROBE,
            },
        )
    )
    reports = tmp_path / "reports.jsonl"
    done = run_pytest(root, "--mitosis", "-q", env=clean_env(MITOSIS_TEST_REPORTS=str(reports)))
    assert done.ret == 0, done.out
    assert [tuple(line) for line in map(json.loads, reports.read_text().splitlines())] == [("passed", 0)] * 3
