"""``python -m pytest_mitosis best``: the leaderboard and the grouped view, over a store written through the store.

The trials are recorded by the real :class:`SQLiteStore` (``begin`` + ``finish``, the same
record shape a session writes: one lookup parameter per row of ``params``, variants named),
and the command runs in a subprocess as a user runs it. No kernels: ranking reads records only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_mitosis.core.rules import GATE_FAILED
from pytest_mitosis.store import NewTrial, SQLiteStore

OLD, NEW = "1" * 40, "2" * 40
#: what the drift gate's failure says (the report and ``best`` tell a gate's failure from an error by its words)
GATE = f"main moved from 0.22 (trial_fit-lasso-mid-1, key b0000008) to 0.9 (+0.68, +309%): higher {GATE_FAILED} 5%"
MODELS = {"ridge": 0.1, "lasso": 0.2, "tree": 0.3}
NOISES = {"low": 0.01, "mid": 0.02, "high": 0.04}


def record(
    store: SQLiteStore,
    i: int,
    model: str,
    noise: str,
    *,
    experiment: str = "fit",
    commit: str = NEW,
    main: Any = None,
    status: str = "passed",
    message: str = "no",
    verdict: str | None = None,
) -> str:
    """One trial of identity (model, noise) at ``commit``, recorded as a session records it; its key."""
    key = f"{i:08x}"
    params = [
        {
            "step": "s",
            "name": n,
            "kind": "lookup",
            "text": t,
            "tracked": True,
            "fingerprint": t,
            "value": t,
            "repr": repr(t),
        }
        for n, t in (("model", model), ("noise", noise))
    ] + [
        {
            "step": "s",
            "name": "seed",
            "kind": "seed",
            "text": "",
            "tracked": False,
            "fingerprint": None,
            "value": 7,
            "repr": "7",
        }
    ]
    env = {"python": {"version": "3.11.7"}, "hostname": "alpha", "packages": {}}
    store.begin(
        NewTrial(
            key, experiment, json.dumps([model, noise]), f"{model}-{noise}", f"trial_{experiment}-{model}-{noise}",
            f"pyproject.toml::{experiment}", False, {"commit": commit}, 7, env,
            [{"name": "s", "function": "m:f", "lookup": "m:LOOKUP"}], params,
        ),
        (),
    )  # fmt: skip
    if main is None and status == "passed":
        main = round(MODELS[model] + NOISES[noise], 6)
    store.finish(
        key, status=status, main=main, metrics={}, folder=None, message=None if status == "passed" else message,
        verdict=verdict,
    )  # fmt: skip
    return key


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store: 3 trials at an older commit (better mains, never ranked with the newer ones), then the
    3 x 3 sweep at the newer one, a worse second iteration of ridge-low, a failed, a gate-failed and an
    interrupted trial, and one trial of a second experiment."""
    here = tmp_path_factory.mktemp("best")
    store = SQLiteStore(here / "trials")
    i = 0xB0000000
    for model in ("ridge", "lasso", "tree"):
        i += 1
        record(store, i, model, "low", commit=OLD, main=0.001)
    for model in MODELS:
        for noise in NOISES:
            i += 1
            record(store, i, model, noise)
    record(store, i + 1, "ridge", "low", main=0.5)  # a second, worse iteration: the best of ridge-low stays 0.11
    record(store, i + 2, "tree", "low", status="failed", main=None)  # raised
    record(store, i + 3, "lasso", "mid", status="failed", main=0.9, message=GATE)  # ran, then failed by its drift gate
    record(store, i + 4, "tree", "high", status="interrupted", main=None)
    store.close()
    return here


def mitosis(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "--trials-folder", "trials", *args],
        cwd=root,
        capture_output=True,
        text=True,
    )


HEADER = (
    "experiment fit at commit 22222222 (the latest with passed trials; --all for every commit, --commit REV for one); "
    "main: lower is better"
)
NOT_SHOWN = "not shown: 1 failed, 1 gate-failed, 1 interrupted, 3 at other commits (--all): python -m pytest_mitosis history fit"
# --by aggregates every trial that measured main: the gate-failed lasso-mid is in, so it is not counted as not shown,
# and the commit is the latest with measured trials (here the same: the newest commit has passed trials too)
HEADER_BY = HEADER.replace("the latest with passed trials", "the latest with measured trials")
NOT_SHOWN_BY = "not shown: 1 failed, 1 interrupted, 3 at other commits (--all): python -m pytest_mitosis history fit"
INCLUDED = "the best of each identity, gate-failed trials included: their main was measured"


