"""Execute a trial notebook in a fresh Jupyter kernel (:mod:`.launch`) and always shut it down.

The kernel runs in the investigation's directory; each step has its own time limit; the
executed notebook is returned whatever happened, so it can be saved.

nbclient is used for what it is good at (executing one cell and collecting its outputs), not
for the kernel's life or for signals: its ``execute`` installs SIGINT/SIGTERM handlers that
shut the kernel down and turn a Ctrl-C into "kernel died", registers an ``atexit`` callback
per trial, and never closes the channels of a kernel it did not start (12 descriptors and a
thread per trial). Here one coroutine runs the cells; SIGINT and SIGTERM cancel it, and
:func:`execute` reports ``kind="interrupted"`` so the caller records the trial and stops.
"""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from queue import Empty
from typing import Any

from jupyter_core.utils import ensure_async, ensure_event_loop
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError

from ..core.processes import Process
from .forkserver import ForkFailed
from .launch import Launched
from .logs import quiet
from .runtime import LINE_COST, cost, cut_note, fitting, output_log, rest_note

STARTUP_TIMEOUT = 60.0
#: seconds between two progress ticks while a trial's cells run
TICK = 1.0
_QUIET = quiet("kernel")


@dataclass
class Execution:
    """What happened in the kernel; ``error`` is ``None`` when every cell ran.

    ``phase`` names what ran out of time or was interrupted: ``"kernel start"``, ``"set-up"``,
    ``"step"`` (the runtime's outcome says which) or ``"saving"``.
    """

    notebook: Any
    error: str | None
    kind: str | None  # "cell", "timeout", "dead", "startup", "interrupted" or None
    seconds: float
    phase: str | None = None
    #: the signal that interrupted the trial (``signal.SIGINT`` or ``signal.SIGTERM``)
    signal: int | None = None
    #: how the kernel was started (:meth:`Launched.how_started`)
    kernel: dict[str, Any] | None = None
    #: seconds per phase: "kernel start" (until the set-up cell runs), "set-up", "step", "saving", "kernel stop"
    phases: dict[str, float] | None = None
    #: the processes the trial started that were still running when it ended, stopped then (:meth:`Launched.close`)
    stopped: tuple[Process, ...] = ()
    #: those of ``stopped`` that ignored SIGTERM and were killed
    killed: tuple[Process, ...] = ()


#: characters a cell may show beyond the cap, for the notes of the kernel's own cut (:class:`.runtime.OutputCap`)
NOTES = 4096


class _Backstop:
    """What one cell puts into the notebook, capped here too: the kernel cuts stdout and stderr
    (:class:`.runtime.OutputCap`), this cuts what gets past it (figures and other displays, output
    written before the set-up cell installed the kernel's cap, a stream the step replaced).

    Each output that would take a cell past ``limit`` goes to the cell's log in ``folder``
    (a stream's text, a display's plain text, an error's traceback; never a whole image), one
    message at a time, and the notebook shows where it went.
    """

    def __init__(self, limit: int, folder: Path, labels: list[str]) -> None:
        self.limit = limit + NOTES
        self.cap = limit
        self.folder = folder
        self.labels = labels
        #: per cell: characters shown, characters sent to its log, whether the notebook shows the cut
        self.shown: dict[int, int] = {}
        self.diverted: dict[int, int] = {}
        self.cut: set[int] = set()

    def label(self, index: int) -> str:
        return self.labels[index] if index < len(self.labels) else f"cell-{index}"

    def cleared(self, index: int) -> None:
        """The cell's outputs were cleared (a progress display redrawn): it may show ``limit`` again."""
        self.shown[index] = 0
        self.cut.discard(index)

    def take(self, outs: list[Any], out: Any, index: int) -> Any:
        """``out`` as the notebook keeps it (``None``: it went to the cell's log, and the notebook says so)."""
        size = _size(out)
        shown = self.shown.get(index, 0)
        if index not in self.cut and shown + size <= self.limit:
            self.shown[index] = shown + size
            return out
        room = 0 if index in self.cut else max(0, self.limit - shown)
        if out.get("output_type") == "stream":
            text = str(out.get("text", ""))
            end = fitting(text, room)
            kept, rest = text[:end], text[end:]
        else:
            kept, rest = "", _as_text(out)
        with open(self.folder / output_log(self.label(index)), "a", encoding="utf-8", errors="replace") as log:
            log.write(rest)
        self.diverted[index] = self.diverted.get(index, 0) + len(rest)
        self.shown[index] = shown + cost(kept)
        if index not in self.cut:
            self.cut.add(index)
            outs.append(_stream("stdout", kept + cut_note(self.cap, self.label(index))))
        return None

    def end(self, cell: Any, index: int) -> None:
        """After the cell: how much of its output went to its log."""
        if index in self.diverted:
            cell.outputs.append(_stream("stdout", rest_note(self.diverted[index], self.label(index))))


