"""The warm parent of forked kernels: a fresh interpreter that has imported ipykernel and the
libraries the steps import, and forks one child per trial that becomes a normal IPKernelApp.

Runs as ``python -m pytest_mitosis.execution.forkparent REPLY_FD [LISTEN_FD]`` (started by
:mod:`.forkserver` from ``sys.executable``, never forked from pytest, which has threads).
Commands arrive as JSON lines on stdin, replies leave as JSON lines on ``REPLY_FD``; with
``LISTEN_FD`` (pytest-xdist's controller started it for its local workers) each worker
connected there is served the same way on its connection (see :mod:`.lines`):

- ``{"op": "preload", "modules": [...], "root": DIR}``: import them (never from ``DIR``, the
  investigation), then say what was loaded, what failed, and whether forking is still safe.
- ``{"op": "fork", "id": N, "args": [...], "env": {...}, "cwd": DIR, "log": FILE}``: fork a kernel
  (its output descriptors on ``FILE``); reply its pid.
- ``{"op": "collect", "id": N, "payload": ..., "out": FILE, "env": {...}, "cwd": DIR}``: fork a child
  that imports the steps and collects the experiments into ``FILE`` (see :mod:`.forkcollect`); reply its pid.

The parent's own descriptors 1 and 2 are pytest's: it lives exactly as long as the session (it
exits when its stdin closes, and pytest waits for it), and what the steps print while collection
imports them under ``pytest -s`` goes there, as pytest would show it. Its kernels never keep them
(see :meth:`Parent.become_kernel`). The parent itself starts no thread, no event loop and no zmq context (it checks, and says so
when a preloaded library did), ignores SIGINT (a Ctrl-C is pytest's to handle) and lets the
system reap its children (SIGCHLD ignored). When pytest goes away (stdin closes) it kills the
kernels it forked and exits; when a worker's connection closes, the kernels forked for that
worker. Each kernel also watches its pytest process, as ipykernel watches its parent. Standard
library only at import: what it imports beyond that is the point of its existence.
"""

from __future__ import annotations

import gc
import importlib
import os
import signal
import sys
import traceback
from typing import Any

from pytest_mitosis.execution.lines import Peer, Server

#: what every kernel imports before the first cell: preloaded always (this is most of a kernel's start)
KERNEL_MODULES = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.zmqshell",
    "ipykernel.iostream",
    "ipykernel.comm",
    "ipykernel.debugger",
    "IPython.core.completerlib",
    "IPython.core.debugger",
    "IPython.core.oinspect",
    "IPython.extensions.storemagic",
    "tornado.platform.asyncio",
    "IPython.core.completer",
    "jedi",
    "pytest_mitosis.execution.runtime",
)


