"""Long sweeps (issue 23): an edit made while a sweep runs never passes as the commit's code; resume; --lf.

One story of real sessions over one investigation, whose step waits while a ``hold-N`` file
exists (so the test decides when a trial is "running", without sleeping):

A. four trials in one session; the step module is edited while trial n1 runs: n0 passed, n1 fails
   ("changed while the trial ran"), n2 and n3 are refused at setup ("since the session started");
B. the same under ``-n 2``, with ``pyproject.toml`` edited while two trials run: nothing passes;
C. a session stopped by Ctrl-C while n2 runs (pytest's cache on): exit 2, n2 is in ``lastfailed``;
E. SIGTERM to the ``-n 2`` controller alone while two trials run: both workers stop theirs (recorded
   ``interrupted``, listed, in ``lastfailed``) and start no other;
D. ``--mitosis-resume``: the plan line counts the trials that passed at this commit, which are
   skipped (naming the trial that passed); the others run.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import PATIENCE, background, clean_env, git, held_investigation, wait_until

pytestmark = pytest.mark.kernel


def _start(root: Path, *args: str, cache: bool = False) -> subprocess.Popen[str]:
    argv = [sys.executable, "-m", "pytest", *([] if cache else ["-p", "no:cacheprovider"]), "--mitosis", *args]
    return background(argv, cwd=root, env=clean_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(root: Path, proc: subprocess.Popen[str], *names: str) -> None:
    wait_until(", ".join(names), lambda: all((root / "markers" / name).exists() for name in names), proc)


def _end(proc: subprocess.Popen[str]) -> tuple[int, str]:
    out, _ = proc.communicate(timeout=PATIENCE)
    return proc.returncode, out


def _rows(root: Path) -> list[dict[str, Any]]:
    with sqlite3.connect(root / "trials" / "mitosis.sqlite") as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute("SELECT * FROM trials ORDER BY started")]


def _hold(root: Path, *names: str) -> None:
    for name in names:
        (root / "markers" / f"hold-{name}").write_text("")


def _release(root: Path) -> None:
    for path in (root / "markers").glob("hold-*"):
        path.unlink()


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    root = held_investigation(tmp_path_factory.mktemp("long") / "inv", 4)
    found: dict[str, Any] = {"root": root}
    fit = root / "study" / "fit.py"
    original = fit.read_text()

    # A: the step module edited while n1 runs
    _hold(root, "n1")
    proc = _start(root)
    _wait(root, proc, "started-n1")
    fit.write_text(original.replace('"main": float(n)', '"main": 0.0 * n'))
    _release(root)
    found["A"] = _end(proc)
    found["A rows"] = _rows(root)
    found["A sessions"] = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "history", "--session"],
        cwd=root,
        env=clean_env(),
        capture_output=True,
        text=True,
    ).stdout
    git(root, "checkout", "study/fit.py")

    # B: pyproject.toml edited while two trials run under -n 2
    for path in (root / "markers").iterdir():
        path.unlink()
    _hold(root, "n0", "n1", "n2", "n3")
    proc = _start(root, "-n", "2")
    wait_until("two trials started", lambda: len(list((root / "markers").glob("started-*"))) >= 2, proc)
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text() + "# edited during the sweep\n")
    _release(root)
    found["B"] = _end(proc)
    git(root, "checkout", "pyproject.toml")

    # C: Ctrl-C while n2 runs, pytest's cache on
    for path in (root / "markers").iterdir():
        path.unlink()
    _hold(root, "n2")
    proc = _start(root, cache=True)
    _wait(root, proc, "started-n2")
    os.killpg(proc.pid, signal.SIGINT)
    found["C"] = _end(proc)
    _release(root)
    lastfailed = root / ".pytest_cache" / "v" / "cache" / "lastfailed"
    found["lastfailed"] = json.loads(lastfailed.read_text()) if lastfailed.exists() else {}

    # E: SIGTERM to the xdist controller alone (kill PID, a scheduler) while two trials run, pytest's cache on
    for path in (root / "markers").iterdir():
        path.unlink()
    _hold(root, "n0", "n1", "n2", "n3")
    shutil.rmtree(root / ".pytest_cache", ignore_errors=True)
    before = {r["key"] for r in _rows(root)}
    proc = _start(root, "-n", "2", cache=True)
    wait_until("two trials started", lambda: len(list((root / "markers").glob("started-*"))) >= 2, proc)
    proc.send_signal(signal.SIGTERM)
    found["E"] = _end(proc)
    _release(root)
    found["E rows"] = [r for r in _rows(root) if r["key"] not in before]
    found["E lastfailed"] = json.loads(lastfailed.read_text()) if lastfailed.exists() else {}
    found["E started"] = sorted(p.name for p in (root / "markers").glob("started-*"))

    # D: resume
    proc = _start(root, "--mitosis-resume", "-rs")
    found["D"] = _end(proc)
    found["D rows"] = _rows(root)
    return found


def test_an_edit_while_a_trial_runs_fails_it_and_stops_the_sweep(story: dict[str, Any]) -> None:
    ret, out = story["A"]
    assert ret == 1, out
    assert "1 failed, 1 passed in" in out
    commit = git(story["root"], "rev-parse", "HEAD").strip()[:8]
    assert (
        f"study/fit.py (modified) is not as in commit {commit} (the investigation's code changed while the trial "
        "ran), which its record would name. Commit the change (or undo it), then run the rest of the sweep with "
        "--mitosis-resume: it runs only the trials that have not passed at the commit then checked out."
    ) in out
    assert "FAILED pyproject.toml::fit[n1] - study/fit.py (modified) is not as in" in out
    assert (
        "! mitosis: the investigation's code changed while the sweep ran (study/fit.py): no later trial would run "
        "its commit's code, so the sweep stops here. Commit the change (or undo it), then run pytest --mitosis "
        "--mitosis-resume !"
    ) in out
    rows = {r["variants"]: r for r in story["A rows"]}
    assert rows["n0"]["status"] == "passed"
    assert rows["n1"]["status"] == "failed"
    assert "study/fit.py (modified)" in rows["n1"]["message"]
    assert set(rows) == {"n0", "n1"}, "the sweep stopped: n2 and n3 never started"
    folder = Path(rows["n1"]["folder"])
    outcome = json.loads((folder / "outcome.json").read_text())
    assert outcome["status"] == "failed" and "study/fit.py (modified)" in outcome["message"]
    assert str(story["root"] / "study" / "fit.py") in outcome["sources"]


def test_a_session_edited_while_it_ran_says_so_in_its_record(story: dict[str, Any]) -> None:
    with sqlite3.connect(story["root"] / "trials" / "mitosis.sqlite") as db:
        rows = db.execute("SELECT dirty, changed, exitstatus FROM sessions ORDER BY started").fetchall()
    assert rows[0] == (0, '["modified: study/fit.py"]', 1)
    assert rows[-1][1] is None, "the last session (resume) ended with the tree as it started"
    (line,) = [r for r in story["A sessions"].splitlines() if "exit 1" in r]
    assert "(edited while running)" in line


def test_an_edit_of_pyproject_under_xdist_passes_nothing(story: dict[str, Any]) -> None:
    ret, out = story["B"]
    assert ret in (1, 2), out  # pytest-xdist's controller reports a worker's stop as an interruption
    assert " passed" not in out.splitlines()[-1], out
    assert out.count("pyproject.toml (modified) is not as in commit") >= 2, out
    assert (
        "! xdist.dsession.Interrupted: mitosis: the investigation's code changed while the sweep ran (pyproject.toml)"
        in out
    )


def test_an_interrupted_trial_counts_as_failed_for_lf(story: dict[str, Any]) -> None:
    ret, out = story["C"]
    assert ret == 2, out
    assert story["lastfailed"] == {"pyproject.toml::fit[n2]": True}


def test_sigterm_to_the_xdist_controller_stops_its_workers_trials(story: dict[str, Any]) -> None:
    ret, out = story["E"]
    assert ret == 2, out
    rows = story["E rows"]
    assert len(rows) == 2 and {r["status"] for r in rows} == {"interrupted"}, f"{rows}\n{out}"
    assert len(story["E started"]) == 2, "no trial started after the SIGTERM"
    for row in rows:
        assert re.search(rf"^  fit\[{row['variants']}\] +INTERRUPTED +#\d+ key {row['key']}", out, re.M), out
    assert story["E lastfailed"] == {f"pyproject.toml::fit[{r['variants']}]": True for r in rows}


def test_resume_runs_only_what_did_not_pass_at_this_commit(story: dict[str, Any]) -> None:
    ret, out = story["D"]
    assert ret == 0, out
    # n2 was interrupted in C (a repeat now), n3 never ran (new) unless E started it: then both are repeats
    assert re.search(
        r"mitosis plan: 4 trials: (1 new, 1 repeat|0 new, 2 repeats), 0 blocked, 2 skipped \(passed at this commit: "
        r"--mitosis-resume\)",
        out,
    ), out
    assert "2 passed, 2 skipped" in out
    commit = git(story["root"], "rev-parse", "HEAD").strip()
    assert f"SKIPPED [1] pyproject.toml: passed at this commit ({commit[:8]}) as trial_fit-n0-" in out
    ran = [r["variants"] for r in story["D rows"][-2:]]
    assert sorted(ran) == ["n2", "n3"]
    assert all(r["status"] == "passed" and r["commit"] == commit for r in story["D rows"][-2:])
