"""One trial's pipeline: notebook → fresh kernel → artifacts → a ``TrialOutcome``.

Knows nothing of pytest: the item calls :func:`run_trial` and reports what it returns. A
failing step, a dead kernel, a timeout, a result that cannot be saved, a full disk and a
SIGINT/SIGTERM during a step are outcomes, not exceptions: the notebook and its HTML are
saved (as far as the kernel got) before the outcome is returned, and when the trial's own
files cannot be written, its staging folder is removed so that the disk space comes back.
"""

from __future__ import annotations

import json
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config.variants import TrialSpec
from ..core import profile
from .artifacts import PlainPage, SavingTimedOut, TrialFolder, without_outputs
from .runtime import cell_labels

if TYPE_CHECKING:
    from .htmlworker import HtmlWorker
    from .kernel import Execution
    from .launch import Launched


@dataclass(frozen=True)
class TrialOutcome:
    """What a trial produced; ``message`` explains a failure in the user's terms."""

    spec: TrialSpec
    key: str
    name: str
    passed: bool
    main: Any
    metrics: dict[str, Any]
    #: the trial's folder and HTML; ``None`` when its files could not be written (disk full)
    folder: Path | None
    html: Path | None
    seconds: float
    message: str | None = None
    iteration: int | None = None
    commit: str | None = None
    seed: int | None = None
    warnings: tuple[str, ...] = ()
    comparisons: tuple[str, ...] = ()
    verdict: str | None = None
    #: the signal (SIGINT or SIGTERM) that stopped the trial: recorded ``interrupted``, then the session stops
    interrupted: int | None = None
    #: the files of the modules the kernel imported (not the interpreter's or installed packages'): what ran
    sources: tuple[str, ...] = ()


def _step_label(spec: TrialSpec, name: str | None) -> str:
    for step in spec.steps:
        if step.name == name:
            return f"step {name!r} ({step.function})"
    return "the set-up cell"


def _where(spec: TrialSpec, phase: str | None, outcome: dict[str, Any]) -> str:
    """The phase of a trial in the user's terms, for timeouts and interruptions."""
    if phase == "kernel start":
        return "while the kernel started"
    if phase == "set-up":
        return "in the set-up cell (before the first step)"
    if phase == "saving":
        return "while saving the results (pickling each step's result)"
    return f"during {_step_label(spec, outcome.get('step'))}"


def _failure(spec: TrialSpec, execution: Execution, outcome: dict[str, Any]) -> str:
    kind, error = execution.kind, execution.error
    step = _step_label(spec, outcome.get("step"))
    if kind == "dead":
        return f"kernel died during {step}"
    if kind in ("timeout", "interrupted"):
        return f"{error} {_where(spec, execution.phase, outcome)}"
    if kind == "startup":
        return str(error)
    if outcome.get("status") == "failed":
        if outcome.get("result_error"):
            return str(outcome.get("error", "")).split(": ", 1)[-1]
        return f"{step} raised {outcome.get('error')}\n\n{outcome.get('traceback', '')}".rstrip()
    return f"the notebook failed outside the steps' own code ({error})"


#: the message of a trial whose notebook and page were not written within --mitosis-timeout
SAVING_TIMED_OUT = (
    "timed out after {timeout:g} s while saving the trial's notebook and HTML page (every step had run): "
    "the notebook in the trial folder keeps the cells without their outputs"
)
#: the message of a trial whose every step had run when Ctrl-C (or SIGTERM) came (its files are complete)
INTERRUPTED_WHILE_SAVING = (
    "interrupted while its files were written, after every step had finished: its notebook and HTML are complete"
)


def build_notebook(
    spec: TrialSpec,
    trials: Path,
    key: str,
    name: str,
    *,
    debug: bool,
    seed: int,
    metadata: dict[str, Any],
    sys_path: list[str] | None = None,
    max_output: int = 0,
) -> Any:
    """The unexecuted notebook of trial ``name_key``, its outputs bound for its staging folder (see
    :func:`.notebook.build`); a Slurm session builds it for its job, which runs it (``run_trial(built=...)``)."""
    from . import notebook

    folder = TrialFolder(trials, key, name, debug)
    return notebook.build(
        spec,
        title=f"{folder.name} ({folder.key})",
        folder=folder.staging,
        debug=debug,
        seed=seed,
        sys_path=sys_path,
        metadata={**metadata, "key": folder.key, "trial": folder.name, "seed": seed},
        max_output=max_output,
    )