def _size(out: Any) -> int:
    """About the bytes an output takes in the notebook file (a stream's text, a display's data, a traceback)."""
    kind = out.get("output_type")
    if kind == "stream":
        return cost(str(out.get("text", "")))
    if kind == "error":
        return sum(cost(line) + LINE_COST for line in out.get("traceback", [])) + len(str(out.get("evalue", "")))
    return sum(cost(v) if isinstance(v, str) else len(str(v)) for v in (out.get("data") or {}).values())


def _as_text(out: Any) -> str:
    """What a log can hold of an output the notebook does not: its text, never an image's bytes."""
    kind = out.get("output_type")
    if kind == "error":
        return "\n".join(out.get("traceback", [])) + "\n"
    data = out.get("data") or {}
    kinds = ", ".join(sorted(data))
    text = data.get("text/plain", "")
    return f"[a {kind} output ({kinds}) left out of the notebook]\n" + (f"{text}\n" if text else "")


def _stream(name: str, text: str) -> Any:
    from nbformat.v4 import new_output

    return new_output("stream", name=name, text=text)


class _Client(NotebookClient):
    """nbclient's cell execution without its kernel set-up: no signal handlers, no ``atexit``.

    The channels are always stopped when the cells are done (nbclient leaves them open for a
    kernel manager it did not create, which is every one of ours). With a :class:`_Backstop`
    (``backstop``), what a cell puts into the notebook is capped.
    """

    #: called about every second while the cells run, with the phase, the cell's index and the last line printed
    on_tick: Callable[[str, int, str], None] | None = None
    #: the last non-blank line a cell printed (stdout or stderr), for the progress line and ``status``
    last_line = ""
    _cell = 0

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        if msg.get("msg_type") == "stream":
            lines = [line for line in str(msg.get("content", {}).get("text", ""))[-4096:].splitlines() if line.strip()]
            if lines:
                self.last_line = lines[-1][-300:]
        return super().process_message(msg, cell, cell_index)

    async def _tick(self, deadline: _Deadline) -> None:
        """Tell ``on_tick`` how the trial goes, every second, until the cells are done (then cancelled)."""
        while self.on_tick is not None:
            await asyncio.sleep(TICK)
            try:
                self.on_tick(deadline.phase, self._cell, self.last_line)
            except Exception:  # the progress line or a heartbeat never fails the trial
                pass

    backstop: _Backstop | None = None

    def output(self, outs: list[Any], msg: dict[str, Any], display_id: str | None, cell_index: int) -> Any:
        if self.backstop is None or self.output_hook_stack[msg["parent_header"].get("msg_id")]:
            return super().output(outs, msg, display_id, cell_index)
        if self.clear_before_next_output:  # nbclient clears the cell's outputs first
            self.backstop.cleared(cell_index)
        out = super().output(outs, msg, display_id, cell_index)
        if out is None or not outs or outs[-1] is not out:
            return out
        outs.pop()
        taken = self.backstop.take(outs, out, cell_index)
        if taken is not None:
            outs.append(taken)
        elif display_id:  # not in the notebook: a later update_display_data has nothing to replace
            places = self._display_id_map.get(display_id, {}).get(cell_index, [])
            if places:
                places.pop()
        return taken

    def clear_output(self, outs: list[Any], msg: dict[str, Any], cell_index: int) -> None:
        super().clear_output(outs, msg, cell_index)
        if self.backstop is not None and not outs:
            self.backstop.cleared(cell_index)

    async def run_cells(self, phases: list[str], deadline: _Deadline) -> None:
        self.reset_execution_trackers()
        if self.on_tick is not None:
            asyncio.ensure_future(self._tick(deadline))  # cancelled with nbclient's tasks below
        try:
            assert self.km is not None
            self.kc = self.km.client(context=self.km.context)  # the manager's (shared: see launch.shared_context)
            # No heartbeat channel: a client made by its manager asks the manager whether the kernel
            # lives (its process), never the heartbeat, which would be one more thread and socket per trial.
            self.kc.start_channels(hb=False)
            await wait_for_ready(self.kc, self.startup_timeout)
            self.kc.allow_stdin = False
            for index, cell in enumerate(self.nb.cells):
                if cell.cell_type != "code":
                    continue
                deadline.enter(phases[index])
                self._cell, self.last_line = index, ""
                try:
                    await self.async_execute_cell(cell, index, execution_count=self.code_cells_executed + 1)
                finally:
                    if self.backstop is not None:
                        self.backstop.end(cell, index)
        finally:
            # nbclient polls the kernel and its output in tasks of their own: after an interruption
            # they are still pending, and would fail noisily once the channels are gone.
            current = asyncio.current_task()
            pending = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            if self.kc is not None:
                self.kc.stop_channels()
                self.kc = None