def columns(line: str) -> list[str]:
    return line.split()


def test_leaderboard_ranks_the_latest_commit_best_first_and_counts_what_it_leaves_out(root: Path) -> None:
    done = mitosis(root, "best", "fit")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == HEADER
    assert columns(lines[1]) == ["rank", "variants", "main", "iteration", "key", "commit", "date"]
    rows = [columns(line) for line in lines[2:-1]]
    assert [r[:6] for r in rows] == [
        ["1", "ridge-low", "0.11", "2", "b0000004", "22222222"],  # its second iteration (0.5) is worse
        ["2", "ridge-mid", "0.12", "1", "b0000005", "22222222"],
        ["3", "ridge-high", "0.14", "1", "b0000006", "22222222"],
        ["4", "lasso-low", "0.21", "2", "b0000007", "22222222"],
        ["5", "lasso-mid", "0.22", "1", "b0000008", "22222222"],  # not the gate-failed 0.9
        ["6", "lasso-high", "0.24", "1", "b0000009", "22222222"],
        ["7", "tree-low", "0.31", "2", "b000000a", "22222222"],
        ["8", "tree-mid", "0.32", "1", "b000000b", "22222222"],
        ["9", "tree-high", "0.34", "1", "b000000c", "22222222"],
    ]
    assert lines[-1] == NOT_SHOWN
    # one experiment in the store: it is the default
    assert mitosis(root, "best").stdout == done.stdout


def test_by_a_parameter_aggregates_main_over_the_others_and_stars_the_best(root: Path) -> None:
    done = mitosis(root, "best", "fit", "--by", "model")
    assert done.returncode == 0, done.stderr
    # lower is better: lasso-mid's best is its passed 0.22, not its gate-failed 0.9, so the numbers are the
    # passed trials' (lasso (0.21 + 0.22 + 0.24) / 3 = 0.2233); only the header and the last line change
    assert done.stdout.splitlines() == [
        HEADER_BY,
        f"mean of main by s.model (over s.noise; {INCLUDED}; * the best s.model)",
        "   s.model  mean main  count  best trial  its main  key",
        "*  ridge    0.1233     3      ridge-low   0.11      b0000004",
        "   lasso    0.2233     3      lasso-low   0.21      b0000007",
        "   tree     0.3233     3      tree-low    0.31      b000000a",
        NOT_SHOWN_BY,
    ]
    median = mitosis(root, "best", "fit", "--by", "s.noise", "--agg", "median").stdout.splitlines()
    assert median[1:5] == [
        f"median of main by s.noise (over s.model; {INCLUDED}; * the best s.noise)",
        "   s.noise  median main  count  best trial  its main  key",
        "*  low      0.21         3      ridge-low   0.11      b0000004",
        "   mid      0.22         3      ridge-mid   0.12      b0000005",
    ]
    assert median[5] == "   high     0.24         3      ridge-high  0.14      b0000006"
    data = json.loads(mitosis(root, "best", "fit", "--by", "model", "--agg", "max", "--json").stdout)
    assert (data["by"], data["agg"], data["commit"]) == ("s.model", "max", NEW)
    assert [(r["value"], r["max"], r["count"], r["best"]["key"], r["best_group"]) for r in data["rows"]] == [
        ("ridge", 0.14, 3, "b0000004", True),
        ("lasso", 0.24, 3, "b0000007", False),
        ("tree", 0.34, 3, "b000000a", False),
    ]
    # each row says its best trial's status, and how many of the group's trials failed a gate (none is a best here)
    assert [(r["best"]["status"], r["best"]["failure"], r["gate_failed"]) for r in data["rows"]] == [
        ("passed", None, 0)
    ] * 3
    assert data["not_shown"] == {"failed": 1, "interrupted": 1, "at other commits (--all)": 3}, "gate-failed: in"
    counted = mitosis(root, "best", "fit", "--by", "model", "--agg", "count").stdout.splitlines()
    assert len(counted) == 7 and not any("*" in line for line in counted[2:6]), "a count is not a score: no best"
    data = json.loads(mitosis(root, "best", "fit", "--by", "model", "--agg", "count", "--json").stdout)
    assert [r["best_group"] for r in data["rows"]] == [False, False, False]


