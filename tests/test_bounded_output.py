"""Bounded output: what one cell puts into the notebook is capped, the rest goes to a log in the
trial folder; a long metric series is recorded down-sampled, min and max kept, whole in its pickle.

One session (``--mitosis-max-cell-output=1MB``) runs a step that prints 30 MB, one whose
displays (not streams: pytest's side cuts those) pass the cap, and one that returns two series of
10^6 points; the tests assert on the files, the notebook and the store it left.
"""

from __future__ import annotations

import json
import pickle
import sqlite3
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

from .conftest import Run, clean_env, git_init, run_pytest, write_investigation

pytestmark = pytest.mark.kernel

#: lines the chatty step prints: 300,000 of 101 characters, 30.3 MB
LINES = 300_000
POINTS = 1_000_000
#: where the series steps put their lowest and highest point
LOW, HIGH = 123_457, 876_543

CASES = f"""
import sys

import numpy


def chatty():
    for i in range({LINES}):
        print(f"{{i:09d}} " + "x" * 90)
    return {{"main": 1}}


def displays():
    from IPython.display import HTML, display

    for i in range(30):
        display(HTML(f"<p>display {{i}}</p>" + "y" * 100_000))
    return {{"main": 2}}


def series():
    loss = numpy.sin(numpy.arange({POINTS}) / 1000.0)
    loss[{LOW}] = -5.0
    loss[{HIGH}] = 7.0
    curve = [float(i % 1000) for i in range({POINTS})]
    return {{"main": 3.0, "metrics": {{"loss": loss, "curve": curve, "short": [1.0, 2.0, 3.0]}}}}


def _parent(pid):
    with open(f"/proc/{{pid}}/stat", encoding="utf-8") as stream:
        return int(stream.read().rsplit(")", 1)[1].split()[1])


def frozen():
    # Stop (SIGSTOP) this session's HTML helper: the trial's notebook and page are then never written.
    import os
    import signal

    ancestors, pid = set(), os.getpid()
    while pid > 1:
        pid = _parent(pid)
        ancestors.add(pid)
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{{entry}}/cmdline", "rb") as stream:
                command = stream.read()
            parent = _parent(entry)
        except OSError:
            continue
        if b"pytest_mitosis.execution.htmlworker" in command and parent in ancestors:
            os.kill(int(entry), signal.SIGSTOP)
            return {{"main": 4}}
    raise RuntimeError("no HTML helper among the kernel's ancestors' children")
"""

PYPROJECT = """
[tool.mitosis]
trials-folder = "trials"

[tool.mitosis.steps]
chatty = ["cases:chatty"]
displays = ["cases:displays"]
series = ["cases:series"]
frozen = ["cases:frozen"]

[tool.mitosis.experiments]
chatty = ["chatty"]
displays = ["displays"]
series = ["series"]
frozen = ["frozen"]

[tool.pytest.ini_options]
"""


def printed() -> str:
    return "".join(f"{i:09d} " + "x" * 90 + "\n" for i in range(LINES))


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    root = git_init(write_investigation(tmp_path_factory.mktemp("bounded") / "study", PYPROJECT, {"cases": CASES}))
    # 10 s: the steps take about a second; only the frozen trial's saving, which never ends, reaches it.
    run = run_pytest(
        root,
        "--mitosis",
        "--mitosis-max-cell-output=1MB",
        "--mitosis-timeout=10",
        "-rA",
        env=clean_env(MPLBACKEND="Agg"),
    )
    return root, run


def folder(root: Path, slug: str) -> Path:
    found = sorted((root / "trials").glob(f"trial_{slug}-1_*"))
    assert len(found) == 1, f"expected one folder trial_{slug}-1_*, found {found}"
    return found[0]


def step_text(path: Path, index: int = 2) -> str:
    """The text the notebook's cell ``index`` (the first step's) shows on stdout."""
    outputs = nbformat.read(str(path), as_version=4).cells[index].outputs
    return "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stdout")


def test_the_trials_pass_but_the_one_whose_files_took_too_long(session: tuple[Path, Run]) -> None:
    _, run = session
    assert run.ret == 1, run.out
    assert "1 failed, 3 passed" in run.out


def test_the_timeout_covers_writing_the_notebook_and_its_page(session: tuple[Path, Run]) -> None:
    root, run = session
    message = (
        "timed out after 10 s while saving the trial's notebook and HTML page (every step had run): "
        "the notebook in the trial folder keeps the cells without their outputs"
    )
    failure = run.testcase("frozen").find("failure")
    assert failure is not None and message in (failure.get("message") or "") + (failure.text or "")
    trial = folder(root, "frozen")
    outcome = json.loads((trial / "outcome.json").read_text(encoding="utf-8"))
    assert (outcome["status"], outcome["message"]) == ("failed", message)
    described = yaml.safe_load((trial / "trial.yaml").read_text(encoding="utf-8"))
    assert (described["results"]["status"], described["results"]["message"]) == ("failed", message)
    nb = nbformat.read(str(trial / "trial_frozen-1.ipynb"), as_version=4)
    assert nb.cells[0].source == f"**{message}**"
    assert [c.outputs for c in nb.cells if c.cell_type == "code"] == [[], [], []]
    assert "mitosis_trial.step('frozen'" in nb.cells[3].source
    page = (trial / "trial_frozen-1.html").read_text(encoding="utf-8")
    assert message.replace("'", "&#x27;") in page and "trial_frozen-1.ipynb" in page
    store = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    try:
        (status,) = store.execute("SELECT status FROM trials WHERE experiment = 'frozen'").fetchone()
    finally:
        store.close()
    assert status == "failed"


