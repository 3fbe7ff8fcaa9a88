"""Where a trial's time goes, from inside: ``MITOSIS_PROFILE=path`` appends each trial's phase timings to ``path``.

For ``benchmarks/trivial_profile.py`` (and anyone asking why a sweep is slow): a trial's time is
spread over pytest's process (setup and guards, the store, the kernel, the files), the HTML helper
(the notebook and its page) and the session's ends (collection, the report). Each process adds
the seconds of the phases it runs to its current record (:func:`timed`, :func:`add`) and appends
the record as one JSON line when the unit is done (:func:`flush`): ``{"scope": "trial" | "html" |
"session" | "kernel", "name": ..., "pid": ..., "phases": {phase: seconds}, "cpu": seconds}``, ``cpu``
being the CPU time the process used since its previous record (a forked kernel's: since its fork,
which is what a trial's kernel costs). Lines are appended whole (one ``write`` of a line in append
mode), so the processes of a session share the file.

Unset (the normal case), every call returns at its first test: no clock is read, nothing is kept.
Standard library only.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext

#: the file the timings go to, read once per process (``None``: profiling is off)
PATH: str | None = os.environ.get("MITOSIS_PROFILE") or None

_phases: dict[str, float] = {}
#: this process's CPU seconds when its last record was appended (a forked process starts at 0)
_cpu = 0.0


@contextmanager
def _timing(phase: str) -> Iterator[None]:
    started = time.perf_counter()
    try:
        yield
    finally:
        _phases[phase] = _phases.get(phase, 0.0) + time.perf_counter() - started


#: what :func:`timed` returns when profiling is off (reusable, does nothing)
_OFF: AbstractContextManager[None] = nullcontext()


def timed(phase: str) -> AbstractContextManager[None]:
    """``with timed("store begin"):`` adds the block's seconds to ``phase`` of this process's record."""
    return _OFF if PATH is None else _timing(phase)


def add(phases: Mapping[str, float]) -> None:
    """Add seconds measured elsewhere (the kernel's phases) to this process's record."""
    if PATH is None:
        return
    for phase, seconds in phases.items():
        _phases[phase] = _phases.get(phase, 0.0) + float(seconds)


def flush(scope: str, name: str) -> None:
    """Append this process's record as one line (``scope``: trial, html, session, kernel) and start a new one."""
    global _cpu
    if PATH is None:
        return
    cpu, _cpu = _cpu, time.process_time()
    record = {"scope": scope, "name": name, "pid": os.getpid(), "time": time.time(), "phases": _phases}
    line = json.dumps({**record, "cpu": _cpu - cpu})
    _phases.clear()
    try:
        with open(PATH, "a", encoding="utf-8") as stream:
            stream.write(line + "\n")
    except OSError:
        pass  # a profile never fails a trial
