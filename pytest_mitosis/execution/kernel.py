"""Execute a trial notebook in a fresh Jupyter kernel on pytest's own interpreter.

The kernel is started from ``sys.executable`` (never whatever a ``python3`` kernelspec points
to), talks over IPC sockets in a private temporary directory (no TCP port another local user
could reach for its channels, and no "unencrypted TCP" warning), runs in the investigation's
directory, and is always shut down. The executed notebook is returned whatever happened, so
it can be saved.

nbclient is used for what it is good at (executing one cell and collecting its outputs), not
for the kernel's life or for signals: its ``execute`` installs SIGINT/SIGTERM handlers that
shut the kernel down and turn a Ctrl-C into "kernel died", registers an ``atexit`` callback
per trial, and never closes the channels of a kernel it did not start (12 descriptors and a
thread per trial). Here one coroutine runs the cells; SIGINT and SIGTERM cancel it, and
:func:`execute` reports ``kind="interrupted"`` so the caller records the trial and stops.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import ensure_event_loop, run_sync
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from ..core.processes import alive
from .forkserver import ForkFailed
from .logs import quiet

STARTUP_TIMEOUT = 60.0
#: longest wait for a kernel's sockets before its client connects anyway (see :meth:`Launched.ready`)
_BIND_WAIT = 10.0
_QUIET = quiet("kernel")
#: prefix of each kernel's private folder (sockets, connection file); the pid says whose it is
_PRIVATE_PREFIX = "mitosis-kernel-"
#: a Unix socket's path holds at most 107 bytes (sun_path); the kernel adds "/kernel-NN" to the folder
_SOCKET_PATH_MAX = 100


def private_base() -> str:
    """Where kernels' private folders go: ``$TMPDIR``, or ``/tmp`` when ``$TMPDIR`` is so deep that
    the kernel's socket paths would not fit in a Unix socket address."""
    base = tempfile.gettempdir()
    longest = os.path.join(base, f"{_PRIVATE_PREFIX}{os.getpid()}-xxxxxxxx", "kernel-xx")
    if len(os.fsencode(longest)) > _SOCKET_PATH_MAX and os.path.isdir("/tmp") and os.access("/tmp", os.W_OK):
        return "/tmp"
    return base


def kernel_env() -> dict[str, str]:
    """The environment a kernel starts with: pytest's, with the kernel spec's additions."""
    return {**os.environ, **_KERNEL_ENV}


#: added to every kernel's environment (debugpy's warning about frozen modules is noise in a notebook)
_KERNEL_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}


