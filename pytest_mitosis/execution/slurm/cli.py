"""Slurm's command-line tools, the one place pytest-mitosis runs them: the array's script, submission, states, cancel.

Why the command-line tools (``sbatch --parsable``, ``scontrol show job -o``, ``sacct --parsable2``,
``scancel``) through :mod:`subprocess` rather than a library such as submitit: every Slurm cluster
has them on its login nodes, whatever its version; nothing is pickled across the shared
filesystem; and the job script is plain text a user can read, copy and resubmit with ``sbatch``.

Every value that goes into the script is checked first (:class:`SlurmError` naming the key, the
value and what is allowed): an ``#SBATCH`` line is parsed by sbatch, so a partition written as
``"x\\n#SBATCH --wrap=..."`` or with a space would otherwise change the job, not fail. A missing
command, one that does not answer, or one that refuses is a :class:`SlurmError` quoting Slurm's own
words, never a traceback.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ...config.slurm import SlurmResources
from ...core.errors import MitosisError

#: how long one Slurm command may take (a busy controller answers in well under a second; a dead
#: one makes the commands retry for their own ``MessageTimeout``)
TIMEOUT = 60.0

#: the states after which a task does not run again (unless someone requeues it)
FINISHED = frozenset(
    {
        "COMPLETED",
        "FAILED",
        "TIMEOUT",
        "CANCELLED",
        "OUT_OF_MEMORY",
        "NODE_FAIL",
        "PREEMPTED",
        "BOOT_FAIL",
        "DEADLINE",
        "REVOKED",
        "SPECIAL_EXIT",
    }
)

#: what Slurm writes for "no value" in ``scontrol``'s and ``sacct``'s fields
_EMPTY = frozenset({"", "(null)", "None", "none", "Unknown", "N/A", "n/a"})

#: what each resource may look like (what sbatch accepts, without anything that could end the line)
_PATTERNS = {
    "partition": (
        r"[A-Za-z0-9_.+\-]+(,[A-Za-z0-9_.+\-]+)*",
        "partition names (letters, digits, _ . + -), comma-separated",
    ),
    "time": (
        r"(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}|UNLIMITED|INFINITE)",
        'a Slurm time: "MM", "MM:SS", "HH:MM:SS", "D-HH", "D-HH:MM" or "D-HH:MM:SS"',
    ),
    "mem": (r"\d+[KMGT]?", 'a size such as "4000", "500M" or "16G"'),
    "gpus": (r"([A-Za-z0-9_.\-]+:)?\d+", 'a count, or type:count such as "a100:2"'),
    "account": (r"[A-Za-z0-9_.+\-]+", "an account name (letters, digits, _ . + -)"),
    "name": (r"[A-Za-z0-9_.+\-]+", "a job name (letters, digits, _ . + -)"),
}


class SlurmError(MitosisError):
    """A Slurm command could not be run or refused; the message names the command and quotes Slurm."""


def array_script(
    command: list[str],
    *,
    count: int,
    throttle: int | None,
    resources: SlurmResources,
    name: str,
    output: Path,
    workdir: Path,
) -> str:
    """The batch script of one array of ``count`` tasks, each running ``command`` with its index as last argument.

    At most ``throttle`` tasks run at once (``%N``). Each task's stdout and stderr go to
    ``<output>/<array job>_<index>.out``, appended to (``--open-mode=append``), so a requeued task
    keeps its first attempt's output. ``--requeue``: a task preempted, on a failed node, or
    requeued by an admin runs again rather than being lost (the caller records one trial per
    index, whatever the number of attempts). ``set -e`` before the setup lines: a ``module load``
    that fails stops the task instead of running it in the wrong environment. ``exec``: Slurm's
    signals (time limit, scancel) reach the command itself, not a shell waiting for it.
    """
    if not command:
        raise SlurmError("the Slurm job's command is empty: nothing to run in the array's tasks")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise SlurmError(f"a Slurm array needs at least one task, got count={count!r}")
    if throttle is not None and (isinstance(throttle, bool) or not isinstance(throttle, int) or throttle < 1):
        raise SlurmError(f"the array's throttle (tasks at once) must be a whole number of at least 1, got {throttle!r}")
    _check("name", name)
    for what, path in (("output", output), ("workdir", workdir)):
        _check_path(what, path)
    for arg in command:
        _single_line("the Slurm job's command", arg)
    limit = f"%{throttle}" if throttle is not None else ""
    lines = [
        "#!/bin/bash",
        f"#SBATCH --job-name={name}",
        f"#SBATCH --array=0-{count - 1}{limit}",
        f"#SBATCH --output={_sbatch_quote(str(output / '%A_%a.out'))}",
        f"#SBATCH --chdir={_sbatch_quote(str(workdir))}",
        "#SBATCH --requeue",
        "#SBATCH --open-mode=append",
    ]
    lines += [f"#SBATCH --{key}={value}" for key, value in _resource_options(resources)]
    for line in resources.sbatch:
        _single_line("[tool.mitosis.slurm] sbatch", line)
        text = line.strip()
        if not text.startswith("#SBATCH"):
            if not text.startswith("-"):
                raise SlurmError(
                    f"[tool.mitosis.slurm] sbatch: {text!r} is not an sbatch option: "
                    'write one option a line, such as "--qos=high" or "#SBATCH --qos=high"'
                )
            text = f"#SBATCH {text}"
        lines.append(text)
    lines += ["", "set -e"]
    for line in resources.setup:
        _single_line("[tool.mitosis.slurm] setup", line)
        if line.rstrip().endswith("\\"):
            raise SlurmError(
                f"[tool.mitosis.slurm] setup: {line!r} ends with a backslash, which would join it to the next "
                "line of the job script (the command itself); write each setup line whole"
            )
        lines.append(line)
    lines.append(" ".join(["exec", *(shlex.quote(arg) for arg in command), '"$SLURM_ARRAY_TASK_ID"']))
    return "\n".join(lines) + "\n"


def _resource_options(resources: SlurmResources) -> list[tuple[str, str]]:
    options = []
    for key in ("partition", "time", "mem", "gpus", "account"):
        value = getattr(resources, key)
        if value is not None:
            options.append((key, _check(key, value)))
    if resources.cpus is not None:
        cpus = resources.cpus
        if isinstance(cpus, bool) or not isinstance(cpus, int) or cpus < 1:
            raise SlurmError(f"[tool.mitosis.slurm] cpus: expected a whole number of at least 1, found {cpus!r}")
        options.append(("cpus-per-task", str(cpus)))
    return options


def _check(key: str, value: object) -> str:
    pattern, allowed = _PATTERNS[key]
    if not isinstance(value, str) or not re.fullmatch(pattern, value):
        where = "the Slurm job's name" if key == "name" else f"[tool.mitosis.slurm] {key}"
        raise SlurmError(f"{where}: {value!r} is not {allowed}; nothing was submitted")
    return value


def _single_line(where: str, value: object) -> None:
    if not isinstance(value, str) or any(c in value for c in "\n\r\0"):
        raise SlurmError(
            f"{where}: {value!r} must be one line of text "
            "(a line break would start a new line of the job script); nothing was submitted"
        )


def _check_path(what: str, path: Path) -> None:
    text = str(path)
    if not path.is_absolute() or any(c in text for c in '\n\r\0"%\\'):
        raise SlurmError(
            f"the Slurm job's {what} folder {text!r} must be an absolute path without line breaks, "
            "quotes, backslashes or % (sbatch reads % as a file name pattern); nothing was submitted"
        )


def _sbatch_quote(text: str) -> str:
    """A value on an ``#SBATCH`` line: sbatch splits them like a shell, so one with spaces is double-quoted."""
    return f'"{text}"' if any(c.isspace() or c in "'" for c in text) else text


