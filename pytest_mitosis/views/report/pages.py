"""The trial pages a build writes: in this process, or, for thousands of them, shared with a forked child.

A first build over 10,000 trials is mostly rendering a page per trial and creating it as a
file (``benchmarks/report_build.py``). On Linux, when this process runs no other thread (the
``report`` command; a pytest session whose threads have ended), a build with at least
:data:`PARALLEL` new pages forks a child once the records are read: the child renders and
writes every other page through a reader of its own, this process the rest, on two cores.
Every page is written atomically by whichever process renders it, and a page the child did
not leave (it failed, or was stopped by Ctrl-C) is written here afterwards, so the folder
ends up the same as a build in one process. The child never touches the store connection it
inherited (it keeps a reference, so that no finalizer closes it) and leaves with
``os._exit``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from ...store import Reader, TrialRecord

#: new pages from which a build shares them with a forked child (fewer are not worth a fork)
PARALLEL = 1000

#: a trial and the previous trial of its identity (its page links and compares them)
Page = tuple[TrialRecord, TrialRecord | None]


class Site(Protocol):
    """What of the report folder being written this module uses (:class:`.build.Site`)."""

    reader: Reader
    out: Path
    pages: set[str]

    def trial(self, record: TrialRecord, previous: TrialRecord | None) -> None: ...


def _can_fork() -> bool:
    return (
        sys.platform.startswith("linux")
        and hasattr(os, "fork")
        and threading.active_count() == 1
        and (os.cpu_count() or 1) > 1
    )


def write_pages(site: Site, pages: Sequence[Page]) -> None:
    """Write each trial's page (``site.trial(record, previous)``), sharing them with a child when there are many."""
    if len(pages) < PARALLEL or not _can_fork():
        for record, previous in pages:
            site.trial(record, previous)
        return
    mine, theirs = pages[0::2], pages[1::2]
    pid = os.fork()
    if pid == 0:
        _child(site, theirs)
    try:
        for record, previous in mine:
            site.trial(record, previous)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        raise
    os.waitpid(pid, 0)
    left = set(os.listdir(site.out / "trials"))
    for record, previous in theirs:
        name = f"{record.key}.html"
        if name in left:
            site.pages.add(name)
        else:  # the child did not get to it
            site.trial(record, previous)


def _child(site: Site, pages: Sequence[Page]) -> None:
    """Render and write ``pages`` in the forked child, then leave without running any finalizer."""
    code = 1
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the parent, which stops the child
        _inherited = site.reader  # the parent's connection: referenced until os._exit, never used or closed here
        with Reader(_inherited.folder, _inherited.url) as reader:
            site.reader = reader
            for record, previous in pages:
                site.trial(record, previous)
        code = 0
    except BaseException:  # the parent writes what is missing
        code = 1
    finally:
        os._exit(code)
