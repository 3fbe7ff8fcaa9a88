"""Work started before it is needed, so that a trial waits for as little as possible.

The next trial's kernel (launched while pytest collects, then while the previous trial
runs), and the git and environment facts (read in a thread while pytest collects). Every
kernel still runs one trial only. ``close`` stops whatever is left at the end of the session.

No thread of ours runs while pytest's logging plugin walks ``logging.Logger.manager.loggerDict``
(at the start and end of collection and of every test phase): a thread that imports a module
creates loggers, and the walk fails with "dictionary changed size during iteration", an
INTERNALERROR. So the facts thread's imports happen in the main thread before it starts, and
the session joins it before collection ends (:meth:`Ahead.settle`); nbconvert's exporter is
prepared in the main thread while a kernel boots in its own process. No pytest import.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any


class _Facts(threading.Thread):
    """``read()`` in a thread; :meth:`result` joins it and returns (or raises) what it did."""

    def __init__(self, read: Callable[[], Any]) -> None:
        super().__init__(name="mitosis-facts", daemon=True)
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


class Ahead:
    """One session's work-ahead: at most one spare kernel, one HTML writer, one facts thread."""

    def __init__(self) -> None:
        self._launched: Any = None  # kernel.Launched
        self._html: Any = None  # artifacts.HtmlWriter
        self._facts: _Facts | None = None

    def html(self) -> Any:
        """The HTML writer; it prepares nbconvert's exporter the first time it is needed."""
        if self._html is None:
            from .artifacts import HtmlWriter

            self._html = HtmlWriter()
        return self._html

    def launch(self, cwd: Path) -> None:
        """Start a kernel for the next trial now, unless one is waiting already."""
        if self._launched is None:
            from .kernel import Launched

            self._launched = Launched(cwd)

    def take(self, next_in: Path | None) -> Any:
        """The waiting kernel (or ``None``); when another trial follows, start its kernel now."""
        launched, self._launched = self._launched, None
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
        if self._facts is None:
            if imports is not None:
                imports()
            self._facts = _Facts(read)
            self._facts.start()

    def settle(self) -> None:
        """Wait for the facts thread (its result or error is kept for :meth:`facts`)."""
        if self._facts is not None:
            self._facts.join()

    def facts(self) -> Any:
        """What ``gather`` read (waiting for it), or ``None`` when nothing was gathered ahead."""
        return self._facts.result() if self._facts is not None else None

    def close(self) -> None:
        self.discard()
        self.settle()
        self._html = None