def submit(script: Path, env: Mapping[str, str] | None = None) -> str:
    """``sbatch --parsable SCRIPT``: the array's job id (sbatch's own refusal as a :class:`SlurmError`)."""
    done = _run(["sbatch", "--parsable", str(script)], env)
    if done.returncode != 0:
        raise SlurmError(f"sbatch refused {script} (exit {done.returncode}): {_said(done)}")
    job = done.stdout.strip().splitlines()[-1].split(";")[0].strip() if done.stdout.strip() else ""
    if not job.isdigit():
        raise SlurmError(f"sbatch --parsable {script} answered {done.stdout.strip()!r}, not a job id")
    return job


def check(script: Path, env: Mapping[str, str] | None = None) -> None:
    """``sbatch --test-only SCRIPT``: Slurm's verdict on the array (a partition, an account, a memory or GPU
    request it would refuse) without submitting anything: asked before any trial's record is taken, so a
    refusal costs no iteration number and leaves no record."""
    done = _run(["sbatch", "--test-only", str(script)], env)
    if done.returncode != 0:
        raise SlurmError(f"sbatch refused {script} (exit {done.returncode}): {_said(done)}")


@dataclass(frozen=True)
class TaskState:
    """One task of an array as Slurm reports it (``None``: Slurm has no value for it, or not yet)."""

    job: str
    task: int
    #: Slurm's state: PENDING RUNNING COMPLETED FAILED TIMEOUT CANCELLED OUT_OF_MEMORY NODE_FAIL PREEMPTED ...
    state: str
    reason: str | None = None
    node: str | None = None
    partition: str | None = None
    #: how many times Slurm started the task again (requeue, preemption, node failure)
    restarts: int = 0
    #: ``"<exit code>:<signal>"``, e.g. ``"3:0"``
    exit_code: str | None = None
    time_limit: str | None = None
    #: the allocated TRES, e.g. ``"cpu=1,mem=100M,node=1"``
    allocation: str | None = None
    started: str | None = None
    ended: str | None = None

    @property
    def name(self) -> str:
        """``<job>_<task>``: how Slurm's commands name the task."""
        return f"{self.job}_{self.task}"

    def finished(self) -> bool:
        """True once the task will not run again by itself (it may still be requeued from outside)."""
        return self.state in FINISHED

    def explanation(self) -> str:
        """What happened to the task, in words a user reads in a failure or the progress line."""
        state, reason = self.state, self.reason
        code, signal = _exit(self.exit_code)
        if state == "PENDING":
            return f"pending ({reason})" if reason else "pending"
        if state == "RUNNING":
            return f"running on {self.node}" if self.node else "running"
        if state == "COMPLETED":
            return "completed"
        if state == "TIMEOUT":
            return f"time limit ({self.time_limit}) reached" if self.time_limit else "time limit reached"
        if state == "OUT_OF_MEMORY":
            return f"out of memory (allocated {self.allocation})" if self.allocation else "out of memory"
        if state == "NODE_FAIL":
            return f"node {self.node} failed" if self.node else "its node failed"
        if state == "PREEMPTED":
            return "preempted (another job took its resources)"
        if state == "CANCELLED":
            return "cancelled (scancel, or an administrator)"
        if state == "DEADLINE":
            return "its deadline passed before it could finish"
        if state == "BOOT_FAIL":
            return f"node {self.node} failed to boot" if self.node else "its node failed to boot"
        if state == "FAILED":
            if signal:
                return f"killed by signal {signal}"
            if code is not None:
                return f"exited with code {code}"
            return f"failed ({reason})" if reason else "failed"
        return f"{state.lower()} ({reason})" if reason else state.lower()


