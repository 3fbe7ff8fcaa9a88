"""Helpers the trial notebook imports *inside the kernel*: call a step, check its result,
embed its figures, log to ``experiment.log``, and write ``outcome.json``.

The pytest process learns what happened only from ``outcome.json`` (rewritten atomically
after every state change), so a kernel that dies still leaves the last step it started.
Standard library only, and never pytest: this runs in the experiment's interpreter.
"""

from __future__ import annotations

import base64
import io
import json
import logging
import math
import os
import pickle
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..core import profile
from ..core.series import POINTS, keep

_OWN_FILE = os.path.abspath(__file__)


class StepResultError(Exception):
    """A step returned something other than a dict with the keys mitosis requires."""


class ResultNotSaved(Exception):
    """A step's result could not be pickled to its file (unpicklable, out of memory, disk full)."""


def _series(value: Any) -> Any:
    """A metric series (a list of numbers, or ``{"step": [...], "value": [...]}``), or ``None``.

    A series longer than :data:`POINTS` is recorded down-sampled (:func:`..core.series.keep`: first,
    last, each bucket's min and max) as ``{"step": [...], "value": [...]}``, the steps saying where
    each kept point was; the step's result pickle keeps the whole series. A one-dimensional array
    is read a slice at a time, never copied whole into a list.
    """
    if isinstance(value, Mapping) and set(value) == {"step", "value"}:
        steps, values = _sequence(value["step"]), _sequence(value["value"])
        if steps is None or values is None or len(steps) != len(values):
            return None
    else:
        steps, values = None, _sequence(value)
        if values is None:
            return None
    if not _all_numbers(values) or (steps is not None and not _all_numbers(steps)):
        return None
    if len(values) <= POINTS:
        numbers = [_number(v) for v in _listed(values)]
        return numbers if steps is None else {"step": [_number(s) for s in _listed(steps)], "value": numbers}
    kept = keep(values, POINTS)
    return {
        "step": kept if steps is None else [_number(steps[i]) for i in kept],
        "value": [_number(values[i]) for i in kept],
    }


def _sequence(value: Any) -> Any:
    """``value`` when it may be a series (a list, a tuple, a one-dimensional array), else ``None``."""
    if isinstance(value, (list, tuple)) or (
        callable(getattr(value, "tolist", None)) and getattr(value, "ndim", None) == 1
    ):
        return value
    return None


def _listed(chunk: Any) -> list[Any]:
    tolist = getattr(chunk, "tolist", None)
    listed = tolist() if callable(tolist) else chunk
    return listed if isinstance(listed, list) else list(listed)


#: points of a series checked at once (an array's slice becomes a list of this many numbers)
_CHUNK = 1 << 16


def _all_numbers(values: Any) -> bool:
    """Whether ``values`` is not empty and every value is a finite number (not a bool), a slice at a time.

    Plain ints and floats are checked at C speed; anything else (numpy scalars in a list) one by one.
    """
    if not len(values):
        return False
    for start in range(0, len(values), _CHUNK):
        chunk = _listed(values[start : start + _CHUNK])
        if set(map(type, chunk)) <= {int, float}:
            try:
                if all(map(math.isfinite, chunk)):
                    continue
            except OverflowError:  # an int too large for a float: checked one by one
                pass
        if any(_number(v) is None for v in chunk):
            return False
    return True


def series_length(value: Any) -> int:
    """The points of ``value`` read as a series as the step returned it (``0`` for anything else)."""
    if isinstance(value, Mapping) and set(value) == {"step", "value"}:
        value = value["value"]
    found = _sequence(value)
    return len(found) if found is not None else 0


def _number(value: Any) -> Any:
    if isinstance(value, bool):
        return None
    found = plain(value) if not isinstance(value, (list, tuple, dict)) else None
    return found if isinstance(found, (int, float)) else None


def metric(value: Any) -> Any:
    """A metric as recorded: a number, a series, or (anything else) its repr."""
    series = _series(value)
    return series if series is not None else plain(value)


