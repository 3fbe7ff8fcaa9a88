"""HTML pages rendered in the background: a trial waits for its notebook, never for its page.

Each test holds the session's HTML helper as it opens a page to write it (an audit hook in a
``sitecustomize``, as ``test_sweep_survives.py`` does): the trials are recorded while every page is
held, which only a session that does not wait for its pages can do; then the test releases the
pages (every one is whole when pytest exits) or presses Ctrl-C (every one not written is named, and
a short page says why). No wall clock: the order of events is what the store and the files show.
"""

from __future__ import annotations

import json
import re
import signal
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from .conftest import background, clean_env, git_init, wait_until, write_investigation

pytestmark = pytest.mark.kernel

STEPS = """
lookup = {"n": {"a": 1, "b": 2, "c": 3}}


def run(n):
    print(f"step {n} ran")
    return {"main": float(n)}
"""

PYPROJECT = """
[tool.mitosis.steps]
trivial = ["steps:run", "steps:lookup"]
"""

#: holds the HTML helper as it opens a page of a trial folder (not staging) to write it: ``writing-<what it
#: opened>`` is created in ``$MITOSIS_TEST_PAGES``, then it waits while ``hold`` exists there
HOLD = """
import os
import sys
import time

if "pytest_mitosis.execution.htmlworker" in sys.orig_argv:
    def _hold(event, args):
        if event != "open" or not isinstance(args[0], (str, os.PathLike)) or "w" not in str(args[1]):
            return
        path = os.fspath(args[0])
        markers = os.environ["MITOSIS_TEST_PAGES"]
        if path.startswith(markers) or f"{os.sep}.staging{os.sep}" in path or ".html" not in os.path.basename(path):
            return
        with open(os.path.join(markers, "writing-" + os.path.basename(path)), "w"):
            pass
        while os.path.exists(os.path.join(markers, "hold")):
            time.sleep(0.01)

    sys.addaudithook(_hold)
"""

NAMES = ["trial_trivial-a-1", "trial_trivial-b-1", "trial_trivial-c-1"]