async def wait_for_ready(kc: Any, timeout: float) -> None:
    """Wait until the kernel answers ``kernel_info`` on shell and its IOPub reaches us.

    jupyter_client's ``wait_for_ready`` does the same, then waits until IOPub has been silent
    for 0.2 s (its "flush"): 0.2 s of every trial spent waiting for nothing. Nothing needs
    flushing here: nbclient takes only the IOPub messages of the cell it runs (by parent
    message id). IOPub counts as connected once a message about one of our ``kernel_info``
    requests arrives (the kernel publishes its busy and idle status for each); until then the
    request is sent again, as jupyter_client does (a SUB socket misses what was published
    before it connected).
    """
    deadline = time.monotonic() + timeout
    asked: set[str] = set()
    replied = False
    while True:
        asked.add(kc.kernel_info())
        wait_until = time.monotonic() + 1.0
        while not replied:
            try:
                msg = await ensure_async(kc.shell_channel.get_msg(timeout=max(0.0, wait_until - time.monotonic())))
            except Empty:
                break
            if msg["msg_type"] == "kernel_info_reply" and msg["parent_header"].get("msg_id") in asked:
                kc._handle_kernel_info_reply(msg)
                replied = True
        if replied:
            try:
                while True:
                    msg = await ensure_async(kc.iopub_channel.get_msg(timeout=0.2))
                    if msg["parent_header"].get("msg_id") in asked:
                        return
            except Empty:
                pass  # IOPub not connected yet: ask again
        if not await ensure_async(kc.is_alive()):
            raise RuntimeError("Kernel died before replying to kernel_info")
        if time.monotonic() > deadline:
            raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")


class _Deadline:
    """The time limit of each step (and of saving the results), counted from that cell's start.

    Kernel start-up and the set-up cell have their own, generous limit (``STARTUP_TIMEOUT``):
    a slow kernel start on a loaded machine is never blamed on a step.
    """

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.phase = "kernel start"
        #: when each phase began (``time.monotonic()``), for the time split in :attr:`Execution.phases`
        self.began: dict[str, float] = {"kernel start": time.monotonic()}

    def enter(self, phase: str) -> None:
        self.phase = phase
        self.began.setdefault(phase, time.monotonic())

    def split(self, ended: float) -> dict[str, float]:
        """Seconds per phase, in the order they began (the last one ends at ``ended``)."""
        marks = sorted(self.began.items(), key=lambda item: item[1])
        ends = [t for _, t in marks[1:]] + [ended]
        return {name: end - began for (name, began), end in zip(marks, ends)}

    def remaining(self, cell: Any) -> int | None:
        if self.timeout is None:
            return None
        if self.phase in ("step", "saving"):
            return max(1, int(self.timeout + 0.999))
        return int(max(STARTUP_TIMEOUT, self.timeout))


@contextmanager
def _stop_on_signals(loop: asyncio.AbstractEventLoop, task: asyncio.Task[Any]) -> Iterator[list[int]]:
    """While the cells run, SIGINT and SIGTERM cancel ``task`` (the signals caught are yielded).

    The handlers that were in place before (pytest's, ours for SIGTERM) are put back afterwards:
    asyncio's ``remove_signal_handler`` would reset them to the defaults instead. Outside the main
    thread signals cannot be handled, and nothing is installed. A signal the process was started
    ignoring (a background job of a non-interactive shell ignores SIGINT) stays ignored, as it
    does for pytest itself.
    """
    caught: list[int] = []
    signums = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in signums}

    def on_signal(signum: int) -> None:
        caught.append(signum)
        task.cancel()

    installed = []
    for signum in signums:
        if previous[signum] is signal.SIG_IGN:
            continue
        try:
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
        except (RuntimeError, ValueError, NotImplementedError):
            pass
    try:
        yield caught
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
            if previous[signum] is not None:
                signal.signal(signum, previous[signum])