def run_trial(
    spec: TrialSpec,
    *,
    key: str,
    name: str,
    root: Path,
    trials: Path,
    timeout: float | None,
    debug: bool,
    seed: int,
    metadata: dict[str, Any],
    sys_path: list[str] | None = None,
    launched: Launched | None = None,
    html: HtmlWorker | None = None,
    code_changed: Callable[[tuple[str, ...]], str | None] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    max_output: int = 0,
    built: dict[str, Any] | None = None,
    pages_later: bool = True,
) -> TrialOutcome:
    """Run ``spec`` in a fresh kernel and save its artifacts under ``trials`` as ``name_key``.

    ``code_changed`` is given the files of the modules the kernel imported once it is done, and says
    why the recorded commit is not the code that ran (``None`` when it is): the trial then fails with
    that message, in its files as in its record. ``progress`` gets, about every second while the kernel
    runs, ``{"phase", "step", "line", "elapsed"}`` (the step's name, the last line it printed).
    ``max_output`` (``--mitosis-max-cell-output``): the characters each cell puts into the notebook
    at most (0: all); the rest goes to a log in the trial folder. ``timeout`` bounds each step, and
    writing the notebook and its page too. ``built``: the notebook as another process built it for this
    trial (a Slurm job runs the one its session wrote, see :mod:`.slurm.tasks`); by default it is built here.

    The page: with ``html=None`` it is written in this process before this returns. With an
    :class:`~.htmlworker.HtmlWorker` (and ``pages_later``), the trial's folder moves into place (and this
    returns) once its notebook is written, and the helper renders the page in the background: the
    caller must call the worker's ``finish()`` (it returns the trials whose page is not nbconvert's, to
    show) and ``close()`` before its process exits. An interrupted trial's page is always waited for
    (the session ends with it), and so is every page when ``pages_later`` is false (a remote worker
    sends the folder to the controller as soon as the trial ends). ``outcome.html`` is where the page
    is, or will be once ``finish()`` returns.

    A KeyboardInterrupt while the files are written (a second Ctrl-C) still removes the
    staging folder before it propagates, so nothing unfinished is left behind.
    """
    from . import kernel, notebook

    started = time.monotonic()
    folder = TrialFolder(trials, key, name, debug)
    try:
        folder.create()
        with profile.timed("notebook built"):
            nb = (
                notebook.from_json(built)
                if built is not None
                else build_notebook(
                    spec,
                    trials,
                    key,
                    name,
                    debug=debug,
                    seed=seed,
                    metadata=metadata,
                    sys_path=sys_path,
                    max_output=max_output,
                )
            )
    except OSError as err:
        if launched is not None:
            launched.close()
        return _unwritten(spec, folder, err, started)
    except BaseException:
        if launched is not None:
            launched.close()
        folder.discard()
        raise
    phases = ["header", "set-up"] + ["step"] * len(spec.steps) + ["saving"]
    try:
        execution = kernel.execute(
            nb,
            root,
            timeout,
            launched,
            phases,
            while_starting=getattr(html, "prepare", None),
            max_output=max_output,
            output_folder=folder.staging,
            labels=cell_labels([step.name for step in spec.steps]),
            on_tick=_ticks(spec, progress, started),
            log=folder.kernel_log,
        )
    except BaseException:  # a Ctrl-C outside the cells (while the kernel starts): nothing half-written stays
        folder.discard()
        raise
    profile.add({f"kernel: {phase}": seconds for phase, seconds in (execution.phases or {}).items()})
    if execution.stopped:  # the notebook names the processes the trial left running
        execution.notebook.cells.append(notebook.stopped_cell(execution.stopped, execution.killed))
    outcome = folder.read_outcome()
    kernel_start = execution.kernel or {"start": "spawn"}
    mitosis_metadata = getattr(execution.notebook, "metadata", {}).get("mitosis")
    if isinstance(mitosis_metadata, dict):  # the notebook says how its kernel was started
        mitosis_metadata["kernel"] = kernel_start
    passed, message = _verdict(spec, execution, outcome, code_changed)
    description = {
        "trial": folder.name,
        "key": folder.key,
        **{k: v for k, v in metadata.items() if k != "environment"},
        "seed": seed,
        "kernel": kernel_start,
        "results": {
            k: outcome.get(k) for k in ("status", "main", "metrics", "metrics_other", "message") if k in outcome
        },
        "environment": metadata.get("environment"),
    }
    saving = time.monotonic()
    interrupted = execution.signal
    try:
        later = pages_later and execution.signal is None  # an interrupted trial ends the session: its page now
        final, late = _save(folder, execution, outcome, description, html, timeout, later)
    except OSError as err:
        return _unwritten(spec, folder, err, started, signal=execution.signal)
    except KeyboardInterrupt:
        if execution.signal is not None:  # a second Ctrl-C: nothing unfinished stays
            folder.discard()
            raise
        # The first Ctrl-C (or SIGTERM), once every step had run: the helper is done with the folder,
        # so the files are written again here, whole, and the trial is recorded interrupted with them.
        interrupted, late = signal.SIGINT, INTERRUPTED_WHILE_SAVING
        final = _save_interrupted(folder, execution, outcome, description)
    except BaseException:
        folder.discard()
        raise
    if late is not None:
        passed, message = False, late
    _log_phases(started, saving, execution, kernel_start)
    page = folder.html
    if message is not None:
        message = f"{message}\n\nnotebook: {page}"
    return TrialOutcome(
        spec=spec,
        key=folder.key,
        name=folder.name,
        passed=passed,
        main=outcome.get("main"),
        metrics=dict(outcome.get("metrics") or {}),
        folder=final,
        html=page,
        seconds=time.monotonic() - started,
        message=message,
        interrupted=interrupted,
        sources=tuple(str(p) for p in outcome.get("sources") or ()),
    )


