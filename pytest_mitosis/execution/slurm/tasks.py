"""The files between a session and its Slurm jobs, in one folder per job array under the trials folder.

``<trials>/.slurm/<array>/``:

- ``job.sh``: the array's script (``sbatch`` reads it; a user can read it, and resubmit it by hand);
- ``tasks/<i>.json``: what task ``i`` runs (the trial's key, name, its notebook with every cell, where its
  files go, the files its code is checked against), written by the session before it submits;
- ``progress/<i>.json``: how task ``i`` goes (phase, step, last line printed, node), replaced about every
  second by the job;
- ``outcomes/<i>.json``: how task ``i`` ended, written once by the job, whole (a temporary name, then a
  rename), after the trial's folder is in place;
- ``logs/<job>_<i>.out``: what Slurm caught of the task's output.

Only JSON crosses: the session never unpickles or runs anything a job wrote. A job's files are
read like a remote worker's messages: sizes bounded, every field typed, the trial's folder and
page computed by the session from its own record, never taken from the file. No pytest import.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

#: the trials folder's subfolder of job arrays
SLURM_FOLDER = ".slurm"
#: the largest JSON file read from a job (a long metric series fits; a runaway file does not)
MAX_BYTES = 64 << 20
#: the longest message, line or path taken from a job's file
MAX_TEXT = 1 << 20
_SIGNALS = (2, 15)  # SIGINT, SIGTERM: what interrupts a trial
_NODE = re.compile(r"[A-Za-z0-9_.-]{1,200}\Z")


class TaskFileError(Exception):
    """A task's file is not what our job writes: the file, the field, what was expected and found."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    """``data`` at ``path``, whole or not at all (a job killed while writing leaves no half file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, default=repr), encoding="utf-8")
    os.replace(tmp, path)


def read_json(path: Path) -> dict[str, Any] | None:
    """The JSON object at ``path``; ``None`` when there is none yet; ``TaskFileError`` when it is not one."""
    try:
        with path.open("rb") as stream:
            raw = stream.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as err:
        raise TaskFileError(f"{path}: cannot be read ({err.strerror})") from None
    if len(raw) > MAX_BYTES:
        raise TaskFileError(f"{path}: larger than {MAX_BYTES >> 20} MB; our job writes far less")
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise TaskFileError(f"{path}: not JSON ({err})") from None
    if not isinstance(data, dict):
        raise TaskFileError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


@dataclass(frozen=True)
class ArrayFolder:
    """One job array's folder."""

    path: Path

    @property
    def script(self) -> Path:
        return self.path / "job.sh"

    @property
    def logs(self) -> Path:
        return self.path / "logs"

    def request(self, task: int) -> Path:
        return self.path / "tasks" / f"{task}.json"

    def progress(self, task: int) -> Path:
        return self.path / "progress" / f"{task}.json"

    def outcome(self, task: int) -> Path:
        return self.path / "outcomes" / f"{task}.json"

    def log(self, job: str, task: int) -> Path:
        return self.logs / f"{job}_{task}.out"

    def forget(self, task: int) -> None:
        """A rerun of the task (Slurm requeued it): what an earlier attempt wrote goes."""
        self.outcome(task).unlink(missing_ok=True)
        self.progress(task).unlink(missing_ok=True)


@dataclass(frozen=True)
class Request:
    """What one task runs: a trial whose record the session took, with its notebook built by the session."""

    key: str
    name: str
    nodeid: str
    experiment: str
    #: ``{"name", "function", "lookup", "chained"}`` per step (the labels of the trial's messages)
    steps: list[dict[str, Any]]
    #: the notebook (nbformat's JSON), every cell written by the session
    notebook: dict[str, Any]
    root: str
    trials: str
    timeout: float | None
    max_output: int
    debug: bool
    seed: int
    #: what the trial's notebook and ``trial.yaml`` say about it (its record's fields)
    metadata: dict[str, Any]
    #: the commit the job's code must match (``{"worktree", "commit", "own", "ignore", "files"}``); ``None``
    #: in debug mode or for a tree that was dirty (nothing to compare with)
    check: dict[str, Any] | None = None
    #: the kernel's start: "spawn" (one trial per job: a warm parent would not pay)
    kernel: str = "spawn"
    version: int = field(default=1)

    def write(self, path: Path) -> None:
        write_json(path, asdict(self))

    @classmethod
    def read(cls, path: Path) -> Request:
        data = read_json(path)
        if data is None:
            raise TaskFileError(f"{path}: missing (the session writes it before it submits the array)")
        names = {f for f in cls.__dataclass_fields__}
        if set(data) != names or data.get("version") != 1:
            raise TaskFileError(f"{path}: not a task of this version of pytest-mitosis (fields {sorted(data)})")
        return cls(**data)


