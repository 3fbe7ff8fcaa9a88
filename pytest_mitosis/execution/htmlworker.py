"""A trial's notebook and HTML page written by a helper process, beside the pytest process.

Importing nbconvert and compiling its templates costs about half a second (a second on a
loaded machine), and exporting a trial's page about a tenth of one. In the pytest process
that was serial work before the first trial's cells could run, and after every trial's. The
helper, ``python -m pytest_mitosis.execution.htmlworker REPLY_FD``, starts with the session
(before pytest collects) and prepares the exporter on the other core; each trial hands it the
executed notebook and goes on with its own files (``trial.yaml``, the outcome) meanwhile.

A trial waits for its pages before its folder moves into place, so its outcome is reported,
and its record finished, only once its files are complete. The helper ignores SIGINT and
SIGTERM (a Ctrl-C is pytest's to handle): an interrupted trial waits for the page being
written, then removes its staging folder, so nothing is written into a folder being removed.
The helper exits when pytest closes its pipe (or dies). When it cannot start, dies, or fails
in a way other than the filesystem's (a disk full is reported like any unwritable file), the
pages are written in the pytest process (:class:`.artifacts.HtmlWriter`), which reports the problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import profile

if TYPE_CHECKING:
    import socket

    from .artifacts import HtmlWriter
    from .lines import Replies

#: the longest wait for one notebook's pages (a huge notebook on a loaded machine)
REPLY_TIMEOUT = 600.0
#: after a Ctrl-C, the longest wait for the page being written (then the helper is stopped)
INTERRUPTED_TIMEOUT = 10.0


class HtmlWorker:
    """The pytest side: the helper process, and a fallback writer in this process when it is unusable.

    ``HtmlWorker()`` starts the session's own helper; with ``listener`` (pytest-xdist's controller,
    see :mod:`.shared`) the helper also serves the workers that connect to it, and
    ``HtmlWorker(connect=PATH)`` is such a worker: it uses the controller's helper, or, when that
    cannot be reached, starts its own.
    """

    def __init__(self, listener: socket.socket | None = None, connect: str | None = None) -> None:
        self._fallback: HtmlWriter | None = None
        self._next = 0
        self._replies: Replies | None = None
        self._process: subprocess.Popen[bytes] | None = None
        #: the socket to a shared helper (the controller's, see :mod:`.shared`)
        self._connection: socket.socket | None = None
        if connect is not None:
            from .lines import connect as connect_to

            try:
                self._connection = connect_to(connect)
            except OSError:  # the controller's helper is gone: this worker's own
                pass
        if self._connection is not None:
            from .lines import Replies

            self._replies = Replies(self._connection.fileno())
            return
        read, write = os.pipe()
        extra = [str(listener.fileno())] if listener is not None else []
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pytest_mitosis.execution.htmlworker", str(write), *extra],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(write, *([listener.fileno()] if listener is not None else [])),
            )
            from .lines import Replies

            self._replies = Replies(read)
        except OSError:  # pages are written here instead
            os.close(read)
        finally:
            os.close(write)

    def started(self) -> bool:
        """Whether the helper process started (or this worker is connected to the controller's)."""
        return self._process is not None or self._connection is not None

    def _writer(self) -> HtmlWriter:
        if self._fallback is None:
            from .artifacts import HtmlWriter

            self._fallback = HtmlWriter()
        return self._fallback

    def _usable(self) -> bool:
        if self._connection is not None:
            return True
        process = self._process
        return process is not None and process.stdin is not None and process.poll() is None

    def write(
        self, nb: Any, notebook: Path, page: Path, title: str, timeout: float | None = None
    ) -> Callable[[], None]:
        """Start writing ``nb`` to ``notebook`` and its HTML to ``page``; returns the wait for both.

        ``timeout`` (``--mitosis-timeout``): when the helper has not written both that many seconds
        from now, it is stopped and the wait raises :class:`.artifacts.SavingTimedOut` (the
        pages are not written here instead: what took the helper that long would take as long here).
        """
        deadline = time.monotonic() + (REPLY_TIMEOUT if timeout is None else min(timeout, REPLY_TIMEOUT))
        if not self._usable():
            return self._writer().write(nb, notebook, page, title)
        self._next += 1
        request = self._next
        message = {"id": request, "nb": nb, "ipynb": str(notebook), "html": str(page), "title": title}
        try:
            from .lines import send

            if self._connection is not None:
                send(self._connection.fileno(), message)
            else:
                assert self._process is not None and self._process.stdin is not None
                self._process.stdin.write(json.dumps(message).encode() + b"\n")
                self._process.stdin.flush()
        except (OSError, ValueError):
            self._stop()
            return self._writer().write(nb, notebook, page, title)
        return lambda: self._wait(request, nb, notebook, page, title, deadline, timeout)

    def _wait(
        self,
        request: int,
        nb: Any,
        notebook: Path,
        page: Path,
        title: str,
        deadline: float,
        timeout: float | None = None,
    ) -> None:
        """Wait for the helper's reply; a Ctrl-C meanwhile is raised once the helper is done with the
        folder (it would otherwise write into a folder being removed): at most
        :data:`INTERRUPTED_TIMEOUT` later, when the helper is stopped if it has not answered."""
        interrupted: BaseException | None = None
        reply: dict[str, Any] | None = None
        while reply is None:
            try:
                reply = self._reply(request, deadline)
            except KeyboardInterrupt as err:
                if interrupted is None:
                    deadline = min(deadline, time.monotonic() + INTERRUPTED_TIMEOUT)
                interrupted = interrupted or err
        if interrupted is not None:
            raise interrupted
        if reply.get("late") and timeout is not None:
            from .artifacts import SavingTimedOut

            raise SavingTimedOut(timeout)
        if reply.get("oserror"):
            number, text, filename = reply["oserror"]
            raise OSError(number, text, filename)
        if reply.get("error") or reply.get("gone"):  # nbconvert failed, or the helper died: written here
            self._writer().write(nb, notebook, page, title)()

    def _reply(self, request: int, deadline: float) -> dict[str, Any]:
        """The reply to ``request`` (``{"gone": ...}`` when the helper died or does not answer)."""
        if self._replies is None:
            return {"gone": "the HTML helper was stopped"}
        while True:
            try:
                message = self._replies.next(deadline)
            except (EOFError, OSError):
                self._stop()
                return {"gone": "the HTML helper died"}
            if message is None:
                self._stop(kill=True)  # a helper that does not answer writes nothing more
                return {"gone": "the HTML helper did not answer", "late": True}
            if message.get("id") == request:
                return message

    def _stop(self, kill: bool = False) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:  # the shared helper goes on serving the other workers
            connection.close()
            self._replies = None
        process, self._process = self._process, None
        if process is None:
            return
        if kill:
            process.kill()
        if process.stdin is not None:
            try:
                process.stdin.close()
            except OSError:
                pass
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def close(self) -> None:
        """Stop the helper (it finishes the page it writes, if any) and close its pipe; one that was
        never sent a page is killed at once (it may still be importing nbconvert, and writes nothing).
        A worker's connection to the controller's helper is closed; the helper is the controller's."""
        self._stop(kill=self._next == 0)
        replies, self._replies = self._replies, None
        if replies is not None:
            os.close(replies.fd)


def serve(reply_fd: int, listen_fd: int | None = None) -> None:
    """The helper: prepare the exporter, then write the pages of each notebook it is sent, by its
    owner or (``listen_fd``, see :mod:`.lines`) by a worker connected to it."""
    import signal

    from .lines import Peer, Server

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server = Server(reply_fd, listen_fd)  # workers may connect while nbconvert is imported
    import nbformat

    from .artifacts import HtmlWriter

    writer = HtmlWriter()
    writer.prepare()

    def handle(peer: Peer, request: dict[str, Any]) -> None:
        reply: dict[str, Any] = {"id": request.get("id")}
        try:
            with profile.timed("notebook received"):
                nb = nbformat.from_dict(request["nb"])
            writer.write(nb, Path(request["ipynb"]), Path(request["html"]), str(request["title"]))
        except OSError as err:
            reply["oserror"] = [err.errno, err.strerror or str(err), err.filename]
        except Exception as err:  # the pytest process writes the pages itself and reports the error
            reply["error"] = f"{type(err).__name__}: {err}"
        peer.reply(reply)
        profile.flush("html", str(request.get("title")))

    server.serve(handle, lambda peer: None)


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
    os._exit(0)  # nothing to flush: skip the teardown of nbconvert's modules