def test_commit_and_all_choose_which_code_is_ranked(root: Path) -> None:
    old = mitosis(root, "best", "fit", "--commit", "1111").stdout.splitlines()
    assert old[0] == "experiment fit at commit 11111111; main: lower is better"
    assert [columns(line)[:6] for line in old[2:-1]] == [
        ["1", "lasso-low", "0.001", "1", "b0000002", "11111111"],
        ["2", "ridge-low", "0.001", "1", "b0000001", "11111111"],
        ["3", "tree-low", "0.001", "1", "b0000003", "11111111"],
    ]
    assert old[-1] == "not shown: 13 at other commits (--all): python -m pytest_mitosis history fit"
    every = mitosis(root, "best", "fit", "--all").stdout.splitlines()
    assert every[0] == "experiment fit at every commit (--commit REV for one); main: lower is better"
    # each identity's best over both commits, and each row says its commit
    assert [(columns(line)[1], columns(line)[5]) for line in every[2:-1]] == [
        ("lasso-low", "11111111"), ("ridge-low", "11111111"), ("tree-low", "11111111"),
        ("ridge-mid", "22222222"), ("ridge-high", "22222222"), ("lasso-mid", "22222222"),
        ("lasso-high", "22222222"), ("tree-mid", "22222222"), ("tree-high", "22222222"),
    ]  # fmt: skip
    assert every[-1] == "not shown: 1 failed, 1 gate-failed, 1 interrupted: python -m pytest_mitosis history fit"
    data = json.loads(mitosis(root, "best", "fit", "--json").stdout)
    assert data["commit"] == NEW and data["higher_is_better"] is False
    assert [(r["rank"], r["variants"], r["main"], r["commit"]) for r in data["rows"][:2]] == [
        (1, "ridge-low", 0.11, NEW),
        (2, "ridge-mid", 0.12, NEW),
    ]


def test_higher_is_better_from_the_experiments_table(root: Path) -> None:
    (root / "pyproject.toml").write_text(
        "[tool.mitosis.steps]\ns = ['m:f']\n[tool.mitosis.experiments.fit]\nsteps = ['s']\nhigher-is-better = true\n"
    )
    try:
        lines = mitosis(root, "best", "fit", "--by", "model").stdout.splitlines()
    finally:
        (root / "pyproject.toml").unlink()
    assert lines[0].endswith("main: higher is better")
    # higher is better: lasso-mid's best is now its gate-failed 0.9 (it measured main), so lasso
    # (0.21 + 0.9 + 0.24) / 3 = 0.45 beats tree (0.31 + 0.32 + 0.34) / 3 = 0.3233, and the row says which trial failed
    assert lines[3] == "*  lasso    0.45       3 (1 gate-failed)  lasso-mid   0.9       b000000f (gate-failed)"
    assert lines[4].split() == ["tree", "0.3233", "3", "tree-high", "0.34", "b000000c"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["best", "nope"], "no experiment 'nope' in {store}; its experiments: fit"),
        (["best", "fit", "--by", "x"], "--by x: no such parameter in the trials shown; the parameters: s.model, s.noise"),
        (["best", "fit", "--commit", "3333"], "no trial of this experiment ran at a commit starting with '3333'; its commits: 22222222, 11111111"),
        (["best", "fit", "--all", "--commit", "1111"], "--all ranks every commit and --commit one of them: give one of the two"),
    ],
)  # fmt: skip
def test_errors_say_what_is_known(root: Path, args: list[str], message: str) -> None:
    done = mitosis(root, *args)
    store = root / "trials" / "mitosis.sqlite"
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"pytest-mitosis: {message.format(store=store)}\n")


def test_several_experiments_need_a_name(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "trials")
    record(store, 1, "ridge", "low", experiment="fit")
    record(store, 2, "ridge", "low", experiment="sweep")
    store.close()
    done = mitosis(tmp_path, "best")
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr == (
        "pytest-mitosis: the store holds 2 experiments: fit, sweep; name one: python -m pytest_mitosis best EXPERIMENT\n"
    )
    assert mitosis(tmp_path, "best", "sweep").stdout.splitlines()[2].split()[:3] == ["1", "ridge-low", "0.11"]