class _SameInterpreterKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel is ``sys.executable -m ipykernel_launcher``."""

    @property
    def kernel_spec(self) -> KernelSpec:
        return KernelSpec(
            # No IPython history: it would write every trial's cells into ~/.ipython, outside the
            # trials folder, in one database shared by every kernel of every session.
            argv=[
                sys.executable,
                "-Xfrozen_modules=off",
                "-m",
                "ipykernel_launcher",
                "-f",
                "{connection_file}",
                "--HistoryManager.enabled=False",
            ],
            display_name="Python 3 (pytest-mitosis)",
            language="python",
            env=dict(_KERNEL_ENV),
        )


@dataclass
class Execution:
    """What happened in the kernel; ``error`` is ``None`` when every cell ran.

    ``phase`` names what ran out of time or was interrupted: ``"kernel start"``, ``"set-up"``,
    ``"step"`` (the runtime's outcome says which) or ``"saving"``.
    """

    notebook: Any
    error: str | None
    kind: str | None  # "cell", "timeout", "dead", "startup", "interrupted" or None
    seconds: float
    phase: str | None = None
    #: the signal that interrupted the trial (``signal.SIGINT`` or ``signal.SIGTERM``)
    signal: int | None = None
    #: how the kernel was started (:meth:`Launched.facts`)
    kernel: dict[str, Any] | None = None
    #: seconds per phase: "kernel start" (until the set-up cell runs), "set-up", "step", "saving", "kernel stop"
    phases: dict[str, float] | None = None


def sweep_stale_private_folders(tmp: str | None = None) -> int:
    """Remove kernel folders left by a pytest process that is gone (SIGKILL, power loss).

    A folder is ``mitosis-kernel-<pid>-<random>``: it is removed only when no process with that
    pid exists, so folders of concurrent sessions are never touched. Returns how many were removed.
    """
    base = Path(tmp or private_base())
    removed = 0
    try:
        entries = list(base.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(_PRIVATE_PREFIX):
            continue
        pid_text = entry.name[len(_PRIVATE_PREFIX) :].split("-", 1)[0]
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or alive(int(pid_text)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed


class Launched:
    """A fresh kernel process, started ahead of the trial that will use it (and only that one).

    Starting the next trial's kernel while the current trial runs (or while pytest collects)
    hides most of a kernel's start-up; a launched kernel never runs more than one trial. The
    kernel exits by itself if pytest dies (ipykernel polls its parent), and the private folder
    of a killed session is removed by :func:`sweep_stale_private_folders` in the next one.
    """

    def __init__(self, cwd: Path, server: Any = None) -> None:
        self.cwd = cwd
        self._private = tempfile.mkdtemp(prefix=f"{_PRIVATE_PREFIX}{os.getpid()}-", dir=private_base())
        os.chmod(self._private, 0o700)
        self.manager = _SameInterpreterKernelManager(
            transport="ipc", ip=os.path.join(self._private, "kernel"), log=_QUIET
        )
        self.manager.connection_file = os.path.join(self._private, "connection.json")
        self._closed = False
        #: how the kernel came to exist, for the notebook and the record (see :meth:`facts`)
        self.start = "spawn"
        self.server = server if server is not None and server.usable_for(cwd) else None
        if self.server is not None:
            import uuid

            from .provisioner import ForkProvisioner

            self.manager.kernel_id = str(uuid.uuid4())
            provisioner = ForkProvisioner(
                kernel_id=self.manager.kernel_id, kernel_spec=self.manager.kernel_spec, parent=self.manager
            )
            provisioner.server = self.server
            self.manager.provisioner = provisioner
            self.start = "fork"
        try:
            run_sync(self.manager.start_kernel)(cwd=str(cwd))
        except BaseException:
            self.close()
            raise

    def ready(self) -> None:
        """Wait until a forked kernel's process exists (``ForkFailed`` when the server could not fork it),
        then until the kernel has bound its sockets, briefly.

        A client that connects before the kernel binds waits for zmq's reconnection interval, and
        the first kernel_info round trip may miss the kernel's IOPub status and need a second one:
        connecting once the socket files exist saves a few hundred milliseconds per trial.
        """
        if self.start == "fork":
            self.manager.provisioner.resolve()  # type: ignore[union-attr]
        manager = self.manager
        paths = [f"{manager.ip}-{getattr(manager, f'{c}_port')}" for c in ("shell", "iopub", "stdin", "control", "hb")]
        deadline = time.monotonic() + _BIND_WAIT
        while time.monotonic() < deadline and not all(os.path.exists(p) for p in paths):
            if not run_sync(manager.is_alive)():
                return  # nbclient reports the death
            time.sleep(0.005)

    def facts(self) -> dict[str, Any]:
        """How the kernel was started: ``{"start": "fork" | "spawn", "preloaded": [...]}``."""
        if self.start == "fork" and self.server is not None:
            return {"start": "fork", "preloaded": list(self.server.preloaded)}
        return {"start": "spawn"}

    @property
    def private(self) -> str:
        """The private folder (sockets and connection file), gone once :meth:`close` returns."""
        return self._private

    def close(self) -> None:
        """Stop the kernel (if still running), close the manager's sockets and context, remove the folder."""
        if self._closed:
            return
        self._closed = True
        try:
            if run_sync(self.manager.is_alive)():
                run_sync(self.manager.shutdown_kernel)(now=True)
        except (RuntimeError, ForkFailed):
            pass
        finally:
            try:
                run_sync(self.manager.cleanup_resources)()
            finally:
                shutil.rmtree(self._private, ignore_errors=True)


class _Client(NotebookClient):
    """nbclient's cell execution without its kernel set-up: no signal handlers, no ``atexit``.

    The channels are always stopped when the cells are done (nbclient leaves them open for a
    kernel manager it did not create, which is every one of ours).
    """

    async def run_cells(self, phases: list[str], deadline: _Deadline) -> None:
        self.reset_execution_trackers()
        try:
            await self.async_start_new_kernel_client()
            assert self.kc is not None
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type != "code":
                    continue
                deadline.enter(phases[index])
                await self.async_execute_cell(cell, index, execution_count=self.code_cells_executed + 1)
        finally:
            # nbclient polls the kernel and its output in tasks of their own: after an interruption
            # they are still pending, and would fail noisily once the channels are gone.
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if self.kc is not None:
                self.kc.stop_channels()
                self.kc = None


class _Deadline:
    """The time limit of each step (and of saving the results), counted from that cell's start.

    Kernel start-up and the set-up cell have their own, generous limit (``STARTUP_TIMEOUT``):
    a slow kernel start on a loaded machine is never blamed on a step.
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.phase = "kernel start"
        #: when each phase began (``time.monotonic()``), for the time split in :attr:`Execution.phases`
        self.began: dict[str, float] = {"kernel start": time.monotonic()}

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.began.setdefault(phase, time.monotonic())

    def split(self, ended: float) -> dict[str, float]:
        """Seconds per phase, in the order they began (the last one ends at ``ended``)."""
        marks = sorted(self.began.items(), key=lambda item: item[1])
        ends = [t for _, t in marks[1:]] + [ended]
        return {name: end - began for (name, began), end in zip(marks, ends)}

    def remaining(self, cell: Any) -> int | None:
        if self.timeout is None:
            return None
        if self.phase in ("step", "saving"):
            return max(1, int(self.timeout + 0.999))
        return int(max(STARTUP_TIMEOUT, self.timeout))


@contextmanager
def _stop_on_signals(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Iterator[list[int]]:
    """While the cells run, SIGINT and SIGTERM cancel ``task`` (the signals caught are yielded).

    The handlers that were in place before (pytest's, ours for SIGTERM) are put back afterwards:
    asyncio's ``remove_signal_handler`` would reset them to the defaults instead. Outside the main
    thread signals cannot be handled, and nothing is installed. A signal the process was started
    ignoring (a background job of a non-interactive shell ignores SIGINT) stays ignored, as it
    does for pytest itself.
    """
    caught: list[int] = []
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signums}

    def on_signal(signum: int) -> None:
        caught.append(signum)
        task.cancel()

    installed = []
    for signum in signums:
        if previous[signum] is signal.SIG_IGN:
            continue
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (RuntimeError, ValueError, NotImplementedError):
            pass
    try:
        yield caught
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
            if previous[signum] is not None:
                signal.signal(signum, previous[signum])


def execute(
    nb: Any,
    cwd: Path,
    timeout: float | None,
    launched: Launched | None = None,
    phases: list[str] | None = None,
    while_starting: Callable[[], None] | None = None,
) -> Execution:
    """Run every cell of ``nb`` in a fresh kernel (``launched``, or a new one); stop at the first
    error, at ``timeout`` (counted from the first step), or at SIGINT/SIGTERM. The kernel is
    always shut down and its private folder removed before this returns.

    ``phases`` names each cell's phase ("set-up", "step", "saving"); code cells default to "step".
    ``while_starting`` runs in this thread once the kernel process is launched, while it boots.
    """
    started = time.monotonic()
    deadline = _Deadline(timeout)
    names = phases if phases is not None else ["step"] * len(nb.cells)
    error: str | None = None
    kind: str | None = None
    caught: list[int] = []
    client = None
    kernel_facts: dict[str, Any] | None = None
    try:
        if launched is not None and launched.cwd == cwd:
            if while_starting is not None:
                while_starting()
                while_starting = None
            try:
                launched.ready()
            except ForkFailed:  # the fork server's problem is warned about once; this trial spawns its kernel
                launched.close()
                launched = None
        if launched is None or launched.cwd != cwd:
            if launched is not None:
                launched.close()
            try:
                launched = Launched(cwd)
            except Exception as err:  # zmq, the OS, the launcher: the trial fails, the session goes on
                raise RuntimeError(f"{type(err).__name__}: {err}") from None
            if while_starting is not None:
                while_starting()
                while_starting = None
            launched.ready()
        kernel_facts = launched.facts()
        client = _Client(
            nb,
            km=launched.manager,
            timeout=None,
            timeout_func=deadline.remaining,
            startup_timeout=STARTUP_TIMEOUT,
            allow_errors=False,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": str(cwd)}},
            log=_QUIET,
        )
        if while_starting is not None:
            while_starting()
        loop = ensure_event_loop()
        task = loop.create_task(client.run_cells(names, deadline))
        with _stop_on_signals(loop, task) as caught:
            try:
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                if not caught:
                    raise
    except CellTimeoutError:
        kind, error = "timeout", f"timed out after {timeout:g} s"
    except DeadKernelError as err:
        kind, error = "dead", f"kernel died ({err})" if str(err) else "kernel died"
    except CellExecutionError as err:
        kind, error = "cell", f"{err.ename}: {err.evalue}"
    except RuntimeError as err:  # "Kernel didn't respond in N seconds" and friends
        kind, error = "startup", f"the kernel did not start: {err}"
    finally:
        # The kernel is ours to stop: now, not at exit.
        deadline.began["kernel stop"] = time.monotonic()  # for the time split only: ``phase`` says what ran out
        if launched is not None:
            launched.close()
    if caught:
        kind = "interrupted"
        error = f"interrupted by {signal.Signals(caught[0]).name}"
    return Execution(
        client.nb if client is not None else nb,
        error,
        kind,
        time.monotonic() - started,
        deadline.phase,
        caught[0] if caught else None,
        kernel_facts,
        deadline.split(time.monotonic()),
    )