def _ticks(
    spec: TrialSpec, progress: Callable[[dict[str, Any]], None] | None, started: float
) -> Callable[[str, int, str], None] | None:
    """What the kernel calls about every second, turned into ``progress``'s ``{"phase", "step", "line",
    "elapsed"}``; ``None`` without ``progress``."""
    if progress is None:
        return None
    report = progress

    def on_tick(phase: str, cell: int, line: str) -> None:
        step = spec.steps[cell - 2].name if phase == "step" and 2 <= cell < 2 + len(spec.steps) else None
        report({"phase": phase, "step": step, "line": line, "elapsed": time.monotonic() - started})

    return on_tick


def _verdict(
    spec: TrialSpec,
    execution: Execution,
    outcome: dict[str, Any],
    code_changed: Callable[[tuple[str, ...]], str | None] | None,
) -> tuple[bool, str | None]:
    """``(passed, message)`` of the kernel's run, written into ``outcome`` (its status and message) too: an
    interruption, a failure, and code that is not the recorded commit's (never a pass)."""
    passed = execution.error is None and outcome.get("status") == "passed"
    message = None
    if execution.kind == "interrupted":
        outcome["status"] = "interrupted"
        message = _failure(spec, execution, outcome)
        outcome["message"] = message
    elif not passed:
        outcome["status"] = "failed"
        message = _failure(spec, execution, outcome)
        outcome["message"] = message
    changed = None
    if code_changed is not None and execution.kind != "interrupted":
        changed = code_changed(tuple(str(p) for p in outcome.get("sources") or ()))
    if changed is not None:  # the record would name a commit whose code did not run: never a pass
        passed = False
        message = changed if message is None else f"{changed}\n\nThe trial also failed: {message}"
        outcome["status"] = "failed"
        outcome["message"] = message
    return passed, message


def _mark(outcome: dict[str, Any], description: dict[str, Any], status: str, message: str) -> None:
    """A verdict decided while the files were written, in the outcome and the trial's description."""
    outcome.update(status=status, message=message)
    description["results"] = {**description["results"], "status": status, "message": message}


def _save(
    folder: TrialFolder,
    execution: Execution,
    outcome: dict[str, Any],
    description: dict[str, Any],
    html: HtmlWorker | None,
    timeout: float | None,
    later: bool = False,
) -> tuple[Path, str | None]:
    """``(the trial's folder, the failure when the files were not written in time)``: the notebook and its page
    written within ``timeout`` (the page in the background when ``later``); when they were not, the notebook
    without outputs and a page that says why."""
    try:
        return folder.save(execution.notebook, outcome, description, html, timeout=timeout, later=later), None
    except SavingTimedOut as late:
        # The helper was stopped: the notebook keeps its cells (not their outputs), the page says why.
        message = SAVING_TIMED_OUT.format(timeout=late.timeout)
        _mark(outcome, description, "failed", message)
        bare = without_outputs(execution.notebook, f"**{message}**")
        return folder.save(bare, outcome, description, PlainPage(message)), message


def _save_interrupted(
    folder: TrialFolder, execution: Execution, outcome: dict[str, Any], description: dict[str, Any]
) -> Path:
    """The files written again, whole, for a trial interrupted once every step had run; a second interrupt
    leaves nothing unfinished."""
    _mark(outcome, description, "interrupted", INTERRUPTED_WHILE_SAVING)
    try:
        return folder.save(execution.notebook, outcome, description)
    except BaseException:
        folder.discard()
        raise


def _log_phases(started: float, saving: float, execution: Execution, kernel: dict[str, Any]) -> None:
    """For ``benchmarks/``: append where this trial's time went to ``$MITOSIS_PHASES`` (a JSON line)."""
    path = os.environ.get("MITOSIS_PHASES")
    if not path:
        return
    ended = time.monotonic()
    phases = {
        "notebook": execution_start(started, execution, saving),
        **(execution.phases or {}),
        "files and HTML": ended - saving,
    }
    try:
        with open(path, "a", encoding="utf-8") as stream:
            stream.write(json.dumps({"kernel": kernel.get("start"), "total": ended - started, "phases": phases}) + "\n")
    except OSError:
        pass


def execution_start(started: float, execution: Execution, saving: float) -> float:
    """Seconds from the trial's start to its kernel phase (building the notebook, the staging folder)."""
    return max(0.0, saving - started - execution.seconds)


def _unwritten(
    spec: TrialSpec, folder: TrialFolder, err: OSError, started: float, signal: int | None = None
) -> TrialOutcome:
    """The trial's own files could not be written (a full disk, a quota): a failure that frees the space."""
    folder.discard()
    where = f" ({err.filename})" if err.filename else ""
    reason = err.strerror.lower() if err.strerror else str(err)
    return TrialOutcome(
        spec=spec,
        key=folder.key,
        name=folder.name,
        passed=False,
        main=None,
        metrics={},
        folder=None,
        html=None,
        seconds=time.monotonic() - started,
        message=f"the trial's files could not be written: {reason}{where}. Its unfinished folder was removed; "
        "free some space (or fix the permissions) and run the trial again.",
        interrupted=signal,
    )