def _exit(exit_code: str | None) -> tuple[int | None, int]:
    try:
        code, _, signal = (exit_code or "").partition(":")
        return int(code), int(signal or 0)
    except ValueError:
        return None, 0


def states(job: str, env: Mapping[str, str] | None = None, *, count: int | None = None) -> dict[int, TaskState]:
    """Every task of array ``job`` Slurm knows, by index.

    ``scontrol show job -o JOB`` answers for pending, running and recently finished tasks (for
    ``MinJobAge`` after they end) in one snapshot, with all the fields squeue has and more
    (restarts, exit code, allocation), so a task that ends between two commands is never missed.
    Tasks it does not know (the job's record was purged; or, when ``count`` is given, indices
    missing from its answer) are asked of ``sacct`` (clusters with accounting); where ``sacct``
    has nothing either (no accounting, as on the test cluster) they are absent from the result,
    and the caller says Slurm no longer knows them.
    """
    _check_job(job)
    done = _run(["scontrol", "show", "job", "-o", job], env)
    found: dict[int, TaskState] = {}
    if done.returncode == 0:
        found = parse_scontrol(job, done.stdout)
    elif "invalid job id" not in _said(done).lower():
        raise SlurmError(f"scontrol show job {job} failed (exit {done.returncode}): {_said(done)}")
    wanted = set(range(count)) if count is not None else set()
    if not found or wanted - set(found):
        for task, state in _from_sacct(job, env).items():
            found.setdefault(task, state)
    return dict(sorted(found.items()))


