"""One warm parent and one HTML helper for all of pytest-xdist's local workers, started by the controller.

Were each worker to start its own, on 2 cores two warm parents importing numpy and
matplotlib, and two HTML helpers importing nbconvert, would compete with the workers' own start
and collection (about 1.8 s of CPU per worker, as much as seven sine trials). The controller
starts them once, with a listening Unix socket each (in a private folder, see :mod:`.private`),
when it configures its first local worker, and hands the sockets' paths to every local
worker in ``workerinput`` (see :func:`worker_paths`). A worker connects instead of starting
its own; when it cannot connect, it starts its own. A worker on another host,
or with another Python, is not handed them.

Each kernel is still forked for one trial of one worker, with that worker's environment and
directory, and watches that worker's pid; the parent kills a worker's kernels when the
worker's connection closes. The controller stops both helpers when its session ends.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .forkserver import ForkServer
    from .htmlworker import HtmlWorker

#: the ``workerinput`` key of the sockets' paths (``{"fork": PATH, "html": PATH}``)
WORKERINPUT_KEY = "mitosis_helpers"


def is_local(spec: Any) -> bool:
    """Whether an xdist gateway spec (``execnet.XSpec``) is a process on this machine, with this
    Python (``popen``, no ``python=`` of another interpreter): the workers that can share."""
    if not getattr(spec, "popen", False) or getattr(spec, "ssh", None) or getattr(spec, "socket", None):
        return False
    python = getattr(spec, "python", None)
    return python is None or shutil.which(python) in (sys.executable, os.path.realpath(sys.executable))


class SharedHelpers:
    """The controller's warm parent and HTML helper, each listening for the workers.

    ``kernel`` and ``preload`` are the session's (``--mitosis-kernel``, ``mitosis_preload``);
    ``steps`` returns the investigation's root and its step modules (see :class:`.warmup.WorkAhead`).
    Nothing here raises: a helper that cannot start is simply not handed to the workers.
    """

    def __init__(
        self, cwd: Path, kernel: str, preload: tuple[str, ...], steps: Callable[[], tuple[Path, list[str]]]
    ) -> None:
        from .lines import listening_socket
        from .private import private_folder

        self.paths: dict[str, str] = {}
        self._fork: ForkServer | None = None
        self._html: HtmlWorker | None = None
        self._folder = private_folder()  # this user's only; swept if the controller is killed
        if kernel in ("fork", "auto"):
            from .forkserver import ForkServer, fork_unavailable, kernel_env
            from .preload import adjust, discover

            if fork_unavailable() is None:
                path = os.path.join(self._folder, "fork")
                try:
                    root, modules = steps()
                    listener = listening_socket(path)
                    try:
                        self._fork = ForkServer(
                            cwd, kernel_env(), adjust(discover(root, modules), preload), root, listener=listener
                        )
                    finally:
                        listener.close()  # the parent holds it now
                    self.paths["fork"] = path
                except Exception:  # the project cannot be read, the parent cannot start: each worker its own
                    pass
        from .htmlworker import HtmlWorker

        path = os.path.join(self._folder, "html")
        try:
            listener = listening_socket(path)
            try:
                self._html = HtmlWorker(listener=listener)
            finally:
                listener.close()
            if self._html.started():
                self.paths["html"] = path
        except OSError:
            pass

    def close(self, used: bool) -> None:
        """Stop both (the workers are done). ``used``: trials ran, so the parent is idle and kills the
        kernels left as it exits; otherwise it may still be importing, and is killed at once."""
        if self._fork is not None:
            self._fork.close(graceful=used)
            self._fork = None
        if self._html is not None:
            self._html.close(used=used)  # a worker that died may have left pages queued: they are written
            self._html = None
        shutil.rmtree(self._folder, ignore_errors=True)


def worker_paths(config: Any) -> dict[str, str]:
    """On an xdist worker: the controller's helpers it may connect to (none elsewhere)."""
    workerinput = getattr(config, "workerinput", None)
    paths = workerinput.get(WORKERINPUT_KEY) if isinstance(workerinput, dict) else None
    return {k: str(v) for k, v in paths.items()} if isinstance(paths, dict) else {}
