"""Kernels: one fresh kernel per trial, each stopped when its trial ends, even in a long sweep."""

from __future__ import annotations

import os
from pathlib import Path

from .conftest import clean_env, git_init, run_pytest, write_investigation

MODULE = """
import os

lookup = {"n": {"a": 1, "b": 2, "c": 3, "d": 4}}


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def run(n):
    path = os.environ["KERNEL_PIDS"]
    earlier = [int(line) for line in open(path)] if os.path.exists(path) else []
    with open(path, "a") as stream:
        stream.write(f"{os.getpid()}\\n")
    return {"main": sum(_alive(pid) for pid in earlier), "metrics": {"kernels_before": len(earlier)}}
"""

PYPROJECT = """
[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_every_trial_gets_a_fresh_kernel_that_is_stopped_when_it_ends(tmp_path: Path) -> None:
    root = git_init(write_investigation(tmp_path / "study", PYPROJECT, {"exp": MODULE}))
    pids = tmp_path / "pids.txt"
    run = run_pytest(root, "--mitosis", env=clean_env(KERNEL_PIDS=str(pids)))
    assert run.ret == 0, run.out
    for name, before in (("exp[a]", "0"), ("exp[b]", "1"), ("exp[c]", "2"), ("exp[d]", "3")):
        props = run.properties(name)
        assert props["mitosis.metrics.kernels_before"] == before
        assert props["main"] == "0", f"{name}: a kernel of an earlier trial was still running"
    recorded = [int(line) for line in pids.read_text().split()]
    assert len(set(recorded)) == 4, "no kernel ran two trials"
    assert not any(_alive(pid) for pid in recorded)
