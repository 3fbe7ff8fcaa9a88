"""The sweep's progress while it runs: a status line on a terminal, a line per event in a log.

A trial may run for minutes: so that a sweep never looks stuck, on a
terminal a status line after what pytest last wrote on its current line changes every second:
trials done of selected, passed and failed, each running trial (its key, step, elapsed time,
the last line it printed) and the sweep's estimated end. Off a terminal (CI logs, ``nohup ... >
log``) a line when a trial starts, one when it ends, and one every ``--mitosis-progress-every``
seconds (60) for a trial still running; ``-q`` turns the lines off, as it quiets pytest.

Built on pytest's own terminal writer rather than rich or tqdm: pytest owns the terminal, and a
second library drawing on it would fight pytest's line bookkeeping (its dots, ``-v`` lines,
xdist's lines). The status line is drawn only while pytest itself is silent (a trial's kernel
runs in the main thread), after the cursor, with the terminal's save/restore-cursor and
clear-to-end-of-line sequences, and erased before pytest writes again: pytest's line is never
rewritten. Under pytest-xdist the controller draws what its workers' trials report through the
store's heartbeats (see :meth:`Progress.watch`).
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..core.tree_text import span

if TYPE_CHECKING:
    from ..store import Reader
from ..store.records import cell

SAVE, RESTORE, CLEAR = "\x1b7", "\x1b8", "\x1b[K"


@dataclass
class Running:
    """A trial that runs now, as its last tick (or heartbeat) described it."""

    name: str
    key: str
    step: str | None = None
    phase: str | None = None
    line: str = ""
    elapsed: float = 0.0
    #: a batch job's trial: why the scheduler keeps it waiting (phase ``pending``: ``Priority``), the node it runs on
    reason: str | None = None
    node: str | None = None
    #: ``time.monotonic()`` of the last "still running" line written for it (off a terminal)
    said: float = field(default_factory=time.monotonic)


class Progress:
    """How the session's sweep goes, drawn on pytest's terminal writer (see the module's docstring)."""

    def __init__(self, reporter: Any, every: float, workers: int = 1) -> None:
        self.reporter = reporter
        self.tw = getattr(reporter, "_tw", None)
        isatty = getattr(reporter, "isatty", False)  # a method since pytest 8.4, a bool before
        self.tty = bool((isatty() if callable(isatty) else isatty) and getattr(self.tw, "hasmarkup", False))
        self.lines = reporter is not None and not self.tty and reporter.verbosity >= 0
        self.every = every
        self.workers = max(1, workers)
        self.selected = 0
        self.counts: Counter[str] = Counter()
        self.remaining: Counter[str] = Counter()
        self.durations: dict[str, list[float]] = defaultdict(list)
        self.running: dict[str, Running] = {}
        #: trials that passed their setup so far (the number a "started" line shows)
        self.begun = 0
        self._setup: dict[str, float] = {}
        self._drawn = False
        self._drawn_at = 0.0
        #: held while something writes to the terminal (the xdist controller's watcher is a thread)
        self.lock = threading.RLock()
        self._watch: threading.Thread | None = None
        self._stop = threading.Event()

    @property
    def active(self) -> bool:
        return self.tty or self.lines

    # -- what the session tells it -------------------------------------------------------------

    def plan(self, experiments: list[str]) -> None:
        """The experiment of every selected trial (the estimate counts what is left of each)."""
        self.selected = len(experiments)
        self.remaining = Counter(experiments)

    def started(self, nodeid: str, setup: float) -> None:
        """A trial passed its setup (its guards): it runs now. A trial refused or skipped at setup never "started"."""
        with self.lock:
            self.begun += 1
            self._setup[nodeid] = setup
            if self.lines:
                self._line(f"mitosis [{self.begun}/{self.selected}] {_short(nodeid)}: started")
            elif self.tty:  # pytest is silent until the trial's report: trials under a second never tick
                self.draw()

    def tick(self, key: str, name: str, state: dict[str, Any]) -> None:
        """A running trial's state (about every second from its kernel's loop, or from a heartbeat)."""
        with self.lock:
            trial = self.running.get(key)
            if trial is None:
                trial = self.running[key] = Running(name, key)
            trial.step, trial.phase = state.get("step"), state.get("phase")
            trial.reason, trial.node = _text(state.get("reason")), _text(state.get("node"))
            trial.line, trial.elapsed = cell(str(state.get("line") or "").strip()), float(state.get("elapsed") or 0.0)
            if self.tty:
                self.draw()
            elif self.lines and time.monotonic() - trial.said >= self.every:
                trial.said = time.monotonic()
                last = f"; last line: {trial.line}" if trial.line else ""
                if trial.phase == "pending":  # not started yet: how long it ran would say nothing
                    self._line(f"mitosis {trial.name} ({trial.key}): waiting in Slurm's queue, {_where(trial)}")
                else:
                    self._line(
                        f"mitosis {trial.name} ({trial.key}): still running after {span(trial.elapsed)}, "
                        f"{_where(trial)}{last}"
                    )

    def finished(self, nodeid: str, outcome: str, seconds: float, main: str | None, key: str | None) -> None:
        """A trial's report: its outcome counts, its time (setup included) feeds the estimate. A trial skipped by
        ``--mitosis-resume`` counts, silently: the plan line said how many there are."""
        with self.lock:
            experiment = _experiment(nodeid)
            seconds += self._setup.pop(nodeid, 0.0)
            self.counts[outcome] += 1
            if self.remaining[experiment] > 0:
                self.remaining[experiment] -= 1
            if outcome in ("passed", "failed") and seconds > 0:
                self.durations[experiment].append(seconds)
            if key is not None:
                self.running.pop(key, None)
            if self.lines and outcome != "skipped":
                shown = f", main={main}" if main is not None else ""
                self._line(
                    f"mitosis [{self.done}/{self.selected}] {_short(nodeid)}: {outcome} in {span(seconds)}{shown}"
                    f" ({self.ends()})"
                )

    @property
    def done(self) -> int:
        return sum(self.counts.values())

    def ends(self) -> str:
        """The sweep's estimated end, from the finished trials of each experiment still to run.

        An experiment none of whose trials has finished yet is not guessed from the others (its trials may
        take a thousand times as long): while some are timed, the end is said to be after what those take
        (experiments run one after another, so the last one may stay untimed for most of a sweep).
        """
        if not any(count > 0 for count in self.remaining.values()):
            return "no trial left"
        left = 0.0
        untimed = []
        for experiment, count in self.remaining.items():
            if count <= 0:
                continue
            seen = self.durations.get(experiment)
            if not seen:
                untimed.append(experiment)
                continue
            left += count * sum(seen) / len(seen)
        if untimed and left == 0.0:
            return "end unknown"
        left = max(0.0, left / self.workers - max((t.elapsed for t in self.running.values()), default=0.0))
        when = time.strftime("%H:%M", time.localtime(time.time() + left))
        if not untimed:
            return f"ends ~{when}, in {span(left)}"
        named = ", ".join(untimed[:2]) + (f" and {len(untimed) - 2} more" if len(untimed) > 2 else "")
        return f"ends after ~{when}, in over {span(left)} ({named} not timed yet)"

    # -- drawing ---------------------------------------------------------------------------------

    def counted(self) -> str:
        """``3 passed, 1 failed`` (and the errors and skips, when there are)."""
        shown = [f"{self.counts['passed']} passed", f"{self.counts['failed']} failed"]
        shown += [f"{self.counts[o]} {o}" for o in ("error", "skipped") if self.counts[o]]
        return ", ".join(shown)

    def status(self) -> str:
        """The status line's text (before it is cut to the terminal's width)."""
        counts = self.counted()
        running = " · ".join(
            f"{t.name} [{t.key}] {_where(t)} {span(t.elapsed)}" + (f": {t.line}" if t.line else "")
            for t in self.running.values()
        )
        return f"mitosis {self.done}/{self.selected} ({counts}) · {running or 'starting'} · {self.ends()}"

    def draw(self) -> None:
        """The status line after the cursor, at most once a second (the cursor stays where pytest left it)."""
        if not self.tty or self.tw is None or time.monotonic() - self._drawn_at < 0.9:
            return
        with self._uncaptured():  # the terminal's width too: while pytest captures, it cannot be asked (80)
            room = self.tw.fullwidth - _current_width(self.tw) - 2
            if room < 20:
                return
            text = self.status()
            text = text if len(text) <= room else text[: room - 1] + "…"
            self._raw(f"{SAVE} {text}{CLEAR}{RESTORE}")
        self._drawn, self._drawn_at = True, time.monotonic()

    def _raw(self, text: str) -> None:
        """Write past pytest's line bookkeeping: the cursor stays where pytest left it, so pytest's idea of its
        current line (its width, where ``[100%]`` goes) stays true."""
        stream = getattr(self.tw, "_file", None)
        if stream is None:
            return
        with self._uncaptured():
            stream.write(text)
            stream.flush()

    def _uncaptured(self) -> Any:
        """pytest captures file descriptors 1 and 2 while a trial runs: the line is drawn with capture suspended,
        as pytest's live logging does."""
        capture = self.reporter.config.pluginmanager.getplugin("capturemanager")
        return capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext()

    def erase(self) -> None:
        """Remove the status line before pytest writes again."""
        with self.lock:
            if self._drawn and self.tw is not None:
                self._raw(CLEAR)
                self._drawn, self._drawn_at = False, 0.0

    def _line(self, text: str) -> None:
        """A line of its own, even after what pytest-xdist wrote on the current line without pytest's bookkeeping."""
        with self.lock, self._uncaptured():
            if self.tw is not None and _current_width(self.tw) > 0:
                self.tw.line()
            self.reporter.write_line(text)

    # -- under pytest-xdist: the workers' trials, from the store's heartbeats -----------------

    def watch(self, source: Any) -> None:
        """On the xdist controller, in a thread: every second ``source.running()`` gives ``{key: (name, state)}``
        of the session's running trials (their heartbeats in the store), drawn like a session alone's; every
        ``source.close()`` ends it, in the same thread (its connections are that thread's)."""
        if not self.active or self._watch is not None:
            return

        def loop() -> None:
            try:
                while not self._stop.wait(1.0):
                    try:
                        found = source.running()
                    except Exception:  # the store is busy or away: the line waits for the next second
                        continue
                    with self.lock:
                        for key in set(self.running) - set(found):
                            self.running.pop(key)
                        for key, (name, state) in found.items():
                            self.tick(key, name, state)
            finally:
                source.close()

        self._watch = threading.Thread(target=loop, name="mitosis-progress", daemon=True)
        self._watch.start()

    def summary(self) -> dict[str, Any]:
        """The session's progress as its heartbeat records it (``status`` shows it)."""
        with self.lock:
            return {
                "selected": self.selected,
                "done": self.done,
                "passed": self.counts["passed"],
                "failed": self.counts["failed"],
                "skipped": self.counts["skipped"],
                "error": self.counts["error"],
                "ends": self.ends(),
            }

    def close(self) -> None:
        self._stop.set()
        if self._watch is not None:
            self._watch.join(timeout=5)
            self._watch = None
        self.erase()


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def _current_width(tw: Any) -> int:
    """The width of what pytest wrote on the current line (its own measure counts colour codes as -1)."""
    width = int(tw.width_of_current_line)
    if width >= 0:
        return width
    line = str(getattr(tw, "_current_line", "")).rsplit("\r", 1)[-1]
    return len(_ANSI.sub("", line))


def _experiment(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1].split("[", 1)[0]


def _short(nodeid: str) -> str:
    return nodeid.rsplit("::", 1)[-1]


def _text(value: Any) -> str | None:
    """A heartbeat's text as one visible line (a crafted store's too), ``None`` when empty."""
    return cell(str(value)) if value not in (None, "") else None


def _where(trial: Running) -> str:
    """Where the trial is: its step or phase; a batch job's trial waiting to start, ``pending (Priority)``; one
    that runs on a node of a cluster, ``step fit on node01``."""
    if trial.phase == "pending":  # queued by the scheduler: no step yet, and no node
        return f"pending ({trial.reason})" if trial.reason else "pending"
    if trial.phase == "step" and trial.step:
        where = f"step {trial.step}"
    else:
        where = {"kernel start": "starting its kernel", "set-up": "set-up", "saving": "saving"}.get(
            str(trial.phase), str(trial.phase or "starting")
        )
    return f"{where} on {trial.node}" if trial.node else where


class Heartbeats:
    """The xdist controller's view of its session's running trials in the store, from the watcher's thread only.

    Its own read-only connection, opened lazily in that thread: the controller's store connection belongs
    to the main thread (and to the remote workers' server), and is never shared with this one. The
    session's own heartbeat is written by the main thread, at each trial's start and end.
    """

    def __init__(self, folder: Path, read_from: Any, session: str) -> None:
        self.folder, self.read_from, self.session = folder, read_from, session
        self._reader: Reader | None = None

    def running(self) -> dict[str, tuple[str, dict[str, Any]]]:
        from ..store import Reader

        if self._reader is None:
            self._reader = Reader(self.folder, self.read_from)
        now = time.time()
        return {
            b.key: (
                b.nodeid.rsplit("::", 1)[-1],
                {**b.state, "elapsed": float(b.state.get("elapsed") or 0) + now - b.beat},
            )
            for b in self._reader.running(self.session)
            if b.beat is not None
        }

    def close(self) -> None:
        if self._reader is not None:
            try:
                self._reader.close()
            except Exception:
                pass
