"""Work started before it is needed, so that a trial waits for as little as possible.

The next trial's kernel (launched while pytest collects, then while the previous trial
runs), nbconvert's exporter (prepared in a thread while the first kernel runs), and the git
and environment facts (read in a thread while pytest collects). Every kernel still runs one
trial only. ``close`` stops whatever is left at the end of the session. No pytest import.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any


class Ahead:
    """One session's work-ahead: at most one spare kernel, one HTML writer, one facts future."""

    def __init__(self) -> None:
        self._launched: Any = None  # kernel.Launched
        self._html: Any = None  # artifacts.HtmlWriter
        self._facts: Future[Any] | None = None
        self._pool: ThreadPoolExecutor | None = None

    def html(self) -> Any:
        """The HTML writer; its preparation starts (in a thread) the first time it is asked for."""
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

    def gather(self, read: Callable[[], Any]) -> None:
        """Run ``read`` in a thread; :meth:`facts` returns its result."""
        if self._facts is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mitosis-facts")
            self._facts = self._pool.submit(read)

    def facts(self) -> Any:
        """What ``gather`` read (waiting for it), or ``None`` when nothing was gathered ahead."""
        return self._facts.result() if self._facts is not None else None

    def close(self) -> None:
        self.discard()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._html is not None:
            self._html.close()
            self._html = None
