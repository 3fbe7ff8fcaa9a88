"""Processes: whether one still exists, and finding and stopping the ones a kernel left behind.

A ``running`` record in the store and a kernel's private folder both carry the pid of the
pytest process that made them, and its start time (:func:`process_mark`); either is cleaned up
only once that process is gone. A pid alone could mislead: once a process ends, the system may
give its pid to a later one, which the start time tells apart.

A trial's kernel may start processes that outlive it: a step's ``Popen(..., start_new_session=True)``
leaves the kernel's process group, so stopping the group (what jupyter_client does) misses it,
and it would run on after the session, holding whatever descriptors it inherited. Each kernel's
environment carries a variable unique to it (see :mod:`..execution.launch`), which every process
it starts inherits whatever session or group it moves to: :func:`marked` finds them by reading
``/proc/<pid>/environ`` (the environment a process was started with, which later ``setenv``
calls do not change) of this user's processes, plus any process still in the kernel's session.
One scan of a few hundred processes costs a few milliseconds. A process started with an
environment of its own (``Popen(env={...})``) *and* outside the kernel's session is not found.
Linux only (``/proc``); elsewhere nothing is found and only the kernel's process group is stopped.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterable
from dataclasses import dataclass

#: how long processes asked to stop (SIGTERM) get before they are killed (SIGKILL)
GRACE = 2.0


def alive(pid: int, started: int | None = None) -> bool:
    """True while a process with this pid exists (also when it belongs to another user).

    With ``started`` (its :func:`start_time` when the pid was recorded), only while the pid is still that
    process: a later process given the same pid (pids are reused) is not it. Where the start time cannot be
    read (no ``/proc``, or another user's process hidden by ``hidepid``), the pid alone decides.
    """
    if started is not None:
        now = start_time(pid)
        if now is not None:
            return now == started
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def start_time(pid: int) -> int | None:
    """When ``pid`` started, in clock ticks after boot (``/proc/<pid>/stat`` field 22); ``None`` when it is
    gone or cannot be read. With the boot (:func:`machine`), it tells the process from a later one that gets
    the same pid."""
    stat = _stat(pid)
    return stat[2] if stat is not None else None


def pid_namespace() -> str:
    """This process's pid namespace (its inode): where a pid means something; ``""`` where there is none to
    tell (not Linux). Two containers on one machine, or sharing ``/tmp``, have pids of their own."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return ""


def machine() -> str:
    """What makes a pid meaningful: this boot of this kernel and this pid namespace.

    Two containers may share a host name (and a PostgreSQL store) but not their pids: a pid is
    checked with :func:`alive` only where the record's machine is this one; elsewhere a running
    record's heartbeat age says whether its process lives.
    """
    namespace = pid_namespace()
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as stream:
            boot = stream.read().strip()
    except OSError:
        boot = ""
    if not boot or not namespace:  # not Linux: the host name stands for the machine
        import socket

        return socket.gethostname()
    return f"{boot}:{namespace}"


#: between the machine and the start time in a :func:`process_mark`
_MARK = "/"


def process_mark(pid: int | None = None) -> str:
    """Which process ``pid`` (this one by default) is: ``<machine>/<start time>`` (:func:`machine`,
    :func:`start_time`), or the machine alone where the start time cannot be read.

    Stored where the machine alone was (the ``machine`` of a heartbeat): a session that knows only the
    machine finds it unlike its own and judges the record by its heartbeat's age, as for another
    machine; :func:`split_mark` reads both forms.
    """
    pid = os.getpid() if pid is None else pid
    started = start_time(pid)
    return machine() if started is None else f"{machine()}{_MARK}{started}"


def split_mark(mark: str) -> tuple[str, int | None]:
    """``(machine, start time or None)`` of a :func:`process_mark` (or of a machine alone)."""
    where, _, started = mark.rpartition(_MARK)
    if where and started.isdigit():
        return where, int(started)
    return mark, None


def scannable() -> bool:
    """Whether :func:`marked` can see processes here (``/proc``: Linux)."""
    return os.path.isdir("/proc/self")


@dataclass(frozen=True)
class Process:
    """A process found by :func:`marked`: its pid, its command line, and its start time.

    ``started`` (clock ticks after boot, ``/proc/<pid>/stat`` field 22) tells the process from a
    later one that got the same pid: no signal goes to a process that was not the one found.
    """

    pid: int
    command: str
    started: int


def _stat(pid: int) -> tuple[str, int, int] | None:
    """``(state, session, start time)`` of ``pid``, or ``None`` when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            fields = stream.read().rsplit(b")", 1)[1].split()
        return fields[0].decode(), int(fields[4]), int(fields[19])
    except (OSError, IndexError, ValueError):
        return None


def _command(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            words = stream.read().rstrip(b"\0").split(b"\0")
    except OSError:
        return "?"
    text = " ".join(w.decode(errors="replace") for w in words if w)
    return text if len(text) <= 300 else text[:297] + "..."


def marked(
    variable: str, value: str, session: int | None = None, exclude: Iterable[int] = (), since: int | None = None
) -> list[Process]:
    """This user's running processes whose environment holds ``variable=value``, or whose session
    is ``session``; never this process nor those in ``exclude``. Zombies have exited: not listed.

    ``since`` (a :func:`start_time`): only processes started then or later are looked at (a kernel's
    processes started after it): the environment of every older process is not read, which halves
    the files read in every trial's clean-up.
    """
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    needle = f"{variable}={value}".encode() + b"\0"
    skip = {os.getpid(), *exclude}
    found = []
    for name in names:
        if not name.isdigit() or int(name) in skip:
            continue
        pid = int(name)
        stat = _stat(pid)
        if stat is None or stat[0] in ("Z", "X") or (since is not None and stat[2] < since):
            continue
        if session is None or stat[1] != session:
            try:
                with open(f"/proc/{pid}/environ", "rb") as stream:
                    environ = stream.read()
            except OSError:  # another user's process, or gone
                continue
            if not (environ.startswith(needle) or b"\0" + needle in environ):
                continue
        found.append(Process(pid, _command(pid), stat[2]))
    return found


def running(pid: int, started: int | None = None) -> bool:
    """True while ``pid`` runs: exists and has not exited (a zombie waiting for its parent has); with
    ``started`` (its :func:`start_time`), only while it is that process. Where there is no ``/proc`` to tell,
    as :func:`alive`."""
    if not scannable():
        return alive(pid)
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X") and (started is None or stat[2] == started)


def _running(process: Process) -> bool:
    stat = _stat(process.pid)
    return stat is not None and stat[0] not in ("Z", "X") and stat[2] == process.started


def _signal(process: Process, signum: int) -> None:
    if _running(process):
        try:
            os.kill(process.pid, signum)
        except OSError:
            pass


def stop(processes: Iterable[Process], grace: float = GRACE) -> list[Process]:
    """Ask ``processes`` to stop (SIGTERM); kill (SIGKILL) those still running after ``grace`` seconds.

    Returns the ones that had to be killed. A process that ended meanwhile is left alone, and so
    is one whose pid now belongs to another process.
    """
    pending = list({p.pid: p for p in processes}.values())
    for process in pending:
        _signal(process, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while pending and time.monotonic() < deadline:
        pending = [p for p in pending if _running(p)]
        if pending:
            time.sleep(0.005)
    pending = [p for p in pending if _running(p)]
    for process in pending:
        _signal(process, signal.SIGKILL)
    return pending
