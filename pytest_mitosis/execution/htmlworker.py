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
pages are written in the pytest process as before, which reports the problem as it did.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

#: the longest wait for one notebook's pages (a huge notebook on a loaded machine)
REPLY_TIMEOUT = 600.0
#: after a Ctrl-C, the longest wait for the page being written (then the helper is stopped)
INTERRUPTED_TIMEOUT = 10.0


class HtmlWorker:
    """The pytest side: the helper process, and a fallback writer in this process when it is unusable."""

    def __init__(self) -> None:
        self._fallback: Any = None  # artifacts.HtmlWriter
        self._next = 0
        self._buffer = b""
        self._reply_fd: int | None = None
        self._process: subprocess.Popen[bytes] | None = None
        read, write = os.pipe()
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "pytest_mitosis.execution.htmlworker", str(write)],
                stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(write,),
            )
            self._reply_fd = read
        except OSError:  # pages are written here instead
            os.close(read)
        finally:
            os.close(write)

    def _writer(self) -> Any:
        if self._fallback is None:
            from .artifacts import HtmlWriter

            self._fallback = HtmlWriter()
        return self._fallback

    def write(self, nb: Any, notebook: Path, page: Path, title: str) -> Callable[[], None]:
        """Start writing ``nb`` to ``notebook`` and its HTML to ``page``; returns the wait for both."""
        process = self._process
        if process is None or process.stdin is None or process.poll() is not None:
            return self._writer().write(nb, notebook, page, title)
        self._next += 1
        request = self._next
        line = json.dumps({"id": request, "nb": nb, "ipynb": str(notebook), "html": str(page), "title": title})
        try:
            process.stdin.write(line.encode() + b"\n")
            process.stdin.flush()
        except (OSError, ValueError):
            self._stop()
            return self._writer().write(nb, notebook, page, title)
        return lambda: self._wait(request, nb, notebook, page, title)

    def _wait(self, request: int, nb: Any, notebook: Path, page: Path, title: str) -> None:
        """Wait for the helper's reply; a Ctrl-C meanwhile is raised once the helper is done with the
        folder (it would otherwise write into a folder being removed): at most
        :data:`INTERRUPTED_TIMEOUT` later, when the helper is stopped if it has not answered."""
        interrupted: BaseException | None = None
        deadline = time.monotonic() + REPLY_TIMEOUT
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
        if reply.get("oserror"):
            number, text, filename = reply["oserror"]
            raise OSError(number, text, filename)
        if reply.get("error") or reply.get("gone"):  # nbconvert failed, or the helper died: here, as before
            self._writer().write(nb, notebook, page, title)()

    def _reply(self, request: int, deadline: float) -> dict[str, Any]:
        """The reply to ``request`` (``{"gone": ...}`` when the helper died or does not answer)."""
        assert self._reply_fd is not None
        while True:
            while b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                message = json.loads(line)
                if message.get("id") == request:
                    return dict(message)
            left = deadline - time.monotonic()
            ready, _, _ = select.select([self._reply_fd], [], [], max(0.0, left))
            chunk = os.read(self._reply_fd, 65536) if ready else b""
            if not chunk:
                self._stop(kill=not ready)  # a helper that does not answer writes nothing more
                return {"gone": "the HTML helper died" if ready else "the HTML helper did not answer"}
            self._buffer += chunk

    def _stop(self, kill: bool = False) -> None:
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
        never sent a page is killed at once (it may still be importing nbconvert, and writes nothing)."""
        self._stop(kill=self._next == 0)
        if self._reply_fd is not None:
            os.close(self._reply_fd)
            self._reply_fd = None


def serve(reply_fd: int) -> None:
    """The helper: prepare the exporter, then write the pages of each notebook it is sent."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    import nbformat

    from .artifacts import HtmlWriter

    writer = HtmlWriter()
    writer.prepare()
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
        except ValueError:
            continue
        reply: dict[str, Any] = {"id": request.get("id")}
        try:
            nb = nbformat.from_dict(request["nb"])
            writer.write(nb, Path(request["ipynb"]), Path(request["html"]), str(request["title"]))
        except OSError as err:
            reply["oserror"] = [err.errno, err.strerror or str(err), err.filename]
        except Exception as err:  # the pytest process writes the pages itself and reports the error
            reply["error"] = f"{type(err).__name__}: {err}"
        data = (json.dumps(reply) + "\n").encode()
        while data:
            data = data[os.write(reply_fd, data) :]


if __name__ == "__main__":
    serve(int(sys.argv[1]))
    os._exit(0)  # nothing to flush: skip the teardown of nbconvert's modules
