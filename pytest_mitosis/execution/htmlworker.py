"""A trial's notebook and HTML page written by a helper process, beside the pytest process.

Importing nbconvert and compiling its templates costs about half a second (a second on a
loaded machine), and exporting a trial's page 25 to 40 ms: as long as the rest of a trivial
trial. The helper, ``python -m pytest_mitosis.execution.htmlworker REPLY_FD``, starts with the
session (before pytest collects) and prepares the exporter on the other core. Each trial hands
it the executed notebook and goes on with its own files (``trial.yaml``, the outcome) while the
helper writes the notebook; then, once the folder is in place, the trial asks for its page
(:meth:`HtmlWorker.page_later`) and does not wait for it: the helper renders the pages in the
background, in order, while the next trials run, each written to a temporary name and renamed
(never a half-written ``.html``). Its replies are read as the next trials go by.

Why the notebook is still waited for and the page is not: the record names the trial's folder,
and a crash must never leave a record whose notebook is missing; the page is built from that
notebook, so it can always be built again (``jupyter nbconvert --to html``). A trial's folder
moves into place, and its record is finished, once its notebook is complete; its page is
complete by the time the session ends: :meth:`HtmlWorker.finish` waits for every page asked
for (``session_end.py`` calls it before the report is refreshed; :meth:`HtmlWorker.close` calls
it too, so a caller that runs one trial in a process gets its page by closing the worker). A page
the helper could not render is rendered in this process; one that took longer than
``--mitosis-timeout``, or was still queued when a Ctrl-C came, is replaced by a short page saying
why and how to build it, and named in what :meth:`~HtmlWorker.finish` returns.

The helper ignores SIGINT and SIGTERM (a Ctrl-C is pytest's to handle). An interrupted trial
still waits for its own page in its staging folder (the session ends with it: nothing to gain),
so nothing is written into a folder being removed. The helper exits when pytest closes its pipe
(or dies), once the pages queued are written: a killed session's recorded trials still get theirs.
When it cannot start, dies, or fails in a way other than the filesystem's (a disk
full is reported like any unwritable file), the files are written in the pytest process
(:class:`.artifacts.HtmlWriter`), which reports the problem.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core import profile

if TYPE_CHECKING:
    import socket

    from .artifacts import HtmlWriter
    from .lines import Peer, Replies

#: the longest wait for one notebook's pages (a huge notebook on a loaded machine)
REPLY_TIMEOUT = 600.0
#: after a Ctrl-C, the longest wait for the page being written (then the helper is stopped)
INTERRUPTED_TIMEOUT = 10.0
#: notebooks the helper keeps after saving them, for their pages (rendered in order, soon after)
KEPT = 64


@dataclass(frozen=True)
class _Page:
    """A page asked for and not written yet: what is needed to write it here, or to say why it is not."""

    notebook: Path
    page: Path
    title: str


class HtmlWorker:
    """The pytest side: the helper process, and a fallback writer in this process when it is unusable.

    ``HtmlWorker()`` starts the session's own helper; with ``listener`` (pytest-xdist's controller,
    see :mod:`.shared`) the helper also serves the workers that connect to it, and
    ``HtmlWorker(connect=PATH)`` is such a worker: it uses the controller's helper, or, when that
    cannot be reached, starts its own.

    A caller that runs trials with it (a session, or one trial in a process of its own) must call
    :meth:`finish` (the problems it returns are the user's to read) and then :meth:`close` before
    it exits: until then the pages asked for with :meth:`page_later` may still be rendering.
    """

    def __init__(self, listener: socket.socket | None = None, connect: str | None = None) -> None:
        self._fallback: HtmlWriter | None = None
        self._next = 0
        self._replies: Replies | None = None
        self._process: subprocess.Popen[bytes] | None = None
        #: the socket to a shared helper (the controller's, see :mod:`.shared`)
        self._connection: socket.socket | None = None
        #: request id → the page asked for (:meth:`page_later`) and not answered yet
        self._pages: dict[int, _Page] = {}
        #: replies read while waiting for another one (a notebook's, its page's)
        self._answers: dict[int, dict[str, Any]] = {}
        #: pages the helper answered it could not write: ``(page, render here?, why)``, handled by :meth:`finish`
        self._failed: list[tuple[_Page, bool, str]] = []
        #: ``--mitosis-timeout`` as the last page was asked for: how long :meth:`finish` waits for one page
        self._timeout: float | None = None
        #: the request whose page the helper said it began rendering last
        self._rendering: int | None = None
        #: what :meth:`finish` returns: the trials whose page is not nbconvert's, and why
        self._notes: list[str] = []
        #: whether the last :meth:`finish` was cut short by a Ctrl-C (its pages are named, not written)
        self.interrupted = False
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

    def _send(self, message: dict[str, Any]) -> int | None:
        """Send ``message`` with a new request id (returned); ``None`` when the helper is unusable."""
        if not self._usable():
            return None
        self._next += 1
        message["id"] = self._next
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
            return None
        return self._next

    def _deadline(self, timeout: float | None) -> float:
        return time.monotonic() + (REPLY_TIMEOUT if timeout is None else min(timeout, REPLY_TIMEOUT))

    def write(
        self, nb: Any, notebook: Path, page: Path, title: str, timeout: float | None = None
    ) -> Callable[[], None]:
        """Start writing ``nb`` to ``notebook`` and its HTML to ``page``; returns the wait for both
        (a trial whose page must be complete before its folder moves: an interrupted one).

        ``timeout`` (``--mitosis-timeout``): when the helper has not written both that many seconds
        from now, it is stopped and the wait raises :class:`.artifacts.SavingTimedOut` (the
        pages are not written here instead: what took the helper that long would take as long here).
        """
        deadline = self._deadline(timeout)
        saving = self._send({"nb": nb, "ipynb": str(notebook), "title": title})
        rendering = self._send({"page": str(notebook), "html": str(page), "title": title}) if saving else None
        if saving is None or rendering is None:
            return self._writer().write(nb, notebook, page, title)
        requests = [saving, rendering]
        return lambda: self._wait(
            requests, deadline, timeout, lambda: self._writer().write(nb, notebook, page, title)()
        )

    def save(self, nb: Any, notebook: Path, title: str, timeout: float | None = None) -> Callable[[], None]:
        """Start writing ``nb`` to ``notebook`` (its page is asked for later, :meth:`page_later`); returns
        the wait for it. ``timeout`` as for :meth:`write`."""
        deadline = self._deadline(timeout)
        self._drain()
        saving = self._send({"nb": nb, "ipynb": str(notebook), "title": title})
        if saving is None:
            return self._writer().save(nb, notebook)
        return lambda: self._wait([saving], deadline, timeout, lambda: self._writer().save(nb, notebook)())

    def page_later(
        self, notebook: Path, page: Path, title: str, timeout: float | None = None, saved_as: Path | None = None
    ) -> None:
        """Have the page of ``notebook`` (written, in its final folder) rendered to ``page`` in the background;
        :meth:`finish` waits for it. Rendered here, now, when the helper is unusable.

        ``saved_as``: the path :meth:`save` wrote it to (its staging folder): the helper renders the
        notebook it kept under that path instead of reading ``notebook`` back."""
        self._timeout = timeout
        wanted = _Page(notebook, page, title)
        asked = {"page": str(notebook), "html": str(page), "title": title}
        request = self._send(asked if saved_as is None else {**asked, "saved": str(saved_as)})
        if request is None:
            self._failed.append((wanted, True, "the HTML helper is gone"))
            self._write_failed()  # here, now
            return
        self._pages[request] = wanted

    def pending(self) -> int:
        """How many pages asked for are not answered yet (read what the helper has answered so far)."""
        self._drain()
        return len(self._pages)

    def _wait(self, requests: list[int], deadline: float, timeout: float | None, fallback: Callable[[], None]) -> None:
        """Wait for the helper's replies to ``requests``; a Ctrl-C meanwhile is raised once the helper is
        done with the folder (it would otherwise write into a folder being removed): at most
        :data:`INTERRUPTED_TIMEOUT` later, when the helper is stopped if it has not answered.
        ``fallback`` writes here what the helper could not (nbconvert failed, or the helper died)."""
        interrupted: BaseException | None = None
        replies: list[dict[str, Any]] = []
        for request in requests:
            reply: dict[str, Any] | None = None
            while reply is None:
                try:
                    reply = self._reply(request, deadline)
                except KeyboardInterrupt as err:
                    if interrupted is None:
                        deadline = min(deadline, time.monotonic() + INTERRUPTED_TIMEOUT)
                    interrupted = interrupted or err
            replies.append(reply)
        if interrupted is not None:
            raise interrupted
        for reply in replies:
            if reply.get("late") and timeout is not None:
                from .artifacts import SavingTimedOut

                raise SavingTimedOut(timeout)
            if reply.get("oserror"):
                number, text, filename = reply["oserror"]
                raise OSError(number, text, filename)
        if any(reply.get("error") or reply.get("gone") for reply in replies):
            fallback()

    def _reply(self, request: int, deadline: float) -> dict[str, Any]:
        """The reply to ``request`` (``{"gone": ...}`` when the helper died or does not answer); the
        replies to pages read meanwhile are filed (see :meth:`_file`)."""
        while True:
            if request in self._answers:
                return self._answers.pop(request)
            if self._replies is None:
                return {"gone": "the HTML helper was stopped"}
            try:
                message = self._replies.next(deadline)
            except (EOFError, OSError):
                self._stop()
                return {"gone": "the HTML helper died"}
            if message is None:
                self._stop(kill=True)  # a helper that does not answer writes nothing more
                return {"gone": "the HTML helper did not answer", "late": True}
            self._file(message)

    def _file(self, message: dict[str, Any]) -> None:
        """Keep a reply: a page's is done with (a failure noted for :meth:`finish`), another kept for its waiter."""
        request = message.get("id")
        if message.get("started"):  # the helper began rendering this page (see :meth:`finish`)
            self._rendering = request if isinstance(request, int) else None
            return
        wanted = self._pages.pop(request, None) if isinstance(request, int) else None
        if wanted is None:
            if isinstance(request, int):
                self._answers[request] = message
            return
        if message.get("oserror"):
            number, text, filename = message["oserror"]
            self._failed.append((wanted, False, f"it could not be written: {text} ({filename})"))
        elif message.get("error"):
            self._failed.append((wanted, True, str(message["error"])))

    def _drain(self) -> None:
        """Read the replies the helper has sent so far, without waiting (its pipe never fills up, and
        what is kept about pages stays small however long the sweep)."""
        while self._replies is not None:
            try:
                message = self._replies.next(time.monotonic())
            except (EOFError, OSError):
                self._stop()
                return
            if message is None:
                return
            self._file(message)

    def finish(self, patience: float | None = None, interrupted: bool = False) -> list[str]:
        """Wait until every page asked for is written; one message per trial whose page is not nbconvert's.

        The wait is over when the helper has written no page for ``patience`` seconds (default:
        ``--mitosis-timeout`` as the pages were asked for, else :data:`REPLY_TIMEOUT`): the helper is then
        stopped, the page it was on replaced by a short page saying why. Pages the helper could not
        render (nbconvert failed, the helper died) are rendered here. A Ctrl-C stops the wait at once
        (:attr:`interrupted`), and so does ``patience`` run out after one (``interrupted``: the session
        was interrupted): the pages not written yet are replaced by short pages saying so, and named.
        """
        self.interrupted = False
        if patience is None:
            patience = REPLY_TIMEOUT if self._timeout is None else min(self._timeout, REPLY_TIMEOUT)
        try:
            while self._pages and self._replies is not None:
                # ``patience`` counts from the moment the helper began one of these pages: a helper shared
                # with other workers may render theirs first, for longer than one page may take
                ours = interrupted or self._rendering in self._pages
                try:
                    message = self._replies.next(time.monotonic() + (patience if ours else REPLY_TIMEOUT))
                except (EOFError, OSError):
                    self._stop()
                    break
                if message is None:  # the page it is on took too long: the helper is stopped
                    self._stop(kill=True)
                    if interrupted:
                        self.interrupted = True  # the pages left are named, not rendered here
                        break
                    late = self._pages.pop(self._rendering if self._rendering in self._pages else min(self._pages))
                    why = (
                        f"rendering it took longer than --mitosis-timeout ({self._timeout:g} s)"
                        if self._timeout is not None and patience >= self._timeout
                        else f"the HTML helper wrote no page for {patience:g} s"
                    )
                    self._placeholder(late, why)
                    break
                self._file(message)
        except KeyboardInterrupt:
            self.interrupted = True
            self._stop(kill=True)
        for request in sorted(self._pages):  # the helper is gone: written here, or named after a Ctrl-C
            wanted = self._pages.pop(request)
            self._failed.append((wanted, not self.interrupted, "the session was interrupted before it was rendered"))
        self._write_failed()
        notes, self._notes = self._notes, []
        return notes

    def _write_failed(self) -> None:
        """The pages the helper did not write: rendered here when that may work, else a short page saying why."""
        failed, self._failed = self._failed, []
        for wanted, here, why in failed:
            if here and not self.interrupted:
                from .artifacts import remove_partial

                remove_partial(wanted.page)  # what a helper killed while writing it left
                try:
                    self._writer().page(wanted.notebook, wanted.page, wanted.title)
                    continue
                except KeyboardInterrupt:
                    self.interrupted = True
                    why = "the session was interrupted before it was rendered"
                except Exception as err:  # nbconvert fails here too: the short page says what it raised
                    why = f"nbconvert failed: {type(err).__name__}: {err}"
            self._placeholder(wanted, why)

    def _placeholder(self, wanted: _Page, why: str) -> None:
        """Write the short page that replaces ``wanted``'s, and note it for :meth:`finish` to return."""
        from .artifacts import placeholder_page, remove_partial

        remove_partial(wanted.page)
        note = (
            f"{wanted.title}: its HTML page was not rendered ({why}); its notebook is complete, and "
            f"`jupyter nbconvert --to html {wanted.notebook}` builds the page"
        )
        try:
            placeholder_page(wanted.page, wanted.title, note)
        except OSError as err:
            note += f" (the short page saying so could not be written either: {err.strerror or err})"
        self._notes.append(note)

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

    def close(self, used: bool = False) -> None:
        """Wait for the pages still asked for (:meth:`finish`, when the caller did not), stop the helper
        (it writes the pages queued, if any) and close its pipe; one that was never sent a page is killed
        at once (it may still be importing nbconvert, and writes nothing), unless ``used``: the workers
        it served sent it pages (pytest-xdist's controller, see :mod:`.shared`), and a worker that died
        may have left some queued. A worker's connection to the controller's helper is closed; the
        helper is the controller's."""
        if self._pages or self._failed:
            self.finish()
        self._stop(kill=self._next == 0 and not used)
        replies, self._replies = self._replies, None
        if replies is not None:
            os.close(replies.fd)


def serve(reply_fd: int, listen_fd: int | None = None) -> None:
    """The helper: prepare the exporter, then write each notebook it is sent at once, and each page it is
    asked for in a thread, in order, by its owner or (``listen_fd``, see :mod:`.lines`) by a worker
    connected to it.

    Notebooks first: a trial waits for its notebook, never for a page, so a notebook is written while
    the thread renders (the thread gives the interpreter up every millisecond, not every five). Every
    page asked for is rendered, also once the one who asked has gone: when the owner closes its pipe
    (it waited for its pages, or it was killed: the trials it recorded still get theirs), the helper
    renders what is queued, then exits. Only a kill stops it sooner (the owner's, after a Ctrl-C or
    ``--mitosis-timeout``: it names the pages not written).
    """
    import functools
    import signal
    import threading
    from collections import OrderedDict, deque

    from .lines import Server

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    server = Server(reply_fd, listen_fd)  # workers may connect while nbconvert is imported
    import nbformat

    from .artifacts import HtmlWriter, write_whole

    writer = HtmlWriter()  # prepared by the thread: the first notebook need not wait for nbconvert
    sys.setswitchinterval(0.001)
    queue: deque[tuple[Peer, dict[str, Any]]] = deque()
    ready = threading.Condition()
    replying = threading.Lock()  # one reply at a time on a peer's descriptor: lines never interleave
    stopping = False

    def answer(peer: Peer, request: dict[str, Any], work: Callable[[], None], phase: str) -> None:
        reply: dict[str, Any] = {"id": request.get("id")}
        started = time.perf_counter()
        try:
            work()
        except OSError as err:
            reply["oserror"] = [err.errno, err.strerror or str(err), err.filename]
        except Exception as err:  # the pytest process writes the file itself and reports the error
            reply["error"] = f"{type(err).__name__}: {err}"
        with replying:
            peer.reply(reply)
            profile.add({phase: time.perf_counter() - started})
            profile.flush("html", str(request.get("title")))

    def render() -> None:
        try:
            writer.prepare()
        except Exception:  # each page then says what fails (the pytest process writes it)
            pass
        while True:
            with ready:
                while not queue and not stopping:
                    ready.wait()
                if not queue:
                    return
                peer, request = queue.popleft()
            with replying:  # the owner's patience with this page counts from now (see HtmlWorker.finish)
                peer.reply({"id": request.get("id"), "started": True})
            answer(peer, request, functools.partial(page, request), "HTML page")

    #: the notebooks saved, by the path they were saved to, until their page is rendered: not read back
    #: from disk. Not by title: two trials of one name (two investigations, a rerun) may be saved before
    #: the first one's page is rendered
    saved: OrderedDict[str, Any] = OrderedDict()

    def page(request: dict[str, Any]) -> None:
        notebook, title = Path(request["page"]), str(request["title"])
        with ready:
            nb = saved.pop(str(request.get("saved", request["page"])), None)
        if nb is None:  # saved by another process (the helper was restarted), or forgotten: read it
            writer.page(notebook, Path(request["html"]), title)
        else:
            write_whole(Path(request["html"]), writer(nb, title))

    def save(request: dict[str, Any]) -> None:
        nb = nbformat.from_dict(request["nb"])
        nbformat.write(nb, str(request["ipynb"]))
        with ready:
            saved[str(request["ipynb"])] = nb
            while len(saved) > KEPT:  # pages never asked for (a trial whose folder could not move)
                saved.popitem(last=False)

    def handle(peer: Peer, request: dict[str, Any]) -> None:
        if "page" in request:
            with ready:
                queue.append((peer, request))
                ready.notify()
            return
        answer(peer, request, functools.partial(save, request), "notebook save")

    def gone(peer: Peer) -> None:
        """A worker closed its connection: its pages queued are still written, but no reply goes to its
        descriptor, whose number the next worker to connect may get."""
        with replying:
            peer.write_fd = -1

    renderer = threading.Thread(target=render, name="mitosis-pages", daemon=True)
    renderer.start()
    server.serve(handle, gone)
    with ready:
        stopping = True
        ready.notify()
    renderer.join()


if __name__ == "__main__":
    serve(int(sys.argv[1]), int(sys.argv[2]) if len(sys.argv) > 2 else None)
    os._exit(0)  # nothing to flush: skip the teardown of nbconvert's modules
