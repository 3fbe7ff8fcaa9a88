"""What a trial store is: the ``TrialStore`` protocol, the records it takes and returns, its errors.

Collection, execution and the checks program against :class:`TrialStore`; the SQLite store
(:mod:`.sqlite`) is one implementation, and a plugin's ``pytest_mitosis_make_store`` may
return another. The lock-conflict message lives here because every backend must say the same
thing to the user, and so does :func:`dead`, what every backend and view means by a ``running``
record whose process is gone. The SQL both built-in backends share is in :mod:`.queries`.
No pytest import.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from ..core.errors import MitosisError
from ..core.processes import alive, machine, split_mark
from ..core.tree_text import difference, render
from ..identity.locks import Lock


def new_key() -> str:
    """A short random key: unique names for folders without any coordination between workers."""
    return secrets.token_hex(4)


class StoreError(MitosisError):
    """The store cannot be opened or written; the message names the file."""


class KeyTaken(MitosisError):
    """Another trial already has this key (32 random bits: rare, so the caller draws another)."""


class VariantRedefined(MitosisError):
    """A variant name (or a tracked eval expression) now means another value than when locked."""

    def __init__(self, message: str, short: str) -> None:
        super().__init__(message)
        #: one line for ``--mitosis-check``
        self.short = short


@dataclass(frozen=True)
class NewTrial:
    """A trial about to start, as the store records it."""

    key: str
    experiment: str
    identity: str
    variants: str
    slug: str
    nodeid: str
    debug: bool
    git: dict[str, Any]
    seed: int
    environment: dict[str, Any]
    steps: list[dict[str, Any]]
    params: list[dict[str, Any]]
    #: the key of the trial this one reproduces (``--mitosis-reproduce``)
    reproduces: str | None = None
    #: the key of the pytest session that ran it (the controller's, under xdist): see :class:`NewSession`
    session: str | None = None
    #: which way is better per metric, as it is judged (``Directions.to_json``): every view reads it back
    directions: dict[str, Any] | None = None


@dataclass(frozen=True)
class NewSession:
    """A ``pytest --mitosis`` session about to run trials, as the store records it.

    Written by the controller only (an xdist worker's trials carry the controller's key), so
    "the official run of 23 November" is one row with one key, whatever ran where.
    """

    key: str
    #: the command line as typed, any store password replaced by ``***``
    command: str
    commit: str | None
    dirty: bool
    debug: bool
    #: when the session started (``time.time()``; the row's writing when not given): the controller
    #: writes its row only once its workers are up, and the duration shown should be the whole session's
    started: float | None = None


@dataclass(frozen=True)
class Previous:
    """The latest finished, non-debug, passed trial of an identity (for the drift gate)."""

    key: str
    name: str
    main: Any
    metrics: dict[str, Any]
    #: its seed, so that the gate can say when the seed changed too
    seed: int | None = None
    #: its commit, so that ``--mitosis-resume`` can skip an identity that passed at the current one
    commit: str | None = None
    #: its environment record and parameter record, so that a failed gate can say what changed since
    environment: dict[str, Any] | None = None
    params: list[dict[str, Any]] | None = None
    #: it failed the drift gate, and ``accept`` made it the baseline
    accepted: bool = False


#: the fields of a trial's ``job`` (the batch job that ran it: :meth:`TrialStore.finish`), each with its type and
#: whether it may be ``None``: what every executor writes and every check (:mod:`..distributed.wire`) holds it to
JOB_FIELDS: dict[str, tuple[type, bool]] = {
    "executor": (str, False),  # "slurm"
    "job": (str, False),  # the job as the scheduler names it: "1234_5" (array job 1234, task 5)
    "array_job": (str, False),  # "1234"
    "task": (int, False),  # 5 (the array index, from 0)
    "node": (str, True),  # where it ran: "node01" (None: not known, e.g. it never started)
    "partition": (str, True),
    "allocation": (str, True),  # what the scheduler gave it: "cpu=1,mem=500M,node=1"
    "restarts": (int, False),  # how many times it was requeued (0: never)
    "state": (str, True),  # the scheduler's last state of it: "COMPLETED", "TIMEOUT", ...
}
#: the longest text of a job's field
JOB_TEXT = 200


def job_problem(job: Any) -> tuple[str, str, Any] | None:
    """Why ``job`` is not a trial's job as :data:`JOB_FIELDS` says, as ``(field, what was expected, what
    came)``; ``None`` when it is one (or is ``None``: a trial that ran in no batch job).

    Strings are one printable line of at most :data:`JOB_TEXT` characters (they are shown in
    terminals and pages), the ids never empty; integers are at least 0 and never booleans.
    """
    if job is None:
        return None
    if type(job) is not dict:
        return "job", "none or a JSON object", job
    missing, unknown = sorted(set(JOB_FIELDS) - set(job)), sorted(set(job) - set(JOB_FIELDS))
    if missing:
        return f"job.{missing[0]}", "a field of the job", None
    if unknown:
        return f"job.{unknown[0]}", f"only the fields {', '.join(sorted(JOB_FIELDS))}", unknown[0]
    for name, (kind, nullable) in JOB_FIELDS.items():
        value = job[name]
        if value is None and nullable:
            continue
        none = "none or " if nullable else ""
        if kind is int and (type(value) is not int or value < 0):
            return f"job.{name}", f"{none}an integer from 0", value
        if kind is str and (
            type(value) is not str or (not value and not nullable) or len(value) > JOB_TEXT or not value.isprintable()
        ):  # what Slurm may leave unknown may come empty too (sacct's empty column): a view shows neither
            size = "a" if nullable else "a non-empty"
            return f"job.{name}", f"{none}{size} string of at most {JOB_TEXT} printable characters", value
    return None


class TrialStore(Protocol):
    """What collection and execution need of a store; implement it to add a backend."""

    location: str

    def check_locks(self, locks: Sequence[Lock]) -> None:
        """Raise ``VariantRedefined`` if a lock holds another value (read only, before a kernel starts)."""

    def begin(self, trial: NewTrial, locks: Sequence[Lock]) -> int | None:
        """Atomically re-check and take ``locks`` and record ``trial`` as running; return its iteration."""

    def finish(
        self,
        key: str,
        *,
        status: str,
        main: Any,
        metrics: dict[str, Any],
        folder: str | None,
        message: str | None,
        verdict: str | None = None,
        job: dict[str, Any] | None = None,
    ) -> list[str]:
        """Finalise a trial's record; return warnings worth a researcher's attention. ``job``: the batch job
        that ran it (:data:`JOB_FIELDS`), ``None`` for a trial that ran in the session's own processes."""

    def next_iteration(self, experiment: str, identity: str) -> int:
        """The iteration the next trial of this identity would get (read only)."""

    def previous(self, experiment: str, identity: str, before: str | None = None) -> Previous | None:
        """The latest passed, non-debug trial of this identity, other than the trial ``before``."""

    def close(self) -> None:
        """Release the store."""