def _text(path: Path, name: str, value: Any, limit: int = MAX_TEXT, optional: bool = True) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise TaskFileError(f"{path}: {name}: expected a text of at most {limit} characters, found {value!r:.80}")
    return value


@dataclass(frozen=True)
class JobOutcome:
    """How a task ended, as its job wrote it, checked field by field."""

    key: str
    passed: bool
    main: Any
    metrics: dict[str, Any]
    message: str | None
    seconds: float
    #: the signal that stopped the trial in the job (Slurm's SIGTERM at a time limit or ``scancel``)
    interrupted: int | None
    #: the files of the modules its kernel imported (checked against the commit by the job itself)
    sources: tuple[str, ...]
    #: the files that were not the commit's (the job's check failed), or ``None``
    code_changed: str | None
    #: whether the trial's folder is in place (not when its files could not be written)
    written: bool
    node: str | None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sources"] = list(self.sources)
        return data

    @classmethod
    def read(cls, path: Path, key: str) -> JobOutcome | None:
        """The outcome at ``path`` for the trial ``key``; ``None`` when the job wrote none (yet)."""
        data = read_json(path)
        if data is None:
            return None
        names = set(cls.__dataclass_fields__)
        if set(data) != names:
            raise TaskFileError(f"{path}: expected the fields {sorted(names)}, found {sorted(data)}")
        if data["key"] != key:
            raise TaskFileError(f"{path}: key: expected {key} (the trial this task runs), found {data['key']!r:.40}")
        for flag in ("passed", "written"):
            if not isinstance(data[flag], bool):
                raise TaskFileError(f"{path}: {flag}: expected true or false, found {data[flag]!r:.40}")
        if not isinstance(data["metrics"], dict):
            raise TaskFileError(f"{path}: metrics: expected an object, found {data['metrics']!r:.80}")
        seconds = data["seconds"]
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or not 0 <= seconds < 1e9:
            raise TaskFileError(f"{path}: seconds: expected a duration, found {seconds!r:.40}")
        if data["interrupted"] not in (None, *_SIGNALS):
            raise TaskFileError(f"{path}: interrupted: expected 2, 15 or null, found {data['interrupted']!r:.40}")
        sources = data["sources"]
        if not isinstance(sources, list) or len(sources) > 100_000:
            raise TaskFileError(f"{path}: sources: expected a list of paths, found {sources!r:.80}")
        node = _text(path, "node", data["node"], 200)
        if node is not None and not _NODE.match(node):
            raise TaskFileError(f"{path}: node: expected a host name, found {node!r:.80}")
        return cls(
            key=key,
            passed=data["passed"],
            main=data["main"],
            metrics=data["metrics"],
            message=_text(path, "message", data["message"]),
            seconds=float(seconds),
            interrupted=data["interrupted"],
            sources=tuple(str(_text(path, "sources", s, 4096, optional=False)) for s in sources),
            code_changed=_text(path, "code_changed", data["code_changed"]),
            written=data["written"],
            node=node,
        )


def read_progress(path: Path) -> dict[str, Any] | None:
    """A running task's state for the progress line and ``status``: short texts and a number, nothing else."""
    try:
        data = read_json(path)
    except TaskFileError:
        return None  # a progress file is a courtesy: an unreadable one shows nothing, the outcome decides
    if data is None:
        return None
    state: dict[str, Any] = {}
    for name in ("phase", "step", "line", "node"):
        value = data.get(name)
        if isinstance(value, str):
            state[name] = value[:200]
    elapsed = data.get("elapsed")
    if isinstance(elapsed, (int, float)) and not isinstance(elapsed, bool):
        state["elapsed"] = float(elapsed)
    return state


def remove_trial_files(trials: Path, staging: Path, final: Path) -> None:
    """An earlier attempt's folders of a requeued task (both inside ``trials``), before it runs again."""
    root = trials.resolve()
    for folder in (staging, final):
        resolved = folder.resolve()
        if resolved != root and root in resolved.parents:
            shutil.rmtree(resolved, ignore_errors=True)
