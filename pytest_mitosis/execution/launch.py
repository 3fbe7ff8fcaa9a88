"""A fresh kernel process for one trial: its private folder, its manager, started ahead of the trial.

The kernel is started from ``sys.executable`` (never whatever a ``python3`` kernelspec points
to), forked from the session's warm parent (:mod:`.forkserver`) or spawned, and talks over IPC
sockets in a private temporary directory (no TCP port another local user could reach for its
channels, and no "unencrypted TCP" warning). The private folders of a killed session are
swept by the next one. Running cells in it is :mod:`.kernel`'s job.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

from jupyter_client.kernelspec import KernelSpec
from jupyter_client.manager import AsyncKernelManager
from jupyter_core.utils import run_sync

from .forkserver import KERNEL_ENV as _KERNEL_ENV
from .forkserver import ForkFailed
from .logs import quiet
from .private import private_folder

#: longest wait for a kernel's sockets before its client connects anyway (see :meth:`Launched.ready`)
_BIND_WAIT = 10.0
_QUIET = quiet("kernel")


class _SameInterpreterKernelManager(AsyncKernelManager):
    """A kernel manager whose kernel is ``sys.executable -m ipykernel_launcher``."""

    async def _async_wait(self, pollinterval: float = 0.1) -> None:
        """Wait until the kernel is gone, looking every 5 ms: a killed kernel is gone within a few,
        and jupyter_client's 0.1 s interval made every trial's kernel stop wait about that long."""
        while await self._async_is_alive():
            await asyncio.sleep(0.005)

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

    def __init__(self, cwd: Path, server: Any = None) -> None:
        self.cwd = cwd
        self._private = private_folder()
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