class SessionStore(Protocol):
    """What a store offers to record sessions (both built-in backends; optional for a plugin's store)."""

    def begin_session(self, session: NewSession) -> None:
        """Record ``session`` as running on this host and process; ``KeyTaken`` if its key is taken."""

    def end_session(self, key: str, exitstatus: int, changed: list[str] | None = None) -> None:
        """Record the end of the session and pytest's exit status (``2``: interrupted); ``changed``: the
        files of the investigation that were not the commit's when it ended (it started clean)."""

    def beat(self, kind: str, key: str, session: str | None, state: dict[str, Any]) -> None:
        """A running trial's (``kind="trial"``) or session's heartbeat, with its progress ``state``."""


def conflict_message(lock: Lock, stored_value: Any, stored_trial: str) -> str:
    if lock.kind == "expect":
        return (
            f"mitosis: experiment {lock.experiment!r}: its hypothesis was {render(stored_value)} when trial "
            f"{stored_trial} ran, and is now {render(lock.value)}. A hypothesis is declared before the trials that "
            "test it: declare the new one as a new experiment in [tool.mitosis.experiments], or run with --mitosis-debug."
        )
    what = (
        f"variant {lock.name!r} of parameter"
        if lock.kind == "lookup"
        else f"eval expression {lock.name!r} for parameter"
    )
    fix = (
        f"Give the new value a new variant name in {lock.where} (variant names are never reused), "
        if lock.kind == "lookup"
        else "Write the new value as a different expression, or mark the parameter untracked with a leading +, "
    )
    where = difference(stored_value, lock.value)
    return (
        f"mitosis: experiment {lock.experiment!r}, step {lock.step!r}: the {what} {lock.param!r} now means a "
        f"different value than in earlier trials.\n"
        f"  stored:    {render(stored_value)}   (locked by trial {stored_trial})\n"
        f"  attempted: {render(lock.value)}\n"
        f"  they differ at {where}\n"
        f"{fix}or run with --mitosis-debug."
    )