def execute(
    nb: Any,
    cwd: Path,
    timeout: float | None,
    launched: Launched | None = None,
    phases: list[str] | None = None,
    while_starting: Callable[[], None] | None = None,
    on_tick: Callable[[str, int, str], None] | None = None,
    max_output: int = 0,
    output_folder: Path | None = None,
    labels: list[str] | None = None,
    log: Path | None = None,
) -> Execution:
    """Run every cell of ``nb`` in a fresh kernel (``launched``, or a new one); stop at the first
    error, at ``timeout`` (counted from the first step), or at SIGINT/SIGTERM. The kernel, and every
    process it started, is always stopped and its private folder removed before this returns; what
    the kernel's descriptors received is moved to ``log`` (when there was anything).

    ``phases`` names each cell's phase ("set-up", "step", "saving"); code cells default to "step".
    ``while_starting`` runs in this thread once the kernel process is launched, while it boots.
    ``on_tick(phase, cell index, last printed line)`` is called about every second while the cells run, in
    this thread (between two messages of the kernel: it must be quick, and what it raises is ignored).
    ``max_output``: the characters each cell puts into the notebook at most (0: all); the rest
    goes to ``output_folder``, in a log named after the cell's label (``labels``, by cell index).
    """
    started = time.monotonic()
    deadline = _Deadline(timeout)
    names = phases if phases is not None else ["step"] * len(nb.cells)
    error: str | None = None
    kind: str | None = None
    caught: list[int] = []
    client = None
    kernel_start: dict[str, Any] | None = None
    try:
        if launched is not None and launched.cwd == cwd:
            if while_starting is not None:
                while_starting()
                while_starting = None
            try:
                launched.ready()
            except ForkFailed:  # the fork server's problem is warned about once; this trial spawns its kernel
                launched.close()
                launched = None
        if launched is None or launched.cwd != cwd:
            if launched is not None:
                launched.close()
            try:
                launched = Launched(cwd)
            except Exception as err:  # zmq, the OS, the launcher: the trial fails, the session goes on
                raise RuntimeError(f"{type(err).__name__}: {err}") from None
            if while_starting is not None:
                while_starting()
                while_starting = None
            launched.ready()
        kernel_start = launched.how_started()
        client = _Client(
            nb,
            km=launched.manager,
            timeout=None,
            timeout_func=deadline.remaining,
            startup_timeout=STARTUP_TIMEOUT,
            allow_errors=False,
            shutdown_kernel="immediate",
            resources={"metadata": {"path": str(cwd)}},
            log=_QUIET,
        )
        client.on_tick = on_tick
        if max_output and output_folder is not None:
            client.backstop = _Backstop(max_output, output_folder, list(labels or []))
        if while_starting is not None:
            while_starting()
        loop = ensure_event_loop()
        task = loop.create_task(client.run_cells(names, deadline))
        with _stop_on_signals(loop, task) as caught:
            try:
                loop.run_until_complete(task)
            except asyncio.CancelledError:
                if not caught:
                    raise
    except CellTimeoutError:
        kind, error = "timeout", f"timed out after {timeout:g} s"
    except DeadKernelError as err:
        kind, error = "dead", f"kernel died ({err})" if str(err) else "kernel died"
    except CellExecutionError as err:
        kind, error = "cell", f"{err.ename}: {err.evalue}"
    except RuntimeError as err:  # "Kernel didn't respond in N seconds" and friends
        kind, error = "startup", f"the kernel did not start: {err}"
    finally:
        # The kernel is ours to stop: now, not at exit.
        deadline.began["kernel stop"] = time.monotonic()  # for the time split only: ``phase`` says what ran out
        if launched is not None:
            launched.close(log)
    if caught:
        kind = "interrupted"
        error = f"interrupted by {signal.Signals(caught[0]).name}"
    return Execution(
        client.nb if client is not None else nb,
        error,
        kind,
        time.monotonic() - started,
        deadline.phase,
        caught[0] if caught else None,
        kernel_start,
        deadline.split(time.monotonic()),
        tuple(launched.stopped) if launched is not None else (),
        tuple(launched.killed) if launched is not None else (),
    )
