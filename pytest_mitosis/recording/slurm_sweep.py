"""A session's trials as Slurm job arrays: records taken, arrays submitted, tasks awaited and recorded here.

``--mitosis-executor=slurm``. Before the first trial, the session takes every selected trial's
record exactly as it would for a local run (its iteration and variant locks, atomically in the
store), builds its notebook, and writes one task file per trial (:mod:`..execution.slurm.tasks`);
each experiment's trials (each set of equal resources) then go to Slurm as **one job array**,
throttled with ``%N``. pytest's items then run in order: each waits for its task, reads what the
job wrote and records it (the drift gate, the hypothesis, the store's row) as if it had run here:
the same record, notebook, page, ``history``, report and junit XML, plus the job in the record.

Slurm decides how a task ended. A job that Slurm ended (time limit, out of memory, node failure,
preemption, ``scancel`` from outside) is recorded ``failed`` with Slurm's reason; a requeued task
keeps one record (its last attempt's outcome); a task that has not started is shown ``pending``
with Slurm's reason. When the session stops early (Ctrl-C, SIGTERM, ``-x``, the code changed), it
cancels its tasks that have not ended, waits a little for their notebooks, and records each:
what finished as it ended, the rest ``interrupted``. No pytest import.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..core.errors import TrialFailed
from ..execution.runner import TrialOutcome
from ..execution.slurm.tasks import SLURM_FOLDER, ArrayFolder, JobOutcome, Request, TaskFileError, read_progress
from .trial import Begun, begin_trial, conclude_trial, finish_unfinished, trial_metadata

if TYPE_CHECKING:
    from ..config.project import ProjectConfig
    from ..config.settings import Settings
    from ..config.slurm import SlurmResources
    from ..config.variants import TrialSpec
    from ..execution.slurm.cli import TaskState
    from ..identity.trial import TrialIdentity
    from ..store import TrialStore

#: Slurm's states of a task that ended because Slurm ended it (not the trial's own doing)
KILLED = ("TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "PREEMPTED", "CANCELLED", "BOOT_FAIL", "DEADLINE")
#: seconds between two questions to Slurm about the session's arrays
POLL = 1.0
#: seconds the session waits, once it cancelled its tasks, for their jobs to save what they ran
CANCEL_WAIT = 10.0
#: the job's command (Slurm appends the task's index)
JOB_MODULE = "pytest_mitosis.recording.slurm_job"


@dataclass
class Task:
    """One trial of an array: its record (taken), where it is in Slurm, and its outcome once recorded."""

    nodeid: str
    spec: TrialSpec
    identity: TrialIdentity
    begun: Begun
    array: ArrayFolder
    index: int
    job: str | None = None
    state: TaskState | None = None
    outcome: TrialOutcome | None = None
    #: when its progress was last passed on (the heartbeat's pace, not every poll)
    told: float = 0.0
    #: why its outcome could not be recorded (the store was away: the outcome waits in the trials folder)
    lost: str | None = None
    #: how many polls in a row saw it finished: a task is recorded after two (a requeue passes through states
    #: that look final for a moment, and its first attempt's outcome must not be taken for the last)
    settled: int = 0


class SlurmSweep:
    """The session's Slurm arrays and their tasks, in the order pytest runs the items."""

    def __init__(
        self,
        *,
        store: TrialStore,
        project: ProjectConfig,
        settings: Settings,
        environment: dict[str, Any],
        seed: int,
        session: str,
        check: dict[str, Any] | None,
        progress: Callable[[str, str, str, dict[str, Any]], None] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.store = store
        self.project = project
        self.settings = settings
        self.environment = environment
        self.seed = seed
        self.session = session
        self.check = check
        self.progress = progress
        self.env = env
        self.tasks: dict[str, Task] = {}
        self.refused: dict[str, str] = {}
        self.arrays: list[tuple[str, ArrayFolder]] = []
        self._polled = 0.0

    # -- submission ---------------------------------------------------------------------------------

    def submit(self, trials: list[tuple[str, TrialSpec, TrialIdentity]]) -> None:
        """Take each trial's record, write its task, and submit each group of equal resources as one array."""
        groups: dict[SlurmResources, list[tuple[str, TrialSpec, TrialIdentity]]] = {}
        for nodeid, spec, identity in trials:
            groups.setdefault(self.project.slurm_of(spec.experiment, self.settings.slurm), []).append(
                (nodeid, spec, identity)
            )
        root = self.project.trials_folder / SLURM_FOLDER
        for number, (resources, members) in enumerate(groups.items()):
            self._submit_array(ArrayFolder(root / f"{self.session}-{number}"), resources, members)

    def _submit_array(
        self, array: ArrayFolder, resources: SlurmResources, members: list[tuple[str, TrialSpec, TrialIdentity]]
    ) -> None:
        from ..execution.runner import build_notebook
        from ..execution.slurm import cli

        verdict = self._check(array, resources, members)
        if verdict is not None:  # nothing taken: no record, no iteration number
            for nodeid, _, _ in members:
                self.refused[nodeid] = verdict
            return
        tasks: list[Task] = []
        for nodeid, spec, identity in members:
            try:
                begun = begin_trial(
                    spec,
                    identity,
                    nodeid=nodeid,
                    store=self.store,
                    settings=self.settings,
                    environment=self.environment,
                    seed=self.seed,
                    session=self.session,
                )
            except TrialFailed as err:
                self.refused[nodeid] = str(err)
                continue
            task = Task(nodeid, spec, identity, begun, array, len(tasks))
            metadata = trial_metadata(
                spec, identity, begun, project=self.project, settings=self.settings, environment=self.environment
            )
            settings = self.settings
            nb = build_notebook(
                spec,
                self.project.trials_folder,
                begun.key,
                begun.name,
                debug=settings.debug,
                seed=self.seed,
                metadata=metadata,
                max_output=settings.max_cell_output,
            )
            request = Request(
                key=begun.key,
                name=begun.name,
                nodeid=nodeid,
                experiment=spec.experiment,
                steps=[{**recorded, "chained": s.chained} for recorded, s in zip(begun.steps, spec.steps)],
                notebook=dict(nb),
                root=str(self.project.cwd),
                trials=str(self.project.trials_folder),
                timeout=settings.timeout,
                max_output=settings.max_cell_output,
                debug=settings.debug,
                seed=self.seed,
                metadata=metadata,
                check=self.check,
            )
            try:
                request.write(array.request(task.index))
            except OSError as err:  # a full disk, a quota: this trial is refused, its record finished
                self._refuse([task], f"its Slurm task could not be written to {array.path}: {err.strerror or err}")
                continue
            tasks.append(task)
        if not tasks:
            return
        refusal: str | None = None
        try:
            array.script.write_text(self._script(array, resources, tasks[0].spec.experiment, len(tasks)), "utf-8")
            job = cli.submit(array.script, env=self.env)
        except cli.SlurmError as err:
            refusal = f"Slurm refused the job array ({resources.describe()}): {err}"
        except OSError as err:
            refusal = f"the job array's script could not be written to {array.script}: {err.strerror or err}"
        if refusal is not None:  # outside the except block: no "during handling" chain
            self._refuse(tasks, refusal)
            return
        self.arrays.append((job, array))
        for task in tasks:
            task.job = job
            self.tasks[task.nodeid] = task

    def _script(self, array: ArrayFolder, resources: SlurmResources, experiment: str, count: int) -> str:
        """The array's job script (:func:`..execution.slurm.cli.array_script`), its logs' folder made."""
        from ..execution.slurm import cli

        array.logs.mkdir(parents=True, exist_ok=True)
        return cli.array_script(
            [sys.executable, "-m", JOB_MODULE, str(array.path)],
            count=count,
            throttle=resources.throttle,
            resources=resources,
            name=f"mitosis-{experiment}"[:64],
            output=array.logs,
            workdir=self.project.cwd,
        )

    def _check(
        self, array: ArrayFolder, resources: SlurmResources, members: list[tuple[str, TrialSpec, TrialIdentity]]
    ) -> str | None:
        """Why Slurm would refuse this array (``sbatch --test-only``), before any record is taken; ``None``: it
        would take it."""
        from ..execution.slurm import cli

        try:
            array.script.parent.mkdir(parents=True, exist_ok=True)
            array.script.write_text(self._script(array, resources, members[0][1].experiment, len(members)), "utf-8")
            cli.check(array.script, env=self.env)
        except cli.SlurmError as err:
            return f"Slurm refuses the job array ({resources.describe()}): {err}"
        except OSError as err:
            return f"the job array's script could not be written to {array.script}: {err.strerror or err}"
        return None

    def _refuse(self, tasks: list[Task], why: str) -> None:
        """Trials whose records were taken but that cannot run: their records finished ``failed``, saying why."""
        for task in tasks:
            finish_unfinished(self.store, self.project.trials_folder, task.begun, why)
            self.refused[task.nodeid] = why

    def describe(self) -> str:
        """The plan line's Slurm part: the arrays submitted, their sizes."""
        sizes: dict[str, int] = {}
        for task in self.tasks.values():
            sizes[str(task.job)] = sizes.get(str(task.job), 0) + 1
        arrays = ", ".join(f"job {job} ({n} trial{'s' if n != 1 else ''})" for job, n in sizes.items())
        return f"submitted to Slurm as {arrays}" if arrays else "nothing submitted to Slurm"

    # -- waiting ------------------------------------------------------------------------------------

    def wait(self, nodeid: str) -> TrialOutcome:
        """Wait until the trial's task is recorded; ``TrialFailed`` when Slurm or the store refused it.

        While it waits, every task of the session that ended is recorded as soon as Slurm says so, in
        whatever order they end: the store (``status``, ``history``, a colleague's report) never shows a
        trial running that has ended, and a session killed outright has recorded all it saw end.
        """
        if nodeid in self.refused:
            raise TrialFailed(self.refused[nodeid])
        task = self.tasks[nodeid]
        outcome_file = task.array.outcome(task.index)
        while task.outcome is None and task.lost is None:
            if task.settled == 0 and outcome_file.exists() and time.monotonic() - self._polled >= 0.2:
                self._polled = 0.0  # the job wrote its outcome: ask Slurm now rather than at the next poll
            self._poll()
            for ended in [t for t in self.tasks.values() if t.outcome is None and t.lost is None and t.settled >= 2]:
                try:
                    ended.outcome = self._record(ended)
                except TrialFailed as err:  # the store is away: conclude_trial kept the outcome in the trials folder
                    ended.lost = str(err)
            if task.outcome is None and task.lost is None:
                time.sleep(0.1)
        if task.lost is not None:
            raise TrialFailed(task.lost)
        assert task.outcome is not None
        return task.outcome

    def _poll(self) -> None:
        """Ask Slurm about every array with tasks not yet recorded (at most once a ``POLL``), pass on progress."""
        now = time.monotonic()
        if now - self._polled < POLL:
            return
        self._polled = now
        from ..execution.slurm import cli

        for job, _ in self.arrays:
            waiting = [t for t in self.tasks.values() if t.job == job and t.outcome is None]
            if not waiting:
                continue
            try:
                states = cli.states(job, count=sum(1 for t in self.tasks.values() if t.job == job), env=self.env)
            except cli.SlurmError:
                continue  # Slurm's controller may be busy or restarting: the next poll asks again
            for task in waiting:
                found = states.get(task.index)
                if found is not None:
                    same = task.state is not None and task.state.restarts == found.restarts
                    task.settled = task.settled + 1 if found.finished() and same else int(found.finished())
                    if task.settled == 1 and found.state == "COMPLETED" and self._ran_whole(task):
                        task.settled = 2  # its job ended by itself after its outcome: no requeue passes through that
                    task.state = found
                self._tell(task, now)

    def _ran_whole(self, task: Task) -> bool:
        """Whether the task's job wrote an outcome of a trial that ran to its end (not one a signal stopped, as
        the first attempt of a requeued task's is)."""
        try:
            wrote = JobOutcome.read(task.array.outcome(task.index), task.begun.key)
        except TaskFileError:
            return False
        return wrote is not None and wrote.interrupted is None

    def _tell(self, task: Task, now: float) -> None:
        """A waiting task's state, at the heartbeat's pace: pending (with Slurm's reason) or how it runs."""
        if self.progress is None or task.state is None or now - task.told < self.settings.heartbeat_every:
            return
        task.told = now
        state = task.state
        label = f"{state.job}_{state.task}"
        if state.state == "PENDING" or state.state == "REQUEUED":
            told: dict[str, Any] = {"phase": "pending", "reason": state.reason or "queued", "job": label}
        elif state.finished():
            return
        else:
            told = read_progress(task.array.progress(task.index)) or {"phase": "kernel start"}
            told.setdefault("node", state.node or "")
            told["job"] = label
        self.progress(task.nodeid, task.begun.key, task.begun.name, told)

    # -- recording ----------------------------------------------------------------------------------

    def _record(self, task: Task, interrupted: str | None = None) -> TrialOutcome:
        """The task's outcome, judged and recorded (``interrupted``: why the session stopped it)."""
        outcome = self._outcome(task, interrupted)
        return conclude_trial(
            outcome,
            task.spec,
            task.identity,
            task.begun,
            store=self.store,
            project=self.project,
            settings=self.settings,
            environment=self.environment,
            seed=self.seed,
            job=self._job(task),
            ended=self._ended(task),
        )

    def _ended(self, task: Task) -> float | None:
        """When the trial ended in its job (its outcome file written), for the record; ``None``: now."""
        try:
            return task.array.outcome(task.index).stat().st_mtime
        except OSError:
            return None

    def _job(self, task: Task) -> dict[str, Any]:
        state = task.state
        return {
            "executor": "slurm",
            "job": f"{task.job}_{task.index}",
            "array_job": str(task.job),
            "task": task.index,
            "node": state.node if state is not None else None,
            "partition": state.partition if state is not None else None,
            "allocation": state.allocation if state is not None else None,
            "restarts": state.restarts if state is not None else 0,
            "state": state.state if state is not None else None,
        }

    def _outcome(self, task: Task, interrupted: str | None) -> TrialOutcome:
        """What the job wrote, checked, with Slurm's word on how the job ended."""
        from ..execution.artifacts import TrialFolder

        begun = task.begun
        files = TrialFolder(self.project.trials_folder, begun.key, begun.name, self.settings.debug)
        problem = None
        try:
            wrote = JobOutcome.read(task.array.outcome(task.index), begun.key)
        except TaskFileError as err:
            wrote, problem = None, f"its outcome file is not one our job writes: {err}"
        folder = files.final if wrote is not None and wrote.written and files.final.is_dir() else None
        passed, signum, message = self._verdict(task, wrote, interrupted, problem)
        if wrote is not None and wrote.code_changed is not None:
            self.code_moved = wrote.code_changed
        if message is not None and folder is not None and "notebook: " not in message:
            message = f"{message}\n\nnotebook: {files.html}"
        return TrialOutcome(
            spec=task.spec,
            key=begun.key,
            name=begun.name,
            passed=passed,
            main=wrote.main if wrote is not None else None,
            metrics=dict(wrote.metrics) if wrote is not None else {},
            folder=folder,
            html=files.html if folder is not None else None,
            seconds=wrote.seconds if wrote is not None else 0.0,
            message=message,
            interrupted=signum,
            sources=wrote.sources if wrote is not None else (),
        )

    def _verdict(
        self, task: Task, wrote: JobOutcome | None, interrupted: str | None, problem: str | None
    ) -> tuple[bool, int | None, str | None]:
        """``(passed, the signal that stopped the session, message)``: a trial that ran to its end in its job is
        recorded as it ended (a cancel that came later changes nothing); otherwise the session's stop, Slurm's
        end of the job, a job that wrote nothing, or a signal from outside, in that order."""
        if wrote is not None and wrote.interrupted is None:
            return wrote.passed, None, wrote.message
        state = task.state
        label = f"job {task.job}_{task.index}" + (f" on {state.node}" if state is not None and state.node else "")
        said = f" ({wrote.message.splitlines()[0]})" if wrote is not None and wrote.message else ""
        if interrupted is not None:
            return False, int(signal.SIGINT), f"{interrupted}: its Slurm {label} was cancelled{said}"
        if state is not None and state.state in KILLED:
            details = f"\n\n{wrote.message}" if wrote is not None and wrote.message else ""
            return False, None, f"Slurm ended its {label}: {state.explanation()}{details}"
        if wrote is None:
            how = state.explanation() if state is not None else "Slurm no longer knows it"
            return (
                False,
                None,
                (
                    f"its Slurm {label} ended ({how}) without an outcome: {problem or 'the job did not get that far'}. "
                    f"Its output: {task.array.log(str(task.job), task.index)}"
                ),
            )
        name = signal.Signals(wrote.interrupted).name if wrote.interrupted else "a signal"
        message = f"its Slurm {label} was stopped by {name} from outside this session"  # a failure, not a stop
        return False, None, message + (f": {wrote.message}" if wrote.message else "")

    #: the stop message of a job that found the code changed (the session stops, as a local one does)
    code_moved: str | None = None

    # -- stopping -----------------------------------------------------------------------------------

    def stop(self, why: str) -> list[TrialOutcome]:
        """Cancel every task not yet recorded, wait a little for their jobs to save, record each; the outcomes.

        A task that ended before the cancellation is recorded as it ended; the others ``interrupted``
        (``why`` says what stopped the session). A second Ctrl-C stops the waiting, not the recording.
        """
        from ..execution.slurm import cli

        left = [t for t in self.tasks.values() if t.outcome is None]
        if not left:
            return []
        for job, _ in self.arrays:
            try:
                cli.cancel(job, [t.index for t in left if t.job == job], env=self.env)
            except cli.SlurmError:
                pass  # the tasks are recorded interrupted all the same; the log says what Slurm said
        deadline = time.monotonic() + CANCEL_WAIT
        try:
            while time.monotonic() < deadline and any(t.settled < 2 for t in left):
                self._polled = 0.0
                self._poll()
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
        recorded = []
        for task in left:
            try:
                task.outcome = self._record(task, why)
            except TrialFailed:
                continue  # the store is away: the outcome is kept in the trials folder (conclude_trial did)
            recorded.append(task.outcome)
        return recorded