def raise_conflicts(locks: Sequence[Lock], stored: Callable[[Lock], Any]) -> None:
    """Raise one ``VariantRedefined`` naming *every* lock of ``locks`` that now means another value.

    ``stored(lock)`` is the store's row ``(fingerprint, value JSON, trial)`` for the lock, or ``None``:
    every backend says the same thing to the user.
    """
    messages: list[str] = []
    shorts: list[str] = []
    for lock in locks:
        row = stored(lock)
        if row is not None and row[0] != lock.fingerprint:
            stored_value = json.loads(row[1])
            what = (
                "the hypothesis"
                if lock.kind == "expect"
                else (
                    f"variant {lock.name!r} of {lock.step}.{lock.param}"
                    if lock.kind == "lookup"
                    else f"eval {lock.name!r} of {lock.step}.{lock.param}"
                )
            )
            was, now = render(stored_value, 40), render(lock.value, 40)
            short = f"{what} was {was} in {row[2]}, is now {now}"
            if was.endswith("...") or now.endswith("..."):  # cut texts may hide the change: say where it is
                short += f" (they differ at {difference(stored_value, lock.value)})"
            messages.append(conflict_message(lock, stored_value, row[2]))
            shorts.append(short)
    if messages:
        raise VariantRedefined("\n\n".join(messages), "; ".join(shorts))


def start(store: TrialStore, make: Any, locks: Sequence[Lock], key: str) -> tuple[str, int | None]:
    """``store.begin(make(key), locks)``, drawing a new key while the key is taken."""

    for _ in range(20):
        try:
            return key, store.begin(make(key), locks)
        except KeyTaken:
            key = new_key()
    raise StoreError(
        f"mitosis: 20 random trial keys in a row were already taken in {store.location}; the store's key column is "
        "probably not what pytest-mitosis wrote. Check the store, or point --mitosis-trials-folder at a new folder."
    )


#: what the next session on the same host records for a session whose process is gone without an end
DIED = "died"


#: seconds without a heartbeat after which a running trial or session of another machine is dead
#: (beats come every few seconds while a trial runs; saving a large notebook may pause them a while)
STALE = 120.0


def dead(pid: int, host: str, this_host: str, beat_machine: str | None, beat: float | None, now: float) -> bool:
    """Whether the process behind a ``running`` record is gone.

    With a heartbeat: on this machine (same boot, same pid namespace) the pid says so at once, and
    so does its start time where the beat carries one (``beat_machine`` is a
    :func:`~pytest_mitosis.core.processes.process_mark`): a pid the system gave to a later process
    is not the record's; elsewhere, a heartbeat older than :data:`STALE` does, whatever the host's
    name (two containers called alike never judge each other's pids). Without one (a record written
    before heartbeats, or in the instant between its insert and its first beat): the pid, on the same host.
    """
    if beat_machine is not None and beat is not None:
        where, started = split_mark(beat_machine)
        return not alive(pid, started) if where == machine() else now - beat > STALE
    return host == this_host and not alive(pid)


class NotAcceptable(MitosisError):
    """``accept KEY`` refused: the trial cannot become the drift gate's baseline (the message says why)."""


@dataclass(frozen=True)
class Acceptance:
    """A trial made the drift gate's baseline by ``python -m pytest_mitosis accept KEY``."""

    trial: str
    name: str
    accepted: float
    accepted_by: str
    accepted_host: str
    reason: str
    #: the baseline it replaced (the trial the gate had compared it with), if any
    baseline: str | None
    #: it had been accepted before this call (nothing was written)
    already: bool = False