class Parent:
    def __init__(self, reply_fd: int, listen_fd: int | None = None) -> None:
        self.server = Server(reply_fd, listen_fd)
        #: the kernels forked for each peer (by its read descriptor), killed when it goes away
        self.children: dict[int, list[int]] = {}
        self.loaded: list[str] = []
        # What a fresh interpreter had: the child puts it back before it becomes a kernel.
        self.dispositions = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGCHLD, signal.SIGTERM)}
        self.mask = signal.pthread_sigmask(signal.SIG_BLOCK, [])
        #: why forking would not give a clean kernel (then every fork is refused), or ``None``
        self.refusal: str | None = None
        # ipykernel reads JPY_PARENT_PID when kernelapp is imported (a trait's default): any pid but
        # 0 and 1 makes each kernel start its parent poller, which watches pytest (see _watch_pytest).
        self.start_env = dict(os.environ)
        #: what the preloaded libraries set in os.environ when imported (pydevd does): kept in the kernels
        self.env_added: dict[str, str] = {}
        os.environ["JPY_PARENT_PID"] = str(os.getpid())
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # no zombies: the system reaps the kernels
        # ``python -m`` put the investigation's directory first: nothing is imported from there.
        if sys.path and os.path.abspath(sys.path[0] or ".") == os.getcwd():
            del sys.path[0]

    def preload(self, peer: Peer, modules: list[str], root: str) -> None:
        failed: dict[str, str] = {}
        set_backend = "MPLBACKEND" not in os.environ
        if set_backend:  # what ipykernel sets before any cell runs: matplotlib reads it when imported
            os.environ["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
        for name in [*KERNEL_MODULES, *modules]:
            if name in self.loaded:
                continue
            try:
                importlib.import_module(name)
                self.loaded.append(name)
            except BaseException as err:  # a library that cannot be imported here is imported by the trial
                failed[name] = f"{type(err).__name__}: {err}"
        if set_backend:
            del os.environ["MPLBACKEND"]
        self.env_added = {k: v for k, v in os.environ.items() if k != "JPY_PARENT_PID" and self.start_env.get(k) != v}
        self.refusal = self.refusal or self.unsafe(root)
        # The preloaded libraries live as long as the kernels: no kernel's collector walks them (which
        # would also write to their pages and copy them: the pages stay shared). Python's advice for
        # processes that fork without exec (see gc.freeze).
        gc.freeze()
        peer.reply({"op": "preloaded", "loaded": self.loaded, "failed": failed, "unsafe": self.refusal})

    def unsafe(self, root: str) -> str | None:
        """Why forking this process would not give a clean kernel, or ``None``."""
        prefix = os.path.join(os.path.abspath(root), "")
        for name, module in list(sys.modules.items()):
            path = getattr(module, "__file__", None)
            if isinstance(path, str) and os.path.abspath(path).startswith(prefix) and "site-packages" not in path:
                return f"the preloaded libraries imported the investigation's module {name!r} ({path})"
        zmq = sys.modules.get("zmq")
        if zmq is not None and getattr(zmq.Context, "_instance", None) is not None:
            return "a preloaded library created a zmq context"
        asyncio = sys.modules.get("asyncio")
        if asyncio is not None and asyncio.events._get_running_loop() is not None:
            return "a preloaded library started an event loop"
        threading = sys.modules.get("threading")
        if threading is not None and threading.active_count() > 1:
            names = ", ".join(t.name for t in threading.enumerate() if t is not threading.main_thread())
            return f"a preloaded library started Python threads ({names}), which a fork would not copy"
        # Native thread pools (OpenBLAS's) stop themselves around a fork (pthread_atfork): allowed.
        return None

    def fork(self, peer: Peer, request: dict[str, Any]) -> None:
        """Fork a child for ``request`` (a kernel, or a collection); reply its pid, or why there is none."""
        if self.refusal is not None:
            peer.reply({"op": "forked", "id": request["id"], "error": self.refusal})
            return
        try:
            pid = os.fork()
        except OSError as err:
            peer.reply({"op": "forked", "id": request["id"], "error": f"fork failed: {err}"})
            return
        if pid == 0:
            code = 1
            try:
                if request.get("op") == "collect":
                    self.collect(request)
                else:
                    self.become_kernel(request)
                code = 0
            except SystemExit as err:
                code = err.code if isinstance(err.code, int) else 1
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        children = self.children.setdefault(peer.read_fd, [])
        children[:] = [p for p in children if _exists(p)] + [pid]
        peer.reply({"op": "forked", "id": request["id"], "pid": pid})

    def become_kernel(self, request: dict[str, Any]) -> None:
        """In the child: become what ``python -m ipykernel_launcher ARGS`` in ``cwd`` with ``env`` is.

        Its descriptors 1 and 2 go to the kernel's log (``log``; else ``/dev/null``), as a spawned
        kernel's do (see :mod:`.launch`), never to this parent's, which are pytest's: a process the
        kernel starts inherits them, and one that outlived pytest would hold pytest's output open.
        """
        self.fresh(request)
        log = request.get("log")
        out = (
            os.open(str(log), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
            if log
            else os.open(os.devnull, os.O_WRONLY)
        )
        os.dup2(out, 1)
        os.dup2(out, 2)
        os.close(out)
        import ipykernel_launcher  # type: ignore[import-untyped]
        from ipykernel import kernelapp

        _watch_pytest(kernelapp, int(request["env"].get("JPY_PARENT_PID") or 0))

        sys.argv = [ipykernel_launcher.__file__, *request["args"]]
        config = kernel_config(request["args"])
        if config is None:
            kernelapp.launch_new_instance()
        else:
            _kernel_app(kernelapp).launch_instance(argv=[], config=config)

    def collect(self, request: dict[str, Any]) -> None:
        """In the child: import the steps and write the collected experiments (see :mod:`.forkcollect`).
        What their import prints goes nowhere, as pytest's collection captures and drops it (unless
        pytest captures nothing, ``-s``: then it goes where this parent's output goes, pytest's)."""
        self.fresh(request)
        if request.get("quiet", True):
            null = os.open(os.devnull, os.O_WRONLY)
            os.dup2(null, 1)
            os.dup2(null, 2)
            os.close(null)
        from pytest_mitosis.execution.forkcollect import child_main

        child_main(str(request["payload"]), str(request["out"]))

    def fresh(self, request: dict[str, Any]) -> None:
        """In a child: the process a fresh interpreter in ``cwd`` with ``env`` would be, the libraries loaded."""
        os.setsid()  # its own process group, as jupyter_client starts kernels: interrupts reach its children
        for signum, handler in self.dispositions.items():
            signal.signal(signum, handler if handler is not None else signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, self.mask)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        for fd in self.server.fds():
            try:
                os.close(fd)
            except OSError:
                pass
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.update(self.env_added)
        # A fresh interpreter's entropy: random reseeds itself after a fork; numpy's global generator does not.
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed()

    def handle(self, peer: Peer, request: dict[str, Any]) -> None:
        if request.get("op") == "preload":
            self.preload(peer, list(request.get("modules", [])), str(request.get("root", "/")))
        elif request.get("op") in ("fork", "collect"):
            self.fork(peer, request)

    def gone(self, peer: Peer) -> None:
        """A worker closed its connection (its session ended, or it died): so are the kernels it ran."""
        _kill(self.children.pop(peer.read_fd, []))

    def serve(self) -> None:
        self.server.serve(self.handle, self.gone)
        # pytest is gone (or done): so are the kernels it ran
        _kill([pid for children in self.children.values() for pid in children])


def _kill(pids: list[int]) -> None:
    for pid in pids:
        try:
            os.killpg(pid, signal.SIGKILL)
        except OSError:
            pass


def _watch_pytest(kernelapp: Any, pytest_pid: int) -> None:
    """Make the kernel's parent poller watch pytest, not this parent: a kernel exits when pytest
    dies, as a spawned one does, and lives on if the fork server dies (its trial goes on)."""
    import time

    started = _start_time(pytest_pid)  # pytest lives: it asked for this kernel

    class WatchPytest(kernelapp.ParentPollerUnix):
        def run(self) -> None:
            while True:
                reused = started is not None and _start_time(pytest_pid) != started  # its pid another's now
                if reused or not _exists(pytest_pid):
                    os._exit(1)
                time.sleep(1.0)

    if pytest_pid > 1:
        kernelapp.ParentPollerUnix = WatchPytest


def _start_time(pid: int) -> int | None:
    """When ``pid`` started (``/proc/<pid>/stat`` field 22, as :func:`pytest_mitosis.core.processes.start_time`
    reads it; this process imports the standard library only), or ``None`` when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            return int(stream.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _exists(pid: int) -> bool:
    """Whether ``pid`` runs: a zombie has exited (its parent may be waiting for our output to end)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            return stream.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except (OSError, IndexError):
        return False


def kernel_config(args: list[str]) -> Any:
    """The configuration a kernel's arguments give, read without argparse; ``None`` for other arguments.

    ipykernel reads its command line with traitlets' argparse loader, which first builds a parser of
    every option of every configurable class: about 8 ms of CPU (and 900 copied pages) in each
    forked kernel, for the two options :mod:`.launch` always passes (``-f FILE`` and
    ``--Class.trait=True|False``). Those are read here; anything else goes to ipykernel's parser.
    """
    from traitlets.config import Config

    config = Config()
    rest = list(args)
    while rest:
        arg = rest.pop(0)
        if arg == "-f" and rest and not rest[0].startswith("-"):  # argparse takes no option as its value
            config.IPKernelApp.connection_file = rest.pop(0)
            continue
        name, equals, value = arg[2:].partition("=")
        section, dot, trait = name.partition(".")
        if not (arg.startswith("--") and equals and dot and section.isidentifier() and trait.isidentifier()):
            return None
        if value not in ("True", "False"):
            return None
        config[section][trait] = value == "True"
    return config


def _kernel_app(kernelapp: Any) -> Any:
    """``IPKernelApp`` configured by its constructor only (see :func:`kernel_config`): its command line
    is not parsed again. Defined when a kernel starts: the parent imports ipykernel at preload only."""

    class ForkedKernelApp(kernelapp.IPKernelApp):
        def parse_command_line(self, argv: Any = None) -> None:
            self.argv: list[str] = []

    return ForkedKernelApp


def main() -> None:
    reply_fd = int(sys.argv[1])
    listen_fd = int(sys.argv[2]) if len(sys.argv) > 2 else None
    Parent(reply_fd, listen_fd).serve()
    # Nothing to flush or clean up (replies are written unbuffered): skip the interpreter's teardown
    # of the preloaded libraries, which would make pytest's session end wait for it.
    os._exit(0)


if __name__ == "__main__":
    main()
