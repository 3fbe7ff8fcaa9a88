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

from pytest_mitosis.store import NewTrial, SQLiteStore

OLD, NEW = "1" * 40, "2" * 40
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
) -> str:
    """One trial of identity (model, noise) at ``commit``, recorded as a session records it; its key."""
    key = f"{i:08x}"
    params = [
        {"step": "s", "name": n, "kind": "lookup", "text": t, "tracked": True, "fingerprint": t, "value": t, "repr": repr(t)}
        for n, t in (("model", model), ("noise", noise))
    ] + [{"step": "s", "name": "seed", "kind": "seed", "text": "", "tracked": False, "fingerprint": None, "value": 7, "repr": "7"}]
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
    store.finish(key, status=status, main=main, metrics={}, folder=None, message=None if status == "passed" else "no")
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
    record(store, i + 3, "lasso", "mid", status="failed", main=0.9)  # ran, then failed by its drift gate
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


def test_play(root: Path) -> None:
    for args in (["best", "fit"], ["best", "fit", "--by", "model"], ["best", "fit", "--by", "s.noise", "--agg", "median"], ["best", "fit", "--all"], ["best", "fit", "--commit", "1111"], ["best"], ["best", "fit", "--by", "x"], ["best", "nope"], ["best", "fit", "--json", "--by", "model"]):
        r = mitosis(root, *args)
        print(args, r.returncode)
        print(r.stdout, r.stderr)
    assert 0