def _check_job(job: str) -> None:
    if not isinstance(job, str) or not job.isdigit():
        raise SlurmError(f"{job!r} is not a Slurm job id (digits, as sbatch --parsable prints)")


#: a ``Key=`` at the start of a field of ``scontrol -o``'s line (keys may hold / : and _)
_KEY = re.compile(r"(?:^|\s)([A-Za-z][A-Za-z0-9_/:]*)=")


def parse_scontrol(job: str, text: str) -> dict[int, TaskState]:
    """``scontrol show job -o``'s lines (one a job record) as the tasks of array ``job``, by index."""
    found: dict[int, TaskState] = {}
    for line in text.splitlines():
        for state in _from_scontrol(_fields(line)):
            if state.job == job:
                found[state.task] = state
    return found


def _fields(line: str) -> dict[str, str]:
    """``scontrol show ... -o``'s ``Key=Value Key=Value`` line; a value may hold spaces and ``=``."""
    starts = list(_KEY.finditer(line))
    fields = {}
    for here, after in zip(starts, starts[1:] + [None]):
        end = after.start() if after is not None else len(line)
        fields[here.group(1)] = line[here.end() : end].strip()
    return fields


def _value(fields: Mapping[str, str], key: str) -> str | None:
    value = fields.get(key, "").strip()
    return None if value in _EMPTY else value


def _from_scontrol(fields: Mapping[str, str]) -> list[TaskState]:
    job = _value(fields, "ArrayJobId")
    tasks = _value(fields, "ArrayTaskId")
    state = (_value(fields, "JobState") or "UNKNOWN").split()[0]
    if job is None or tasks is None:
        return []
    started = state != "PENDING"
    try:
        restarts = int(fields.get("Restarts", "0"))
    except ValueError:
        restarts = 0
    return [
        TaskState(
            job=job,
            task=task,
            state=state,
            reason=_value(fields, "Reason"),
            node=_value(fields, "NodeList") if started else None,
            partition=_value(fields, "Partition"),
            restarts=restarts,
            exit_code=_value(fields, "ExitCode") if started else None,
            time_limit=_value(fields, "TimeLimit"),
            allocation=_value(fields, "TRES") if started else None,
            started=_value(fields, "StartTime") if started else None,
            ended=_value(fields, "EndTime") if state in FINISHED else None,
        )
        for task in expand(tasks)
    ]


#: the fields asked of sacct, in order (``--parsable2``: ``|``-separated, the last one free text); all in
#: sacct(1) of Slurm 22.05 (it has no ``--array``: pending tasks come as one ``77_[2-3%2]`` row, expanded)
_SACCT = ("JobID", "State", "NodeList", "Partition", "ExitCode", "Timelimit", "AllocTRES", "Start", "End", "Reason")


def sacct_argv(job: str) -> list[str]:
    """The ``sacct`` command asking for ``job``'s tasks (every attempt, no steps, ``|``-separated, no header)."""
    return [
        "sacct",
        "-j",
        job,
        "--allocations",
        "--duplicates",
        "--noheader",
        "--parsable2",
        f"--format={','.join(_SACCT)}",
    ]


def _from_sacct(job: str, env: Mapping[str, str] | None) -> dict[int, TaskState]:
    """The tasks accounting knows (every attempt, ``--duplicates``: the attempts before the last are restarts)."""
    done = _run(sacct_argv(job), env)
    if done.returncode != 0:  # no accounting here ("Slurm accounting storage is disabled"): nothing to add
        return {}
    return parse_sacct(job, done.stdout)