def held_session(base: Path, *args: str) -> tuple[Path, Path, Path, subprocess.Popen[str]]:
    """A session of three trials whose pages are held: ``(root, markers, profile, pytest)``."""
    root = git_init(write_investigation(base / "study", PYPROJECT, {"steps": STEPS}))
    site = base / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(HOLD, encoding="utf-8")
    markers = base / "pages"
    markers.mkdir()
    (markers / "hold").write_text("")
    profile = base / "profile.jsonl"
    tmp = Path(tempfile.mkdtemp(prefix="mk-", dir="/tmp"))  # short socket paths for the kernels
    env = clean_env(
        PYTHONPATH=str(site), MITOSIS_TEST_PAGES=str(markers), MITOSIS_PROFILE=str(profile), TMPDIR=str(tmp)
    )
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", *args]
    proc = background(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return root, markers, profile, proc


def recorded(root: Path) -> list[sqlite3.Row]:
    """The trials the store has finished (passed or failed), oldest first."""
    path = root / "trials" / "mitosis.sqlite"
    if not path.exists():
        return []
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    db.row_factory = sqlite3.Row
    try:
        return db.execute(
            "SELECT name, status, folder FROM trials WHERE status IN ('passed', 'failed') ORDER BY started"
        ).fetchall()
    except sqlite3.OperationalError:  # the schema is not written yet
        return []
    finally:
        db.close()


def all_recorded(root: Path, markers: Path, proc: subprocess.Popen[str]) -> list[sqlite3.Row]:
    """Wait until the three trials are recorded (their pages are held meanwhile)."""
    wait_until("three recorded trials", lambda: len(recorded(root)) == 3, proc)
    return recorded(root)


def leftovers(folder: Path) -> list[str]:
    """What a page's writer left under a temporary name."""
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_trials_are_recorded_while_their_pages_render_and_every_page_is_whole_at_the_end(tmp_path: Path) -> None:
    root, markers, profile, proc = held_session(tmp_path)
    rows = all_recorded(root, markers, proc)
    # Every trial is recorded, with its folder and its whole notebook, while the first page is held
    # (the helper renders in order: none is written yet): pytest's process did not wait for a page.
    assert [(r["name"], r["status"]) for r in rows] == [(name, "passed") for name in NAMES]
    wait_until("the first page held", lambda: list(markers.glob("writing-*")), proc)
    (held,) = [p.name for p in markers.glob("writing-*")]
    assert re.fullmatch(r"writing-\.trial_trivial-a-1\.html\.\d+\.tmp", held), (
        "a page is written under a temporary name"
    )
    for row in rows:
        folder = Path(row["folder"])
        notebook = json.loads((folder / f"{row['name']}.ipynb").read_text(encoding="utf-8"))
        assert any("step" in json.dumps(cell.get("outputs", [])) for cell in notebook["cells"]), "the whole notebook"
        assert not (folder / f"{row['name']}.html").exists(), "no page yet, and never half of one"
    assert proc.poll() is None, "pytest waits for the pages before it ends"

    (markers / "hold").unlink()
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out
    assert "page not rendered" not in out, out
    for n, row in enumerate(rows, start=1):
        folder = Path(row["folder"])
        page = (folder / f"{row['name']}.html").read_text(encoding="utf-8")
        assert page.rstrip().endswith("</html>") and f"step {n} ran" in page, "nbconvert's page, whole"
        assert leftovers(folder) == []
    # From inside: each trial waited for its notebook only; the session waited for the pages at its end,
    # before the report (which links them) was refreshed.
    records = [json.loads(line) for line in profile.read_text(encoding="utf-8").splitlines()]
    trials = [r["phases"] for r in records if r["scope"] == "trial"]
    assert len(trials) == 3 and all("waiting for the notebook" in t and "page asked for" in t for t in trials)
    assert not any("waiting for the notebook and HTML page" in t for t in trials)
    (end,) = [r["phases"] for r in records if r["scope"] == "session" and "report refresh" in r["phases"]]
    assert list(end).index("waiting for the pages at the end") < list(end).index("report refresh")
    report = (root / "trials" / "report" / "index.html").read_text(encoding="utf-8")
    assert "trial_trivial-c-1" in report


def test_a_page_that_takes_longer_than_the_timeout_is_named_and_the_others_are_written(tmp_path: Path) -> None:
    """The first page never ends (held): 5 s after the helper began it, the helper is stopped, that page is
    replaced by a short page saying why, and the pages it had not begun are rendered in pytest's process."""
    root, markers, _, proc = held_session(tmp_path, "--mitosis-timeout=5")
    out, _ = proc.communicate(timeout=180)
    assert proc.returncode == 0, out  # the trials passed and are recorded: a page is not a result
    rows = recorded(root)
    assert [(r["name"], r["status"]) for r in rows] == [(name, "passed") for name in NAMES]
    first, *others = rows
    folder = Path(first["folder"])
    why = "rendering it took longer than --mitosis-timeout (5 s)"
    assert (
        f"page not rendered: trial_trivial-a-1: its HTML page was not rendered ({why}); its notebook is complete" in out
    ), out
    assert why in (folder / "trial_trivial-a-1.html").read_text(encoding="utf-8")
    assert leftovers(folder) == []
    assert out.count("page not rendered") == 1, out
    for n, row in enumerate(others, start=2):
        page = (Path(row["folder"]) / f"{row['name']}.html").read_text(encoding="utf-8")
        assert page.rstrip().endswith("</html>") and f"step {n} ran" in page, "nbconvert's page, whole"


def test_ctrl_c_while_the_pages_render_names_each_page_not_written(tmp_path: Path) -> None:
    root, markers, _, proc = held_session(tmp_path)
    rows = all_recorded(root, markers, proc)
    wait_until("the first page held", lambda: list(markers.glob("writing-*")), proc)
    proc.send_signal(signal.SIGINT)  # while pytest waits for the pages, or just before (then it waits 10 s at most)
    out, _ = proc.communicate(timeout=180)

    assert proc.returncode == 2, out
    assert "Traceback" not in out and "INTERNALERROR" not in out, out
    for row in rows:
        folder = Path(row["folder"])
        notebook = folder / f"{row['name']}.ipynb"
        note = (
            f"page not rendered: {row['name']}: its HTML page was not rendered (the session was interrupted "
            f"before it was rendered); its notebook is complete, and `jupyter nbconvert --to html {notebook}` "
            "builds the page"
        )
        assert note in out, out
        page = (folder / f"{row['name']}.html").read_text(encoding="utf-8")
        assert page.rstrip().endswith("</html>") and "the session was interrupted before it was rendered" in page
        assert leftovers(folder) == [], "no half-written page is left"
    db = sqlite3.connect(f"file:{root / 'trials' / 'mitosis.sqlite'}?mode=ro", uri=True)
    try:
        assert db.execute("SELECT status, exitstatus FROM sessions").fetchall() == [("interrupted", 2)]
    finally:
        db.close()


#: the HTML helper may not write a page (as on a full disk): each page it is asked for fails with EACCES
DENY = """
import os
import sys

if "pytest_mitosis.execution.htmlworker" in sys.orig_argv:
    def _deny(event, args):
        if event == "open" and isinstance(args[0], (str, os.PathLike)):
            name = os.path.basename(os.fspath(args[0]))
            if name.startswith(".trial_") and ".html." in name and "w" in str(args[1]):
                raise PermissionError(13, "denied by the test", os.fspath(args[0]))

    sys.addaudithook(_deny)
"""


def test_a_page_the_helper_cannot_write_is_named_and_replaced_by_a_short_page(tmp_path: Path) -> None:
    root = git_init(write_investigation(tmp_path / "study", PYPROJECT, {"steps": STEPS}))
    site = tmp_path / "site"
    site.mkdir()
    (site / "sitecustomize.py").write_text(DENY, encoding="utf-8")
    tmp = Path(tempfile.mkdtemp(prefix="mk-", dir="/tmp"))
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis"],
        cwd=root,
        env=clean_env(PYTHONPATH=str(site), TMPDIR=str(tmp)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = done.stdout + done.stderr
    assert done.returncode == 0, out  # the trials ran and are recorded: a page is not a result
    rows = recorded(root)
    assert [(r["name"], r["status"]) for r in rows] == [(name, "passed") for name in NAMES]
    for row in rows:
        folder = Path(row["folder"])
        page = folder / f"{row['name']}.html"
        why = f"it could not be written: denied by the test ({folder / ('.' + page.name)}."
        (line,) = [line for line in out.splitlines() if line.startswith(f"page not rendered: {row['name']}: ")]
        assert why in line and line.endswith(
            f"its notebook is complete, and `jupyter nbconvert --to html {folder / row['name']}.ipynb` builds the page"
        ), line
        assert "denied by the test" in page.read_text(encoding="utf-8"), "a short page says why"
        assert leftovers(folder) == []


#: one trial run by ``run_trial`` alone in a process (as a batch job would): with the helper, the page is
#: whole once the caller has called ``finish()`` and ``close()``; without one, when ``run_trial`` returns
ALONE = """
import json
import sys
from pathlib import Path

from pytest_mitosis.config.project import Reference
from pytest_mitosis.config.variants import StepSpec, TrialSpec
from pytest_mitosis.execution.htmlworker import HtmlWorker
from pytest_mitosis.execution.runner import run_trial

root = Path.cwd()
spec = TrialSpec("alone", (StepSpec("alone", Reference("steps", "run"), None, False),), ())
found = {}
for key, helper in (("0000aaaa", HtmlWorker()), ("0000bbbb", None)):
    outcome = run_trial(
        spec, key=key, name=f"trial_alone-{key}", root=root, trials=root / "trials", timeout=None, debug=False,
        seed=1, metadata={}, sys_path=[str(root)], html=helper,
    )
    found[key] = {"passed": outcome.passed, "html": str(outcome.html), "at_return": outcome.html.is_file()}
    if helper is not None:
        found[key]["notes"] = helper.finish()
        helper.close()
print(json.dumps(found))
"""


def test_one_trial_alone_in_a_process_leaves_its_page_whole(tmp_path: Path) -> None:
    root = write_investigation(
        tmp_path / "alone",
        "[tool.mitosis.steps]\n",
        {"steps": 'def run():\n    print("alone ran")\n    return {"main": 1.0}\n'},
    )
    (root / "alone.py").write_text(ALONE, encoding="utf-8")
    tmp = Path(tempfile.mkdtemp(prefix="mk-", dir="/tmp"))
    done = subprocess.run(
        [sys.executable, "alone.py"],
        cwd=root,
        env=clean_env(TMPDIR=str(tmp)),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(done.stdout.splitlines()[-1])
    assert found["0000aaaa"]["notes"] == [] and found["0000bbbb"]["at_return"], found  # without a helper: at once
    for trial in found.values():
        page = Path(trial["html"])
        assert trial["passed"] and page.read_text(encoding="utf-8").rstrip().endswith("</html>"), trial
        assert "alone ran" in page.read_text(encoding="utf-8")
        assert leftovers(page.parent) == []