def test_by_counts_a_variant_whose_only_trials_at_the_commit_failed_the_gate(tmp_path: Path) -> None:
    """The issue #25 follow-up: a commit makes tree worse, the drift gate fails every tree trial (they ran to the
    end and measured main), and ``--by`` must still rank tree, from those trials: dropping them would rank the
    survivors. A trial that raised, or whose code changed while it ran (it may have recorded a main), never counts."""
    store = SQLiteStore(tmp_path / "trials")
    for i, model in enumerate(MODELS, 1):
        record(store, i, model, "low", commit=OLD)
    record(store, 4, "ridge", "low")  # 0.11
    record(store, 5, "ridge", "mid")  # 0.12
    record(store, 6, "lasso", "low")  # 0.21
    record(store, 7, "tree", "low", status="failed", main=0.6, message=GATE)
    record(
        store,
        8,
        "tree",
        "mid",
        status="failed",
        main=0.7,
        verdict="refuted",
        message="hypothesis 'main < 0.5' is refuted",
    )
    changed = "exp.py (modified) is not as in commit 22222222 (the investigation's code changed while it ran)"
    record(store, 9, "tree", "high", status="failed", main=0.01, message=changed)  # would win, were it counted
    record(store, 10, "ridge", "high", status="failed", main=None, message="step 's' raised ValueError")
    store.accept("00000007", "alice", "alpha", "tree is worse now, as it should be")  # accepted: still measured
    store.close()
    done = mitosis(tmp_path, "best", "fit", "--by", "model")
    assert done.returncode == 0, done.stderr
    # ridge (0.11 + 0.12) / 2 = 0.115, lasso 0.21, tree (0.6 + 0.7) / 2 = 0.65 from its two judged trials alone
    assert done.stdout.splitlines() == [
        HEADER_BY,
        f"mean of main by s.model (over s.noise; {INCLUDED}; * the best s.model)",
        "   s.model  mean main  count              best trial  its main  key",
        "*  ridge    0.115      2                  ridge-low   0.11      00000004",
        "   lasso    0.21       1                  lasso-low   0.21      00000006",
        "   tree     0.65       2 (2 gate-failed)  tree-low    0.6       00000007 (gate-failed)",
        "not shown: 2 failed, 3 at other commits (--all): python -m pytest_mitosis history fit",
    ]
    data = json.loads(mitosis(tmp_path, "best", "fit", "--by", "model", "--json").stdout)
    tree = data["rows"][-1]
    assert (tree["value"], tree["mean"], tree["count"], tree["gate_failed"]) == ("tree", pytest.approx(0.65), 2, 2)
    assert (tree["best"]["key"], tree["best"]["status"], tree["best"]["failure"]) == (
        "00000007",
        "failed",
        "drift gate, accepted",
    )
    # the leaderboard still ranks passed trials alone, and counts the others (the changed one failed, not gate-failed)
    board = mitosis(tmp_path, "best", "fit").stdout.splitlines()
    assert [columns(line)[1] for line in board[2:-1]] == ["ridge-low", "ridge-mid", "lasso-low"]
    assert (
        board[-1]
        == "not shown: 2 failed, 2 gate-failed, 3 at other commits (--all): python -m pytest_mitosis history fit"
    )


def test_by_defaults_to_the_latest_commit_that_measured_main_even_when_every_trial_there_failed_the_gate(
    tmp_path: Path,
) -> None:
    """After a commit whose every trial the drift gate failed, that commit is the code as it is: ``--by`` ranks it,
    while the leaderboard (passed trials) still shows the older commit's, and says the newer trials are elsewhere."""
    store = SQLiteStore(tmp_path / "trials")
    record(store, 1, "ridge", "low", commit=OLD)  # 0.11
    record(store, 2, "lasso", "low", commit=OLD)  # 0.21
    record(store, 3, "ridge", "low", status="failed", main=0.5, message=GATE)
    record(store, 4, "lasso", "low", status="failed", main=0.4, message=GATE)
    store.close()
    by = mitosis(tmp_path, "best", "fit", "--by", "model").stdout.splitlines()
    assert by[0] == HEADER_BY
    assert [line.split()[:3] for line in by[3:5]] == [["*", "lasso", "0.4"], ["ridge", "0.5", "1"]]
    assert by[-1] == "not shown: 2 at other commits (--all): python -m pytest_mitosis history fit"
    board = mitosis(tmp_path, "best", "fit").stdout.splitlines()
    assert board[0] == HEADER.replace("22222222", "11111111")
    assert board[-1] == "not shown: 2 at other commits (--all): python -m pytest_mitosis history fit"