def parse_sacct(job: str, text: str) -> dict[int, TaskState]:
    """``sacct --parsable2`` rows of ``_SACCT``'s fields as tasks of ``job`` (the last attempt of each index)."""
    found: dict[int, TaskState] = {}
    attempts: dict[int, int] = {}
    for line in text.splitlines():
        parts = line.split("|", len(_SACCT) - 1)
        if len(parts) < len(_SACCT):
            continue
        row = dict(zip(_SACCT, parts))
        head, _, tasks = row["JobID"].partition("_")
        if head != job or not tasks:
            continue
        state = (_value(row, "State") or "UNKNOWN").split()[0]  # "CANCELLED by 0"
        for task in expand(tasks):
            attempts[task] = attempts.get(task, -1) + 1
            started = state != "PENDING"
            found[task] = TaskState(
                job=job,
                task=task,
                state=state,
                reason=_value(row, "Reason"),
                node=_value(row, "NodeList") if started else None,
                partition=_value(row, "Partition"),
                restarts=attempts[task],
                exit_code=_value(row, "ExitCode") if started else None,
                time_limit=_value(row, "Timelimit"),
                allocation=_value(row, "AllocTRES") if started else None,
                started=_value(row, "Start") if started else None,
                ended=_value(row, "End") if state in FINISHED else None,
            )
    return found


def expand(tasks: str) -> list[int]:
    """The indices of an array range as Slurm prints it: ``"3"``, ``"[2-5%2]"``, ``"1,4-9:2%3"`` -> ints."""
    text = tasks.strip().strip("[]").split("%")[0]
    indices: list[int] = []
    for part in filter(None, text.split(",")):
        span, _, step = part.partition(":")
        first, _, last = span.partition("-")
        try:
            low, high, stride = int(first), int(last or first), int(step or 1)
        except ValueError:
            continue
        indices.extend(range(low, high + 1, max(stride, 1)))
    return indices


def cancel(job: str, tasks: Iterable[int] | None = None, env: Mapping[str, str] | None = None) -> None:
    """``scancel`` the whole array, or some of its tasks; a job that already ended is not an error."""
    _check_job(job)
    names = [job] if tasks is None else [f"{job}_{int(task)}" for task in tasks]
    if not names:
        return
    done = _run(["scancel", *names], env)
    said = _said(done).lower()
    if done.returncode != 0 and not ("already completing or completed" in said or "invalid job id" in said):
        raise SlurmError(f"scancel {' '.join(names)} failed (exit {done.returncode}): {_said(done)}")


def _run(argv: list[str], env: Mapping[str, str] | None) -> subprocess.CompletedProcess[str]:
    """Run one Slurm command; missing or silent commands as a :class:`SlurmError`, never a traceback."""
    # a pending range such as "3-5,7,9-12%2" is cut to 64 characters unless told otherwise: tasks would be lost
    full = {**(env if env is not None else os.environ), "SLURM_BITSTR_LEN": "0"}
    try:
        return subprocess.run(
            argv,
            env=full,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        path = (env or os.environ).get("PATH", "")
        raise SlurmError(
            f"{argv[0]} not found on PATH: the Slurm executor runs where Slurm's commands are (a login node); "
            f"PATH is {path!r}"
        ) from None
    except subprocess.TimeoutExpired:
        raise SlurmError(
            f"{' '.join(argv)} did not answer within {TIMEOUT:.0f} s: is slurmctld up? "
            f"(scontrol ping says; SLURM_CONF={(env or os.environ).get('SLURM_CONF', '(unset)')})"
        ) from None
    except OSError as err:
        raise SlurmError(f"{argv[0]} could not be run: {err}") from None


def _said(done: subprocess.CompletedProcess[str]) -> str:
    """What a command said, one of its lines after another (its stderr, else its stdout), ``; `` between them."""
    text = done.stderr.strip() or done.stdout.strip() or "(it said nothing)"
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())
