"""One task of a Slurm job array: run the trial its session took, in a kernel on this node, and say how it ended.

``python -m pytest_mitosis.recording.slurm_job ARRAY_FOLDER TASK`` is the command of every array's
script (:mod:`..execution.slurm.cli`); Slurm appends the task's index. The session took the trial's
record (its key, iteration and variant locks) and built its notebook before it submitted the array
(:mod:`.slurm_sweep`); this process runs that notebook in a kernel of its own (spawned: one trial per
job, a warm parent would not pay), writes the trial's folder, checks that the code which ran is the
recorded commit's (the session cannot see what this node imported), and writes the outcome last.
The session records it: a job never opens the store.

A requeued task (preemption, ``scontrol requeue``, a node that failed) runs again from the start:
what an earlier attempt left (its outcome, its progress, its folders) goes first, so the trial
keeps one record and one folder. Slurm's SIGTERM (a time limit, ``scancel``) interrupts the cells
like Ctrl-C: the notebook as far as it got is saved and the outcome says so, within Slurm's
``KillWait``. No pytest import.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..execution.slurm.tasks import ArrayFolder, JobOutcome, Request, TaskFileError, remove_trial_files, write_json


def _code_check(request: Request) -> tuple[Any, Any] | None:
    """``(check(sources) -> message or None, the stop message of the last change found)`` for a clean tree."""
    if request.check is None:
        return None
    from ..checks.code_drift import CommitFiles, changed_message, stop_message

    check = request.check
    files = CommitFiles(
        Path(check["worktree"]),
        check["commit"],
        tuple(Path(p) for p in check["own"]),
        tuple(check["ignore"]),
    )
    stopped: list[str] = []

    def changed(sources: tuple[str, ...], when: str) -> str | None:
        found = files.changed([Path(p) for p in (*check["files"], *sources)])
        if not found:
            return None
        stopped.append(stop_message(found))
        return changed_message(found, check["commit"], when)

    return changed, stopped


def run(folder: ArrayFolder, task: int) -> JobOutcome:
    """Run task ``task`` of the array in ``folder``; its outcome (also written to the folder)."""
    from ..config.project import Reference
    from ..config.variants import StepSpec, TrialSpec
    from ..execution.artifacts import TrialFolder
    from ..execution.runner import run_trial

    request = Request.read(folder.request(task))
    folder.forget(task)
    trials = Path(request.trials)
    files = TrialFolder(trials, request.key, request.name, request.debug)
    remove_trial_files(trials, files.staging, files.final)
    node = os.environ.get("SLURMD_NODENAME") or socket.gethostname().split(".")[0]  # Slurm's name of the node
    steps = tuple(
        StepSpec(
            s["name"],
            Reference(*s["function"].split(":", 1)),
            Reference(*s["lookup"].split(":", 1)) if s["lookup"] else None,
            bool(s["chained"]),
        )
        for s in request.steps
    )
    spec = TrialSpec(request.experiment, steps, ())
    check = _code_check(request)
    started = time.monotonic()
    if check is not None:
        refused = check[0]((), "before its Slurm job started")
        if refused is not None:  # the tree moved while the task waited in the queue: nothing runs
            outcome = JobOutcome(request.key, False, None, {}, refused, 0.0, None, (), check[1][-1], False, node)
            write_json(folder.outcome(task), outcome.to_json())
            return outcome
    last = [0.0]

    def progress(state: dict[str, Any]) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0:
            last[0] = now
            try:
                write_json(folder.progress(task), {**state, "node": node})
            except OSError:
                pass  # a courtesy: the trial goes on

    result = run_trial(
        spec,
        key=request.key,
        name=request.name,
        root=Path(request.root),
        trials=trials,
        timeout=request.timeout,
        debug=request.debug,
        seed=request.seed,
        metadata=request.metadata,
        code_changed=(lambda sources: check[0](sources, "while the trial ran")) if check is not None else None,
        progress=progress,
        max_output=request.max_output,
        built=request.notebook,
    )
    outcome = JobOutcome(
        key=request.key,
        passed=result.passed,
        main=result.main,
        metrics=result.metrics,
        message=result.message,
        seconds=time.monotonic() - started,
        interrupted=int(result.interrupted) if result.interrupted is not None else None,
        sources=result.sources,
        code_changed=check[1][-1] if check is not None and check[1] else None,
        written=result.folder is not None,
        node=node,
    )
    write_json(folder.outcome(task), outcome.to_json())
    return outcome


def main(argv: list[str]) -> int:
    """The job's command; exit status 0 when the trial ran (whatever its verdict), 2 when it could not start."""
    if len(argv) != 2 or not argv[1].isdigit():
        print("usage: python -m pytest_mitosis.recording.slurm_job ARRAY_FOLDER TASK", file=sys.stderr)
        return 2
    try:
        outcome = run(ArrayFolder(Path(argv[0])), int(argv[1]))
    except TaskFileError as err:
        print(f"pytest-mitosis: {err}", file=sys.stderr)
        return 2
    print(f"pytest-mitosis: trial {outcome.key} {'passed' if outcome.passed else 'failed'} in {outcome.seconds:.1f}s")
    return 0


if __name__ == "__main__":  # pragma: no cover - the job's entry point
    sys.exit(main(sys.argv[1:]))
