"""Kernels forked from a warm parent: the pytest side of :mod:`.forkparent`.

One :class:`ForkServer` per session (per xdist worker) starts the parent from
``sys.executable`` (never a fork of pytest, which has threads), tells it what to preload, and
asks it for one kernel per trial. A forked kernel is a fresh process that runs one trial, on
the trial's own connection file, in the investigation's directory, with the environment a
spawned kernel would get; it is stopped when the trial ends, as a spawned one is.

:class:`ForkProvisioner` is the jupyter_client kernel provisioner that makes this invisible to
the kernel manager and nbclient: the kernel is not pytest's child, so its liveness is read
from ``/proc`` and signals go to its process group by pid. Nothing here imports jupyter_client
at module level except the provisioner's own module body (imported only when a kernel starts).

Forking is used only where it is known to be safe (Linux); elsewhere, when the parent cannot
start or preload, or when a fork fails, kernels are spawned and one warning line
says why (:attr:`ForkServer.problem`). A trial never fails because of the fork server.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.processes import running, scannable

if TYPE_CHECKING:
    import socket

#: how long to wait for the parent's answer (it may still be importing the preloaded libraries)
REPLY_TIMEOUT = 120.0


#: added to every kernel's environment (debugpy's warning about frozen modules is noise in a notebook)
KERNEL_ENV = {"PYDEVD_DISABLE_FILE_VALIDATION": "1"}
#: the variable, unique to each kernel, that every process the kernel starts inherits (see
#: :func:`pytest_mitosis.core.processes.marked`): how the processes a trial left running are found
MARKER = "MITOSIS_KERNEL"
#: pytest's variables that no kernel inherits (see :func:`kernel_env`)
NOT_INHERITED = ("PYTEST_CURRENT_TEST",)


def kernel_env() -> dict[str, str]:
    """The environment a kernel starts with (forked or spawned): pytest's, with :data:`KERNEL_ENV`.

    Without ``PYTEST_CURRENT_TEST``: a kernel is no part of pytest's test, and ipykernel, seeing
    it, would not capture what the kernel's descriptors 1 and 2 receive (it assumes pytest
    captures them). Every kernel but the first is started while a trial runs, when pytest sets
    it: what a step's child processes printed went to the notebook in the first trial and to
    pytest's terminal in the others. Here, not in :mod:`.launch`, so that the fork server starts
    without importing jupyter_client.
    """
    env = {**os.environ, **KERNEL_ENV}
    for name in NOT_INHERITED:
        env.pop(name, None)
    return env


def fork_unavailable() -> str | None:
    """Why kernels cannot be forked on this platform, or ``None`` when they can."""
    if not hasattr(os, "fork"):
        return "this platform has no fork()"
    if not sys.platform.startswith("linux"):
        return f"forking a process that imported system frameworks is not safe on {sys.platform}"
    return None


class ForkFailed(Exception):
    """The fork server could not give a kernel; the message says why, for the one warning line."""


class ForkServer:
    """The warm parent of one session's kernels, and the pipe to it.

    With ``listener`` (pytest-xdist's controller, see :mod:`.shared`) the parent also serves the
    workers that connect to it; with ``connect`` this is such a worker's side: its requests and
    the parent's replies go over its own connection, and closing it stops (only) its kernels.
    ``OSError`` when the parent cannot be reached.
    """

    def __init__(
        self,
        cwd: Path,
        env: dict[str, str],
        preload: list[str],
        root: Path,
        listener: socket.socket | None = None,
        connect: str | None = None,
    ) -> None:
        self.cwd = cwd
        self.env = dict(env)
        self.requested = list(preload)
        self.root = root
        #: the modules the parent has imported (known once it answered the preload)
        self.preloaded: list[str] = []
        #: preloads that failed in the parent (name → error): the trials import them themselves
        self.failed: dict[str, str] = {}
        #: why this server gives no more kernels (the session then spawns them), or ``None``
        self.problem: str | None = None
        self._next_id = 0
        #: kernels handed to a trial (their pids were asked for): until then, none is in use
        self._resolved = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._preload_answer: dict[str, Any] | None = None
        self._buffer = b""
        self._closed = False
        self._process: subprocess.Popen[bytes] | None = None
        #: the socket to the controller's parent (see :mod:`.shared`)
        self._connection: socket.socket | None = None
        if connect is not None:
            from .lines import connect as connect_to

            self._connection = connect_to(connect)
            self._reply_fd = self._connection.fileno()
        else:
            read, write = os.pipe()
            passed = (write, listener.fileno()) if listener is not None else (write,)
            try:
                self._process = subprocess.Popen(
                    [
                        sys.executable,
                        "-Xfrozen_modules=off",
                        "-m",
                        "pytest_mitosis.execution.forkparent",
                        *(str(fd) for fd in passed),
                    ],
                    stdin=subprocess.PIPE,
                    cwd=str(cwd),
                    env=self.env,
                    pass_fds=passed,
                )
            except BaseException:
                os.close(read)
                raise
            finally:
                os.close(write)
            self._reply_fd = read
        self._send({"op": "preload", "modules": self.requested, "root": str(root)})

    def usable_for(self, cwd: Path) -> bool:
        """Whether a kernel for ``cwd`` may be forked from this parent.

        The environment is not compared: each kernel gets pytest's environment of the moment it
        is launched, as a spawned one does, and libraries change it when imported (scikit-learn
        sets ``KMP_*`` variables while pytest collects); the parent imported its libraries with
        pytest's environment of the start of collection.
        """
        return self.problem is None and cwd == self.cwd

    def _send(self, message: dict[str, Any]) -> None:
        try:
            if self._connection is not None:
                from .lines import send

                send(self._connection.fileno(), message)
                return
            assert self._process is not None and self._process.stdin is not None
            self._process.stdin.write((json.dumps(message) + "\n").encode())
            self._process.stdin.flush()
        except (OSError, ValueError) as err:
            self.problem = self.problem or f"the fork server is gone ({err})"
            raise ForkFailed(self.problem) from None

    def _read(self, deadline: float) -> dict[str, Any]:
        if self._closed:
            raise ForkFailed("the fork server was stopped")
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._reply_fd], [], [], max(0.0, left))
            if not ready:
                raise ForkFailed(f"the fork server did not answer within {REPLY_TIMEOUT:g} s")
            chunk = os.read(self._reply_fd, 65536)
            if not chunk:
                code = self._process.poll() if self._process is not None else None
                raise ForkFailed(
                    f"the fork server exited (code {code})" if code is not None else "the fork server closed its pipe"
                )
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return dict(json.loads(line))

    def _take(self, deadline: float) -> None:
        message = self._read(deadline)
        if message.get("op") == "preloaded":
            self._preload_answer = message
            self.preloaded = list(message.get("loaded", []))
            self.failed = dict(message.get("failed", {}))
            if message.get("unsafe"):
                self.problem = str(message["unsafe"])
        elif message.get("op") == "forked":
            self._replies[int(message["id"])] = message

    def preload_answer(self) -> dict[str, Any]:
        """The parent's answer to the preload (waiting for it)."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        try:
            while self._preload_answer is None:
                self._take(deadline)
        except ForkFailed as err:
            self.problem = self.problem or str(err)
            raise
        return self._preload_answer

    def preload(self, modules: list[str]) -> None:
        """Import these as well (before any kernel asked for after this call is forked)."""
        self.requested += modules
        self._send({"op": "preload", "modules": modules, "root": str(self.root)})

    def request(self, args: list[str], env: dict[str, str], cwd: str, log: str | None = None) -> int:
        """Ask for a kernel (``ipykernel_launcher ARGS``); returns the request's id (see :meth:`pid_of`).
        ``log``: the file its descriptors 1 and 2 go to (else ``/dev/null``), never pytest's output."""
        if self.problem is not None:
            raise ForkFailed(self.problem)
        self._next_id += 1
        self._send({"op": "fork", "id": self._next_id, "args": args, "env": env, "cwd": cwd, "log": log})
        return self._next_id

    def collect(self, payload: str, out: str, env: dict[str, str], cwd: str, quiet: bool = True) -> int:
        """Fork a child that collects the experiments into ``out`` (see :mod:`.forkcollect`); its pid.
        ``quiet``: what the import prints is dropped (pytest captures output)."""
        if self.problem is not None:
            raise ForkFailed(self.problem)
        self._next_id += 1
        request = {"op": "collect", "id": self._next_id, "payload": payload, "out": out, "env": env, "cwd": cwd}
        self._send({**request, "quiet": quiet})
        pid = self.pid_of(self._next_id)
        self._resolved -= 1  # not a kernel: the parent's use is counted by the trials' kernels only
        return pid

    def pid_of(self, request: int) -> int:
        """The pid of the kernel forked for ``request`` (waiting for the parent's answer)."""
        deadline = time.monotonic() + REPLY_TIMEOUT
        try:
            while request not in self._replies:
                self._take(deadline)
        except ForkFailed as err:
            self.problem = self.problem or str(err)
            raise
        reply = self._replies.pop(request)
        if "error" in reply:
            raise ForkFailed(str(reply["error"]))
        self._resolved += 1
        return int(reply["pid"])

    def close(self, graceful: bool | None = None) -> None:
        """Stop the parent (it kills the kernels it forked that are still running).

        ``graceful`` (the controller's shared parent, see :mod:`.shared`) says whether its workers
        used it; by default, whether a kernel of this session was taken from it.

        A parent none of whose kernels was used (the session ran no trial: refused, or nothing
        collected; the spare kernel asked for while pytest collected was never taken) is killed
        at once instead of being left to finish importing its libraries and forking that spare,
        only for it to be stopped: it holds nothing, and a refused session should neither wait
        nor burn a core for it. A kernel it forked before it was killed is killed by its pid
        (the parent had answered with it); a kernel forked in the instant before that answer
        exits by itself once pytest has (it watches pytest's pid, see :mod:`.forkparent`).
        """
        self.problem = self.problem or "the fork server was stopped"
        self._closed = True
        if self._connection is not None:  # the controller's parent kills this worker's kernels, serves the others
            self._connection.close()
            self._connection = None
            return
        assert self._process is not None
        unused = self._resolved == 0 if graceful is None else not graceful
        killed = unused and self._process.poll() is None
        if killed:
            self._process.kill()
        if self._process.stdin is not None:
            try:
                self._process.stdin.close()
            except OSError:
                pass
        try:
            self._process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if killed:
            self._kill_unused()
        try:
            os.close(self._reply_fd)
        except OSError:
            pass

    def _kill_unused(self) -> None:
        """Kill the kernels a killed parent had forked: those its answers (read or not yet) name."""
        import signal

        answers = list(self._replies.values())
        self._replies.clear()
        data, self._buffer = self._buffer, b""
        try:
            while select.select([self._reply_fd], [], [], 0)[0]:
                chunk = os.read(self._reply_fd, 65536)
                if not chunk:
                    break
                data += chunk
        except OSError:
            pass
        for line in data.splitlines():
            try:
                answers.append(dict(json.loads(line)))
            except ValueError:
                continue
        for answer in answers:
            if answer.get("op") == "forked" and "pid" in answer:
                try:
                    os.killpg(int(answer["pid"]), signal.SIGKILL)
                except OSError:
                    pass


def alive(pid: int, started: int | None = None) -> bool:
    """Whether ``pid`` runs (a zombie does not: it has exited, its parent has not reaped it yet); with
    ``started`` (its start time when it was forked), only while it is that process: the warm parent's
    children are reaped at once, so their pids are free for the next process as soon as they exit."""
    return scannable() and running(pid, started)
