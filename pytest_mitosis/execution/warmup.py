"""Work started before it is needed, so that a trial waits for as little as possible.

The kernels' warm parent and the HTML helper process (started before pytest collects), the
next trial's kernel (launched while pytest collects, then while the previous trial runs), and
the session's provenance, its git state and environment (read in a thread while pytest collects). Every kernel still
runs one trial only. ``close`` stops whatever is left at the end of the session.

No thread of ours runs while pytest's logging plugin walks ``logging.Logger.manager.loggerDict``
(at the start and end of collection and of every test phase): a thread that imports a module
creates loggers, and the walk fails with "dictionary changed size during iteration", an
INTERNALERROR. So the provenance thread's imports happen in the main thread before it starts, and
the session joins it before collection ends (:meth:`WorkAhead.settle`); nbconvert is imported by
the HTML helper, in its own process. No pytest import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config.experiments import Collected
    from ..config.project import ProjectConfig
    from ..config.settings import Settings
    from .forkserver import ForkServer
    from .htmlworker import HtmlWorker
    from .launch import Launched


class _Provenance(threading.Thread):
    """``read()`` in a thread; :meth:`result` joins it and returns (or raises) what it did."""

    def __init__(self, read: Callable[[], Any]) -> None:
        super().__init__(name="mitosis-provenance", daemon=True)
        self._read = read
        self._value: Any = None
        self._error: BaseException | None = None

    def run(self) -> None:
        try:
            self._value = self._read()
        except BaseException as err:  # handed to the main thread by result()
            self._error = err

    def result(self) -> Any:
        self.join()
        if self._error is not None:
            raise self._error
        return self._value


class WorkAhead:
    """One session's work-ahead: at most one spare kernel, one HTML helper process, one provenance thread,
    and the fork server the kernels are forked from (``kernel="fork"``, see :mod:`.forkserver`).

    ``kernel`` is ``"fork"`` (asked for), ``"auto"`` (the default: fork where the platform
    allows it) or ``"spawn"``. ``preload`` is the ini's ``mitosis_preload`` (``name`` adds, ``-name`` removes);
    ``steps`` returns the investigation's root and its step modules (what the parent preloads is
    found from them, see :mod:`.preload`) or raises when the project cannot be read.
    """

    def __init__(
        self,
        kernel: str = "spawn",
        preload: tuple[str, ...] = (),
        steps: Callable[[], tuple[Path, list[str]]] | None = None,
        shared: dict[str, str] | None = None,
    ) -> None:
        self._launched: Launched | None = None
        self._html: HtmlWorker | None = None
        self._provenance: _Provenance | None = None
        self.kernel = kernel
        self._preload = preload
        self._steps = steps
        #: on an xdist worker, the controller's warm parent and HTML helper to connect to (see :mod:`.shared`)
        self._shared = dict(shared or {})
        self._server: ForkServer | None = None
        #: why kernels are spawned although forking was asked for (said once, see :meth:`problem`)
        self._problem: str | None = None
        self._warned = False
        self._refined = False
        #: the installed modules the steps hold, when a fork collected them (pytest's process has none)
        self._imported: list[str] | None = None

    def server(self, cwd: Path) -> ForkServer | None:
        """The fork server for kernels in ``cwd`` (started on first use), or ``None`` when kernels are spawned."""
        if self.kernel not in ("fork", "auto") or self._problem is not None:
            return None
        if self._server is not None:
            if self._server.problem is not None:
                self._problem = self._server.problem
                return None
            # another directory (never within a session): spawned, the parent's kernels live on
            return self._server if self._server.usable_for(cwd) else None
        from .forkserver import ForkServer, fork_unavailable, kernel_env
        from .preload import adjust, discover

        self._problem = fork_unavailable()
        if self._problem is not None:
            self._warned = self.kernel == "auto"  # the platform's default, not a failure: nothing to warn about
            return None
        try:
            root, modules = self._steps() if self._steps is not None else (cwd, [])
            preload = adjust(discover(root, modules), self._preload)
            self._server = None
            if "fork" in self._shared:
                try:
                    self._server = ForkServer(cwd, kernel_env(), preload, root, connect=self._shared["fork"])
                except OSError:  # the controller's parent is gone: this worker's own
                    pass
            if self._server is None:
                self._server = ForkServer(cwd, kernel_env(), preload, root)
        except Exception as err:  # the project cannot be read, the parent cannot start: spawn
            self._problem = f"the fork server could not start ({type(err).__name__}: {err})"
            return None
        return self._server

    def collect(self, project: ProjectConfig, settings: Settings, quiet: bool = True) -> list[Collected] | None:
        """The experiments, collected in a fork of the warm parent (see :mod:`.forkcollect`), or ``None``
        when there is no usable parent for this session (then pytest's process collects). ``quiet``:
        pytest captures output (what the steps' import prints is dropped)."""
        if self._server is None or self._server.problem is not None:
            return None
        from .forkcollect import collect_in_fork

        found = collect_in_fork(self._server, project, settings, quiet)
        if found is None:
            return None
        experiments, self._imported = found
        return experiments

    def problem(self) -> str | None:
        """Why kernels are spawned instead of forked, the first time it is asked after it happened."""
        if self._server is not None and self._server.problem is not None and self._problem is None:
            self._problem = self._server.problem
        if self._problem is None or self._warned:
            return None
        self._warned = True
        return self._problem

    def _refine(self) -> None:
        """Once the steps are imported (the first trial runs): preload what they hold that reading
        their imports missed (the ini's ``-name`` still applies)."""
        self._refined = True
        from .preload import adjust, imported_by

        server = self._server
        if server is None:
            return
        try:
            root, modules = self._steps() if self._steps is not None else (server.cwd, [])
            held = self._imported if self._imported is not None else imported_by(modules, root)
            more = [m for m in adjust(held, self._preload) if m not in server.requested]
            if more:
                server.preload(more)
        except Exception:  # an optimisation only: the trials import whatever is missing
            pass

    def _stop_server(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None

    def html(self) -> HtmlWorker:
        """What writes each trial's notebook and HTML page: a helper process (see :mod:`.htmlworker`),
        started on first use unless :meth:`start` started it already."""
        if self._html is None:
            from .htmlworker import HtmlWorker

            self._html = HtmlWorker(connect=self._shared.get("html"))
        return self._html

    def finish_pages(self, interrupted: bool = False) -> tuple[list[str], bool]:
        """Wait for the pages the trials asked for (see :meth:`.htmlworker.HtmlWorker.finish`):
        ``(one note per trial whose page is not nbconvert's, whether a Ctrl-C came during the wait)``.
        After a Ctrl-C (``interrupted``) the wait is as short as for an interrupted trial's page, and the
        pages not written by then are named, not rendered here."""
        if self._html is None:
            return [], False
        from .htmlworker import INTERRUPTED_TIMEOUT

        notes = self._html.finish(INTERRUPTED_TIMEOUT if interrupted else None, interrupted=interrupted)
        return notes, self._html.interrupted and not interrupted

    def start(self, cwd: Path) -> None:
        """Before pytest collects: start the warm parent (it imports the steps' libraries while pytest
        does) and the HTML helper (it prepares nbconvert meanwhile), each on the other core."""
        self.server(cwd)
        self.html()

    def launch(self, cwd: Path) -> None:
        """Start a kernel for the next trial now, unless one is waiting already."""
        if self._launched is None:
            from .launch import Launched

            server = self.server(cwd)
            try:
                self._launched = Launched(cwd, server)
            except Exception:
                if server is None:
                    raise
                # the fork server is gone (its problem is warned about once): this kernel is spawned
                self._launched = Launched(cwd)

    def take(self, next_in: Path | None) -> Launched | None:
        """The waiting kernel (or ``None``); when another trial follows, start its kernel now."""
        launched, self._launched = self._launched, None
        if self._server is not None and not self._refined:
            self._refine()
        if next_in is not None:
            self.launch(next_in)
        return launched

    def discard(self) -> None:
        """Stop the waiting kernel, if any (no trial will use it)."""
        if self._launched is not None:
            self._launched.close()
            self._launched = None

    def gather(self, read: Callable[[], Any], imports: Callable[[], None] | None = None) -> None:
        """Run ``read`` in a thread after ``imports`` ran here (the thread must import nothing new)."""
        if self._provenance is None:
            if imports is not None:
                imports()
            self._provenance = _Provenance(read)
            self._provenance.start()

    def settle(self) -> None:
        """Wait for the provenance thread (its result or error is kept for :meth:`provenance`)."""
        if self._provenance is not None:
            self._provenance.join()

    def provenance(self) -> Any:
        """What ``gather`` read (waiting for it), or ``None`` when nothing was gathered ahead."""
        return self._provenance.result() if self._provenance is not None else None

    def close(self) -> None:
        # the fork server first: when no kernel was taken from it (a refused session) it is killed at
        # once, and closing the waiting kernel then has no fork to wait for
        self._stop_server()
        self.discard()
        self.settle()
        if self._html is not None:
            self._html.close()
            self._html = None
        import sys

        launch = sys.modules.get(f"{__package__}.launch")  # imported only once a kernel was launched
        if launch is not None:
            launch.close_shared_context()
