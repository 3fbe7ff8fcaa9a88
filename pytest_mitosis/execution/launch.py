"""A fresh kernel process for one trial: its private folder, its manager, started ahead of the trial.

The kernel is started from ``sys.executable`` (never whatever a ``python3`` kernelspec points
to), forked from the session's warm parent (:mod:`.forkserver`) or spawned, and talks over IPC
sockets in a private temporary directory (no TCP port another local user could reach for its
channels, and no "unencrypted TCP" warning). The private folders of a killed session are
swept by the next one. Running cells in it is :mod:`.kernel`'s job.

No process of a trial holds pytest's output, and none outlives the trial:

- The kernel's descriptor 0 is ``/dev/null`` and 1 and 2 go to ``kernel.log`` in its private
  folder, whether it is spawned or forked; the processes it starts inherit them. ipykernel
  captures what reaches 1 and 2 while the kernel runs (a child's output shows in the notebook)
  and copies it to the descriptors it started with: the log also keeps what the notebook cannot
  show (the kernel's own messages before it is up, its last words when it crashes). Were they
  pytest's, a process a step started in the background would keep ``pytest ... | tee log``
  waiting for it after pytest exits. :meth:`Launched.close` moves a non-empty log into the trial.
- The kernel's environment holds ``MITOSIS_KERNEL=<unique id>``, which every process it starts
  inherits (also one that leaves the kernel's session): when the trial ends, :meth:`Launched.close`
  finds them (:func:`pytest_mitosis.core.processes.marked`, by that variable and by the kernel's
  session), stops them (SIGTERM, SIGKILL after a grace) and lists them in :attr:`Launched.stopped`
  for the notebook. The id is unique to the kernel, so no other trial's processes (another
  xdist worker's), the warm parent or pytest are ever touched.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager, KernelManager
from jupyter_core.utils import run_sync

from ..core import processes
from .forkserver import KERNEL_ENV as _KERNEL_ENV
from .forkserver import MARKER, ForkFailed, ForkServer, kernel_env
from .logs import quiet
from .private import private_folder

#: longest wait for a kernel's sockets before its client connects anyway (see :meth:`Launched.ready`)
_BIND_WAIT = 10.0
_QUIET = quiet("kernel")


_CONTEXT: Any = None


def shared_context() -> Any:
    """One zmq context for the sockets of every kernel of this process (its manager's and its client's).

    jupyter_client gives each manager and each client a context of its own: two I/O threads started
    and joined per trial, about 2.5 ms of every trial in pytest's process. Every socket is closed with
    its trial; the context lives until :func:`close_shared_context` (the end of the session).
    """
    global _CONTEXT
    if _CONTEXT is None or _CONTEXT.closed:
        import zmq.asyncio

        _CONTEXT = zmq.asyncio.Context()
    return _CONTEXT


def close_shared_context() -> None:
    """Close the shared context (its sockets are closed already: their kernels are stopped)."""
    global _CONTEXT
    context, _CONTEXT = _CONTEXT, None
    if context is not None and not context.closed:
        context.destroy(linger=0)


class _SameInterpreterKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel is ``sys.executable -m ipykernel_launcher``."""

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        """Wait until the kernel is gone, looking every 5 ms: a killed kernel is gone within a few,
        and jupyter_client's 0.1 s interval made every trial's kernel stop wait about that long."""
        while await self._async_is_alive():
            await asyncio.sleep(0.005)

    async def _async_start_kernel(self, **kw: Any) -> None:
        """jupyter_client's start, without the ``asyncio.sleep(0.01)`` its ``in_pending_state`` decorator
        adds after it ("to ensure tests can capture the state before done"): 10 ms of every trial in
        pytest's process. What the decorator also does, the manager's ``ready`` future, nothing here
        awaits (nbclient is handed the started manager, and its client's handshake says when the kernel
        is up, see :func:`.kernel.wait_for_ready`)."""
        await KernelManager._async_start_kernel.__wrapped__(self, **kw)  # type: ignore[attr-defined]

    start_kernel = _async_start_kernel

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