def test_a_cell_that_prints_30_mb_shows_1_mb_and_logs_the_rest(session: tuple[Path, Run]) -> None:
    root, _ = session
    trial = folder(root, "chatty")
    notebook = trial / "trial_chatty-1.ipynb"
    assert notebook.stat().st_size < 1_200_000
    assert (trial / "trial_chatty-1.html").stat().st_size < 1_500_000
    text = step_text(notebook)
    head, cut, tail = text.partition(
        "\n[pytest-mitosis: output cut at 1 MB (--mitosis-max-cell-output): "
        "the rest is in output-step-1-chatty.log in the trial folder]\n"
    )
    assert cut, text[-500:]
    assert 990_000 < len(head) + 10 * head.count("\n") <= 1_000_000  # about what the head takes in the file
    log = (trial / "output-step-1-chatty.log").read_text(encoding="utf-8")
    assert head + log == printed()  # nothing lost, nothing twice, in order
    assert tail == (
        "[pytest-mitosis: output-step-1-chatty.log in the trial folder holds the other 29.4 MB of this cell's output]\n"
    )


def test_displays_past_the_cap_go_to_the_log_as_text(session: tuple[Path, Run]) -> None:
    root, _ = session
    trial = folder(root, "displays")
    outputs = nbformat.read(str(trial / "trial_displays-1.ipynb"), as_version=4).cells[2].outputs
    shown = [o for o in outputs if o["output_type"] == "display_data"]
    assert 1 <= len(shown) <= 10  # 100 kB each: about ten fit under 1 MB, never all thirty
    assert (trial / "trial_displays-1.ipynb").stat().st_size < 1_200_000
    notes = "".join(o["text"] for o in outputs if o["output_type"] == "stream")
    assert "output cut at 1 MB (--mitosis-max-cell-output): the rest is in output-step-1-displays.log" in notes
    log = (trial / "output-step-1-displays.log").read_text(encoding="utf-8")
    assert log.count("[a display_data output (text/html, text/plain) left out of the notebook]\n") == 30 - len(shown)
    assert "<IPython.core.display.HTML object>" in log


def check_series(recorded: Any, low: float, high: float, at_low: int, at_high: int) -> None:
    assert set(recorded) == {"step", "value"}
    steps, values = recorded["step"], recorded["value"]
    assert len(steps) == len(values) == 2000
    assert steps == sorted(steps) and steps[0] == 0 and steps[-1] == POINTS - 1
    assert min(values) == low and max(values) == high
    assert steps[values.index(low)] == at_low and steps[values.index(high)] == at_high


def test_a_long_series_is_recorded_down_sampled_with_its_min_and_max(session: tuple[Path, Run]) -> None:
    root, _ = session
    trial = folder(root, "series")
    outcome = json.loads((trial / "outcome.json").read_text(encoding="utf-8"))
    assert (trial / "outcome.json").stat().st_size < 300_000
    check_series(outcome["metrics"]["loss"], -5.0, 7.0, LOW, HIGH)
    check_series(outcome["metrics"]["curve"], 0.0, 999.0, 0, 999)
    assert outcome["metrics"]["short"] == [1.0, 2.0, 3.0]
    assert outcome["series_points"] == {"loss": POINTS, "curve": POINTS}
    described = yaml.safe_load((trial / "trial.yaml").read_text(encoding="utf-8"))
    assert described["results"]["metrics"] == outcome["metrics"]
    store = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    try:
        (metrics,) = store.execute("SELECT metrics FROM trials WHERE experiment = 'series'").fetchone()
    finally:
        store.close()
    assert json.loads(metrics) == outcome["metrics"]
    last = outcome["metrics"]["loss"]["value"][-1]
    assert (
        f"loss = series of 1,000,000 points, last {last!r} (2,000 of them recorded, min and max kept; "
        "the whole series is in results/step-1-series.pickle)\n"
    ) in step_text(trial / "trial_series-1.ipynb", 3)


def test_the_whole_series_stays_in_the_steps_result(session: tuple[Path, Run]) -> None:
    root, _ = session
    with open(folder(root, "series") / "results" / "step-1-series.pickle", "rb") as stream:
        result = pickle.load(stream)
    assert len(result["metrics"]["loss"]) == POINTS and result["metrics"]["loss"][HIGH] == 7.0
    assert len(result["metrics"]["curve"]) == POINTS
