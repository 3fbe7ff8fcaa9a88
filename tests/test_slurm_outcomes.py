"""How a Slurm task's end becomes its trial's outcome: what the job wrote, and Slurm's word on the job.

The race the new user hit (issue 27): Ctrl-C on the session in the moment after a task's job wrote
the outcome of a trial that passed, but before the job's process ended; the session's own ``scancel``
then made Slurm report the task ``CANCELLED``. The trial ran to its end: it is recorded as it ended.
A race of milliseconds cannot be caused on demand with a real cluster, so these build the two things
the session reads, a real outcome file our job format writes and Slurm's state of the task, and ask
the sweep what it records.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import pytest

from pytest_mitosis.config.project import load_project
from pytest_mitosis.config.settings import Settings
from pytest_mitosis.config.variants import TrialSpec
from pytest_mitosis.execution.slurm.cli import TaskState
from pytest_mitosis.execution.slurm.tasks import ArrayFolder, JobOutcome, write_json
from pytest_mitosis.recording.slurm_sweep import SlurmSweep, Task
from pytest_mitosis.recording.trial import Begun


def _sweep_and_task(tmp_path: Path, wrote: JobOutcome | None, state: str) -> tuple[SlurmSweep, Task]:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[tool.mitosis.steps]\nfit = ["study:run"]\n', encoding="utf-8")
    project = load_project(pyproject)
    settings = Settings(pyproject, None, (), (), None, False, tmp_path)
    sweep = SlurmSweep(
        store=None,  # type: ignore[arg-type]  # what is recorded is asked of _outcome, before any store
        project=project,
        settings=settings,
        environment={},
        seed=1,
        session="s",
        check=None,
    )
    array = ArrayFolder(project.trials_folder / ".slurm" / "s-0")
    begun = Begun("0000abcd", 1, "trial_fit-1", {"commit": None}, [])
    task = Task("pyproject.toml::fit", TrialSpec("fit", (), ()), None, begun, array, 0, "77")  # type: ignore[arg-type]
    task.state = TaskState("77", 0, state, node="node1")
    if wrote is not None:
        write_json(array.outcome(0), wrote.to_json())
    return sweep, task


def _wrote(**changes: Any) -> JobOutcome:
    fields: dict[str, Any] = {
        "key": "0000abcd",
        "passed": True,
        "main": 2.5,
        "metrics": {},
        "message": None,
        "seconds": 1.5,
        "interrupted": None,
        "sources": (),
        "code_changed": None,
        "written": False,
        "node": "node1",
    }
    return JobOutcome(**{**fields, **changes})


def test_a_trial_that_ran_to_its_end_is_recorded_as_it_ended_though_its_job_was_cancelled_after(
    tmp_path: Path,
) -> None:
    sweep, task = _sweep_and_task(tmp_path, _wrote(), "CANCELLED")
    outcome = sweep._outcome(task, "the session was interrupted (Ctrl-C or SIGTERM)")
    assert (outcome.passed, outcome.main, outcome.interrupted, outcome.message) == (True, 2.5, None, None)


def test_a_trial_the_cancel_stopped_is_interrupted(tmp_path: Path) -> None:
    stopped = _wrote(passed=False, main=None, interrupted=int(signal.SIGTERM), message="interrupted by SIGTERM")
    sweep, task = _sweep_and_task(tmp_path, stopped, "CANCELLED")
    outcome = sweep._outcome(task, "the session was interrupted (Ctrl-C or SIGTERM)")
    assert outcome.interrupted == signal.SIGINT and not outcome.passed
    assert outcome.message == (
        "the session was interrupted (Ctrl-C or SIGTERM): its Slurm job 77_0 on node1 was cancelled "
        "(interrupted by SIGTERM)"
    )


@pytest.mark.parametrize(
    ("state", "said"),
    [
        ("TIMEOUT", "time limit reached"),
        ("OUT_OF_MEMORY", "out of memory"),
        ("NODE_FAIL", "node node1 failed"),
        ("PREEMPTED", "preempted (another job took its resources)"),
        ("CANCELLED", "cancelled (scancel, or an administrator)"),
    ],
)
def test_a_job_slurm_ended_is_a_failure_with_slurms_reason(tmp_path: Path, state: str, said: str) -> None:
    stopped = _wrote(passed=False, main=None, interrupted=int(signal.SIGTERM), message="interrupted by SIGTERM")
    sweep, task = _sweep_and_task(tmp_path, stopped, state)
    outcome = sweep._outcome(task, None)
    assert outcome.interrupted is None and not outcome.passed
    assert outcome.message == f"Slurm ended its job 77_0 on node1: {said}\n\ninterrupted by SIGTERM"


def test_a_signal_from_outside_is_a_failure_not_a_stop(tmp_path: Path) -> None:
    stopped = _wrote(passed=False, main=None, interrupted=int(signal.SIGTERM), message="interrupted by SIGTERM")
    sweep, task = _sweep_and_task(tmp_path, stopped, "COMPLETED")
    outcome = sweep._outcome(task, None)
    assert outcome.interrupted is None and not outcome.passed
    assert outcome.message == (
        "its Slurm job 77_0 on node1 was stopped by SIGTERM from outside this session: interrupted by SIGTERM"
    )