class Launched:
    """A fresh kernel process, started ahead of the trial that will use it (and only that one).

    Starting the next trial's kernel while the current trial runs (or while pytest collects)
    hides most of a kernel's start-up; a launched kernel never runs more than one trial. The
    kernel exits by itself if pytest dies (ipykernel polls its parent), and the private folder
    of a killed session is removed by :func:`.private.sweep_stale_private_folders` in the next one.
    """

    def __init__(self, cwd: Path, server: ForkServer | None = None) -> None:
        import uuid

        self.cwd = cwd
        self._private = private_folder()
        #: the value of ``MITOSIS_KERNEL`` in this kernel's environment (and its processes')
        self.marker = uuid.uuid4().hex
        #: where the kernel's descriptors 1 and 2 go (see the module's docstring)
        self.log = os.path.join(self._private, "kernel.log")
        #: the processes of this kernel still running when it was closed, stopped then (see :meth:`close`)
        self.stopped: list[processes.Process] = []
        #: those of :attr:`stopped` that ignored SIGTERM and were killed
        self.killed: list[processes.Process] = []
        self.manager = _SameInterpreterKernelManager(
            transport="ipc", ip=os.path.join(self._private, "kernel"), log=_QUIET, context=shared_context()
        )
        self.manager.connection_file = os.path.join(self._private, "connection.json")
        self._closed = False
        #: how the kernel came to exist, for the notebook and the record (see :meth:`how_started`)
        self.start = "spawn"
        self.server = server if server is not None and server.usable_for(cwd) else None
        if self.server is not None:
            from .provisioner import ForkProvisioner

            self.manager.kernel_id = str(uuid.uuid4())
            provisioner = ForkProvisioner(
                kernel_id=self.manager.kernel_id, kernel_spec=self.manager.kernel_spec, parent=self.manager
            )
            provisioner.server = self.server
            provisioner.log = self.log
            self.manager.provisioner = provisioner
            self.start = "fork"
        env = {**kernel_env(), MARKER: self.marker}
        try:
            with open(self.log, "ab") as log:
                # spawned: the kernel's descriptors (a forked kernel opens the log itself, see forkparent.py)
                run_sync(self.manager.start_kernel)(
                    cwd=str(cwd), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
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

    def how_started(self) -> dict[str, Any]:
        """How the kernel was started: ``{"start": "fork" | "spawn", "preloaded": [...]}``."""
        if self.start == "fork" and self.server is not None:
            return {"start": "fork", "preloaded": list(self.server.preloaded)}
        return {"start": "spawn"}

    @property
    def private(self) -> str:
        """The private folder (sockets and connection file), gone once :meth:`close` returns."""
        return self._private

    def _pid(self) -> int | None:
        """The kernel's pid (the fork server's answer for a forked one), or ``None`` when there is none."""
        process = getattr(self.manager.provisioner, "process", None)
        try:
            return int(process.pid) if process is not None else None
        except ForkFailed:
            return None

    def _left(self, pid: int | None, since: int | None = None) -> list[processes.Process]:
        """This kernel's processes still running (its session too: the kernel is the session's leader);
        ``since``: the kernel's start time (they started after it)."""
        exclude = () if pid is None else (pid,)
        return processes.marked(MARKER, self.marker, session=pid, exclude=exclude, since=since)

    def close(self, log: Path | None = None) -> None:
        """Stop the kernel (if still running) and every process it started, close the manager's sockets
        and context, remove the folder; ``log``: where the kernel's log goes when it is not empty.

        The kernel alone is killed (its pid, not its process group as jupyter_client would), then its
        processes are looked for once (:func:`.processes.marked`, a few milliseconds), asked to stop
        and named in :attr:`stopped`: those of its group too, which would otherwise die unnamed and
        without the SIGTERM that lets them clean up. Once the kernel is dead no step runs: only what
        those processes started meanwhile is left, and it is looked for again only when some were found.
        """
        if self._closed:
            return
        self._closed = True
        pid: int | None = None
        since: int | None = None
        try:
            pid = self._pid()
            since = None if pid is None else processes.start_time(pid)
            if run_sync(self.manager.is_alive)():
                self._kill(pid)
        except (RuntimeError, ForkFailed):
            pass
        finally:
            try:
                run_sync(self.manager.cleanup_resources)()
            finally:
                try:
                    self._stop(pid, since)
                    if log is not None and os.path.getsize(self.log) > 0:
                        shutil.move(self.log, log)
                except OSError:
                    pass  # no log (the kernel never started), or a trial folder that cannot take it
                finally:
                    shutil.rmtree(self._private, ignore_errors=True)

    def _kill(self, pid: int | None) -> None:
        """Kill the kernel process (SIGKILL, as jupyter_client's immediate shutdown) and wait until it is gone."""
        if pid is None or not processes.scannable():  # its process group then dies with it, unnamed
            run_sync(self.manager.shutdown_kernel)(now=True)
            return
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + _BIND_WAIT  # a process in uninterruptible sleep dies when it wakes
        while run_sync(self.manager.is_alive)() and time.monotonic() < deadline:
            time.sleep(0.002)

    def _stop(self, pid: int | None, since: int | None = None) -> None:
        found: dict[int, processes.Process] = {}
        for _ in range(3):  # a process being stopped may have started another one meanwhile
            more = [p for p in self._left(pid, since) if p.pid not in found]
            if not more:
                break
            found.update((p.pid, p) for p in more)
            self.killed += processes.stop(more)
        self.stopped = sorted(found.values(), key=lambda p: p.pid)