def plain(value: Any) -> Any:
    """A JSON-friendly version of a metric: numbers stay numbers, anything else becomes its repr."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value) if math.isfinite(value) else repr(float(value))
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():
        try:
            return plain(item())
        except Exception:
            pass
    return repr(value)


class _SeedOnImport:
    """A ``sys.meta_path`` finder that seeds numpy's global generator as soon as numpy is imported.

    It only wraps what the other finders find for ``numpy`` (the loader's ``exec_module`` runs,
    then ``numpy.random.seed``), and takes itself off ``sys.meta_path`` at that first import.
    """

    seed: int | None = None

    @classmethod
    def install(cls, seed: int) -> None:
        cls.seed = seed
        if not any(isinstance(finder, cls) for finder in sys.meta_path):
            sys.meta_path.insert(0, cls())

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "numpy":
            return None
        import importlib.util

        sys.meta_path.remove(self)  # the other finders find numpy; later steps find it in sys.modules
        spec = importlib.util.find_spec(name)
        loader = getattr(spec, "loader", None)
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        execute, seed = loader.exec_module, type(self).seed

        def exec_module(module: Any) -> None:
            execute(module)
            module.random.seed(seed)

        loader.exec_module = exec_module
        return spec


class Trial:
    """State of one trial inside its kernel; the notebook calls :meth:`step` then :meth:`finish`."""

    def __init__(
        self,
        folder: str,
        steps: list[str],
        modules: list[str],
        seed: int,
        log_level: str = "INFO",
        max_output: int = 0,
    ) -> None:
        self.folder = Path(folder)
        self.seed = seed
        self.folder.mkdir(parents=True, exist_ok=True)
        self.output = OutputCap(self.folder, max_output, cell_labels(steps)[2:])
        self.output.install()
        self.steps = steps
        self.results: list[dict[str, Any]] = []
        self.outcome: dict[str, Any] = {"status": "running", "step": None, "started": time.time()}
        self._handler = logging.FileHandler(self.folder / "experiment.log", encoding="utf-8")
        self._handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        level = getattr(logging, log_level)
        root = logging.getLogger()
        root.addHandler(self._handler)
        # Third-party libraries stay at INFO even in debug mode (matplotlib alone logs ~100
        # font_manager lines at DEBUG); the experiment's own modules get the requested level.
        root.setLevel(max(level, logging.INFO))
        for name in modules:
            logging.getLogger(name).setLevel(level)
        self._write()

    def _write(self) -> None:
        tmp = self.folder / "outcome.json.tmp"
        tmp.write_text(json.dumps(self.outcome, indent=2, default=repr), encoding="utf-8")
        os.replace(tmp, self.folder / "outcome.json")

    def step(
        self, name: str, reference: str, function: Callable[..., Any], params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """Call one step (with the previous step's ``data`` first when chained) and check its result."""
        __tracebackhide__ = True
        index = len(self.results)
        self.output.enter(cell_labels(self.steps)[2 + index])
        self.outcome.update(status="running", step=name, reference=reference)
        self._write()
        self.reseed()
        try:
            if index:
                result = function(self.results[-1]["data"], **params)
            else:
                result = function(**params)
            self._check(name, reference, index, result)
        except BaseException as err:
            self.outcome.update(
                status="failed",
                error=f"{type(err).__name__}: {err}",
                traceback=_user_traceback(err),
                result_error=isinstance(err, StepResultError),
                sources=sources(),
            )
            self._write()
            raise
        finally:
            show_figures()
        self.results.append(result)
        return result

    def reseed(self) -> None:
        """Seed ``random`` and numpy's global generator with the trial seed (before every step).

        numpy is seeded now if the kernel has imported it, else the moment the step imports it
        (:class:`_SeedOnImport`), before any code can draw from it: the same state as importing
        it here, without the cost of importing numpy (50 ms and more) into every trial whose
        steps never use it.
        """
        import random

        random.seed(self.seed)
        numpy = sys.modules.get("numpy")
        if numpy is not None:
            numpy.random.seed(self.seed)
        else:
            _SeedOnImport.install(self.seed)

    def _check(self, name: str, reference: str, index: int, result: Any) -> None:
        __tracebackhide__ = True
        last = index == len(self.steps) - 1
        if not isinstance(result, dict):
            raise StepResultError(
                f"step {name!r} ({reference}) returned {_article(type(result).__name__)} {type(result).__name__}, "
                "not a dict with a 'main' key"
            )
        if "main" not in result:
            raise StepResultError(
                f"step {name!r} ({reference}) returned a dict without a 'main' key "
                f"(its keys: {', '.join(map(str, result)) or 'none'})"
            )
        if not last and "data" not in result:
            raise StepResultError(
                f"step {name!r} ({reference}) returned no 'data' key, which the next step "
                f"({self.steps[index + 1]!r}) receives as its first argument"
            )

    def finish(self) -> None:
        """Pickle each step's result and record ``main`` and the metrics of the last step.

        A result that cannot be saved fails the trial (naming the step and the reason): a trial
        that passes always has every step's result on disk for ``load_trial_data``. Results are
        pickled straight into their file (no second copy in memory), through a temporary name,
        so a failed save never leaves a truncated pickle under the final name.
        """
        self.output.enter("result")
        saved = []
        unsaved = None
        for index, (name, result) in enumerate(zip(self.steps, self.results), start=1):
            path = self.folder / "results" / f"step-{index}-{name}.pickle"
            tmp = path.with_name(path.name + ".tmp")
            try:
                path.parent.mkdir(exist_ok=True)
                with open(tmp, "wb") as stream:
                    pickle.dump(result, stream, protocol=pickle.HIGHEST_PROTOCOL)
                os.replace(tmp, path)
                saved.append(path.name)
            except Exception as err:
                try:
                    tmp.unlink()
                except OSError:
                    pass
                unsaved = (name, err)
                break
        last = self.results[-1]
        raw_metrics = last.get("metrics", {})
        metrics: dict[str, Any] = {}
        #: metric → points of a series recorded down-sampled (the pickle holds them all)
        whole: dict[str, int] = {}
        if isinstance(raw_metrics, Mapping):
            metrics = {str(k): metric(v) for k, v in raw_metrics.items()}
            for k, v in raw_metrics.items():
                recorded = metrics[str(k)]
                if isinstance(recorded, dict) and len(recorded["value"]) < series_length(v):
                    whole[str(k)] = series_length(v)
        else:  # e.g. a list naming the metrics a library computed: kept, not charted, never a failure
            self.outcome["metrics_other"] = _jsonable(raw_metrics)
            print(
                f"pytest-mitosis: 'metrics' of the last step is {_article(type(raw_metrics).__name__)} "
                f"{type(raw_metrics).__name__}, not a {{name: number or series}} dict: it is kept in the result "
                "and in trial.yaml, but not reported or charted as metrics."
            )
        self.outcome.update(
            main=plain(last["main"]), metrics=metrics, pickles=saved, ended=time.time(), sources=sources()
        )
        if whole:
            self.outcome["series_points"] = whole
        if unsaved is not None:
            name, problem = unsaved
            self.outcome.update(
                status="failed",
                step=name,
                result_error=True,
                error=f"ResultNotSaved: the result of step {name!r} could not be saved to "
                f"results/step-{self.steps.index(name) + 1}-{name}.pickle: {type(problem).__name__}: {problem}",
            )
            self._write()
            self._close_log()
            raise ResultNotSaved(self.outcome["error"].split(": ", 1)[1]) from None
        self.outcome.update(status="passed", step=None)
        self._write()
        self._close_log()
        print(f"main = {self.outcome['main']!r}")
        last_pickle = saved[-1] if saved else None
        for key, value in metrics.items():
            if isinstance(value, (list, dict)):
                points = value if isinstance(value, list) else value["value"]
                if key in whole:
                    print(
                        f"{key} = series of {whole[key]:,} points, last {points[-1]!r} ({len(points):,} of them "
                        f"recorded, min and max kept; the whole series is in results/{last_pickle})"
                    )
                else:
                    print(f"{key} = series of {len(points)} points, last {points[-1]!r}")
            else:
                print(f"{key} = {value!r}")
        profile.flush("kernel", self.folder.name)  # with MITOSIS_PROFILE: this kernel's CPU, from its start

    def _close_log(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        self._handler.close()


def _installed_prefixes() -> tuple[str, ...]:
    """Where the interpreter's and installed packages' modules live (what :func:`sources` leaves out).

    The same for every kernel of a session: computed once, when this module is imported (in the
    warm parent, whose forked kernels inherit it), not in each trial's saving cell, where importing
    ``sysconfig`` and expanding its paths cost a few milliseconds of every trial.
    """
    import site
    import sysconfig

    skip = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()}
    skip |= {p for p in sysconfig.get_paths().values() if p}
    return tuple(os.path.join(p, "") for p in skip if p)


_INSTALLED = _installed_prefixes()


def sources() -> list[str]:
    """The files of every module imported in this kernel, but the interpreter's and installed packages'.

    pytest's process keeps those of the investigation's repository and checks them against the
    commit the trial records (``checks/code_drift.py``): what the steps imported is what ran.
    """
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py") and not path.startswith(_INSTALLED):
            found.add(os.path.abspath(path))
    found.discard(_OWN_FILE)
    return sorted(found)


def cell_labels(steps: list[str]) -> list[str]:
    """Each cell's name in the trial notebook (header, set-up, ``step-N-NAME`` like its result's
    pickle, result): what the log of a cell's cut output is named after (:func:`output_log`)."""
    return ["header", "set-up", *(f"step-{i}-{name}" for i, name in enumerate(steps, start=1)), "result"]


def output_log(label: str) -> str:
    """The file in the trial folder that receives a cell's output beyond the cap."""
    return f"output-{label}.log"


#: what a line of output costs in the notebook file beyond its characters: nbformat writes each
#: line as an indented JSON string (a cap on characters alone would let a million empty lines
#: make a 12 MB notebook of a 1 MB cap)
LINE_COST = 10


def cost(text: str) -> int:
    """About the bytes ``text`` takes in the notebook file (what the cap counts)."""
    return len(text) + LINE_COST * text.count("\n")


def fitting(text: str, room: int) -> int:
    """How many characters of ``text``, from its start, cost at most ``room``.

    One correction suffices: dropping ``n`` characters lowers the cost by at least ``n``.
    """
    if room <= 0:
        return 0
    end = min(room, len(text))
    excess = end + LINE_COST * text.count("\n", 0, end) - room
    return max(0, end - excess) if excess > 0 else end


def megabytes(characters: int) -> str:
    return f"{characters / 1e6:.3g} MB" if characters >= 100_000 else f"{characters / 1e3:.3g} kB"


def cut_note(limit: int, label: str) -> str:
    """The line the notebook shows where a cell's output was cut (here, or by pytest's backstop)."""
    return (
        f"\n[pytest-mitosis: output cut at {megabytes(limit)} (--mitosis-max-cell-output): "
        f"the rest is in {output_log(label)} in the trial folder]\n"
    )


def rest_note(diverted: int, label: str) -> str:
    """The line at the end of a cut cell: how much went to its log."""
    return f"[pytest-mitosis: {output_log(label)} in the trial folder holds the other {megabytes(diverted)} of this cell's output]\n"


class OutputCap:
    """What each cell writes to stdout and stderr goes to the notebook up to ``limit`` characters;
    the rest is appended to the cell's log in the trial folder, and the notebook says so.

    A step that printed 200 MB made a 212 MB notebook, a 210 MB page and 1.7 GB in pytest's
    process; cut here, in the kernel, the excess never crosses to pytest at all. The ``write`` of
    ipykernel's stream objects is replaced on the instances: their thread that forwards what
    is written to file descriptors 1 and 2 (C code, child processes) calls it too. A cell begins
    at IPython's ``pre_run_cell`` (the cells after the set-up are ``labels``, in order), or, without
    IPython's events, when a step or the result begins (:meth:`enter`). ``limit`` 0: no cap.
    """

    def __init__(self, folder: Path, limit: int, labels: list[str]) -> None:
        self.folder = folder
        self.limit = limit
        self.labels = list(labels)
        self.label = "set-up"
        self.shown = 0
        self.diverted = 0
        self.log: Any = None
        self.originals: list[tuple[Any, Callable[[str], Any]]] = []
        import threading

        self.lock = threading.RLock()

    def install(self) -> None:
        if self.limit <= 0:
            return
        self._wrap()
        shell = _shell()
        if shell is not None:
            shell.events.register("pre_run_cell", self._pre_run_cell)
            shell.events.register("post_run_cell", self._post_run_cell)

    def _wrap(self) -> None:
        """Put the cap in front of the streams' ``write`` as it is now.

        IPython 9 replaces ``write`` for each cell (to keep the cell's output in its history) and
        puts the previous one back afterwards, so the cap is put in front again as every cell
        begins: outermost, so that IPython's history holds only what the notebook shows.
        """
        originals = []
        for stream in (sys.stdout, sys.stderr):
            current = stream.write
            original = getattr(current, "mitosis_original", None)
            if original is None:
                original = current

                def write(text: str, _original: Callable[[str], Any] = original) -> int:
                    return self.write(_original, text)

                write.mitosis_original = original  # type: ignore[attr-defined]
                try:
                    stream.write = write  # type: ignore[method-assign]
                except (AttributeError, TypeError):  # not ipykernel's stream: left as it is
                    continue
            originals.append((stream, original))
        self.originals = originals

    def _pre_run_cell(self, *args: Any) -> None:
        with self.lock:
            if self.labels:
                self.enter(self.labels.pop(0))
            self._wrap()

    def _post_run_cell(self, *args: Any) -> None:
        self.end()

    def enter(self, label: str) -> None:
        """A cell named ``label`` begins (nothing changes when it already has)."""
        with self.lock:
            if label == self.label:
                return
            self.end()
            self.label, self.shown, self.diverted = label, 0, 0

    def end(self) -> None:
        """The cell is over: close its log, and say how much went there."""
        with self.lock:
            if self.log is None:
                return
            self.log.close()
            self.log = None
            self._show(rest_note(self.diverted, self.label))

    def _show(self, text: str) -> None:
        if self.originals:
            self.originals[0][1](text)

    def write(self, original: Callable[[str], Any], text: str) -> int:
        if not isinstance(text, str):
            return int(original(text) or 0)  # the stream's own error
        with self.lock:
            room = self.limit - self.shown
            size = cost(text)
            if size <= room:
                self.shown += size
                original(text)
                return len(text)
            kept = fitting(text, room)
            if kept:
                original(text[:kept])
            self.shown = self.limit
            if self.log is None:
                self.log = open(self.folder / output_log(self.label), "a", encoding="utf-8", errors="replace")
                self._show(cut_note(self.limit, self.label))
            for start in range(kept, len(text), _CHUNK):  # a slice at a time: no copy of a 200 MB text
                self.log.write(text[start : start + _CHUNK])
            self.diverted += len(text) - kept
        return len(text)


def _shell() -> Any:
    """IPython's running shell, when this is a kernel (``None`` elsewhere)."""
    ipython = sys.modules.get("IPython")
    get = getattr(ipython, "get_ipython", None)
    return get() if callable(get) else None


def _jsonable(value: Any) -> Any:
    """``value`` as JSON can hold it: containers of plain values kept, anything else as its repr."""
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return plain(value)


def _article(word: str) -> str:
    return "an" if word[:1].lower() in "aeiou" else "a"


def show_figures() -> None:
    """Embed every open matplotlib figure as a PNG in the current cell's output, then close it.

    Rendering ourselves works whatever backend the experiment chose: under ``Agg`` IPython
    would otherwise show only ``<Figure size ...>`` text.
    """
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return
    from IPython.display import display

    for number in pyplot.get_fignums():
        figure = pyplot.figure(number)
        buffer = io.BytesIO()
        try:
            figure.savefig(buffer, format="png", bbox_inches="tight")
        except Exception as err:  # a broken figure must not hide the step's own outcome
            print(f"pytest-mitosis: figure {number} could not be rendered: {err}", file=sys.stderr)
            continue
        display({"image/png": base64.b64encode(buffer.getvalue()).decode("ascii")}, raw=True)
    pyplot.close("all")


def _user_traceback(err: BaseException) -> str:
    """The traceback of the experiment's code: our frames and the notebook cell's are dropped."""
    frames = [
        f
        for f in traceback.extract_tb(err.__traceback__)
        if os.path.abspath(f.filename) != _OWN_FILE
        and not f.filename.startswith("<ipython-input")
        and "/ipykernel_" not in f.filename
    ]
    lines = ["Traceback (most recent call last):\n"] if frames else []
    lines += traceback.format_list(frames)
    lines += traceback.format_exception_only(type(err), err)
    return "".join(lines).rstrip()
