"""The kernel provisioner of forked kernels: jupyter_client's ``LocalProvisioner`` with the launch
handed to the fork server (:mod:`.forkserver`).

Everything the kernel manager and nbclient do through the provisioner works as for a spawned
kernel: ``poll`` (is it alive), ``send_signal`` (interrupt: to its process group, as
jupyter_client does), ``kill``, ``terminate``, ``wait``. The kernel is the fork server's child,
not pytest's: its liveness is read from ``/proc`` (the server lets the system reap it), and the
exit code of a kernel that died is not known (``poll`` says ``-1``).

The launch is asynchronous: the request is sent at once (so a kernel started ahead, while
pytest collects, never makes pytest wait for the parent's preloading) and the pid is read
when it is first needed.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from jupyter_client.connect import KernelConnectionInfo
from jupyter_client.provisioning import LocalProvisioner

from ..core.processes import start_time
from .forkserver import ForkFailed, ForkServer, alive

#: how ``python -m ipykernel_launcher`` appears in a kernel spec's argv
_LAUNCHER = ["-m", "ipykernel_launcher"]


class ForkedProcess:
    """The handful of ``Popen`` methods jupyter_client calls, for a kernel forked by the server."""

    def __init__(self, server: ForkServer, request: int) -> None:
        self.server = server
        self.request = request
        self._pid: int | None = None
        #: the kernel's start time: its pid, once the kernel exits, may be a later process's
        self._started: int | None = None
        self._failed: str | None = None
        self.stdin = self.stdout = self.stderr = None

    @property
    def pid(self) -> int:
        """The kernel's pid (waits for the fork server's answer; ``ForkFailed`` when it could not fork)."""
        if self._failed is not None:
            raise ForkFailed(self._failed)
        if self._pid is None:
            try:
                self._pid = self.server.pid_of(self.request)
                self._started = start_time(self._pid)
            except ForkFailed as err:
                self._failed = str(err)
                raise
        return self._pid

    def poll(self) -> int | None:
        try:
            return None if alive(self.pid, self._started) else -1
        except ForkFailed:  # never forked: not alive
            return -1

    def wait(self, timeout: float | None = None) -> int:
        import time

        deadline = None if timeout is None else time.monotonic() + timeout
        while alive(self.pid, self._started):
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"kernel {self.pid} still running")
            time.sleep(0.02)
        return -1

    def send_signal(self, signum: int) -> None:
        if self._started is not None and not alive(self.pid, self._started):  # its pid may be another's now
            raise ProcessLookupError(f"kernel {self.pid} has exited")
        os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)


class ForkProvisioner(LocalProvisioner):
    """``LocalProvisioner`` whose kernels are forked from the session's warm parent."""

    server: ForkServer | None = None
    #: the file the kernel's descriptors 1 and 2 go to (see :meth:`.ForkServer.request`)
    log: str | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs: Any) -> KernelConnectionInfo:
        assert self.server is not None
        try:
            start = next(i for i in range(len(cmd)) if cmd[i : i + 2] == _LAUNCHER)
        except StopIteration:
            raise RuntimeError(f"not an ipykernel_launcher command: {cmd}") from None
        env = dict(kwargs.get("env") or os.environ)
        env["JPY_PARENT_PID"] = str(os.getpid())  # as jupyter_client's launcher sets it
        cwd = str(kwargs.get("cwd") or os.getcwd())
        request = self.server.request(cmd[start + 2 :], env, cwd, self.log)
        self.process = ForkedProcess(self.server, request)  # type: ignore[assignment]
        self.cwd = cwd
        return self.connection_info

    def resolve(self) -> int:
        """Wait for the fork; the kernel's pid (its process group is its own: the child calls setsid)."""
        assert self.process is not None
        self.pid = self.pgid = self.process.pid
        return int(self.pid)

    async def poll(self) -> int | None:
        if self.process is None:
            return 0
        result: int | None = self.process.poll()
        return result

    async def wait(self) -> int | None:
        if self.process is None:
            return 0
        while await self.poll() is None:
            await asyncio.sleep(0.02)
        self.process = None
        return -1

    async def send_signal(self, signum: int) -> None:
        if self.process is not None and self.pid is None:
            try:
                self.resolve()
            except ForkFailed:  # never forked: nothing to signal
                return
        await super().send_signal(signum)
