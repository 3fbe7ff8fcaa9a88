"""A trial's Slurm job over its time limit (issue 27), on a real cluster of this module's own.

Slurm's smallest limit is one minute, and slurmctld checks limits on its own period (about 30 s):
the job ends ``TIMEOUT`` 60 to 90 s after it starts. This module has a cluster of its own, so
pytest-xdist runs it beside the other Slurm tests rather than after them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest

from .conftest import clean_env, held_investigation, run_pytest
from .slurm_cluster import SlurmCluster, own_cluster

pytestmark = pytest.mark.kernel


@pytest.fixture(scope="module")
def cluster() -> Iterator[SlurmCluster]:
    yield from own_cluster()


def test_a_job_over_its_time_limit_is_a_failure_with_slurms_reason(
    cluster: SlurmCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = held_investigation(tmp_path_factory.mktemp("slurm-timeout") / "study", 1)
    (root / "markers" / "hold-n0").write_text("")  # never released: only Slurm ends it
    done = run_pytest(
        root,
        "--mitosis",
        "--mitosis-executor=slurm",
        "--mitosis-slurm",
        "time=1",
        env=clean_env(SLURM_CONF=cluster.env["SLURM_CONF"]),
        timeout=300,
    )
    assert done.ret == 1, done.out
    with sqlite3.connect(root / "trials" / "mitosis.sqlite") as db:
        db.row_factory = sqlite3.Row
        (row,) = [dict(r) for r in db.execute("SELECT * FROM trials")]
    assert row["status"] == "failed"
    job = json.loads(row["job"])
    assert job["state"] == "TIMEOUT", job
    assert f"Slurm ended its job {job['job']} on {cluster.node}: " in row["message"], row["message"]
    assert "time limit" in row["message"], row["message"]
    assert "time limit" in done.out
