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

_OWN_FILE = os.path.abspath(__file__)


class StepResultError(Exception):
    """A step returned something other than a dict with the keys mitosis requires."""


class ResultNotSaved(Exception):
    """A step's result could not be pickled to its file (unpicklable, out of memory, disk full)."""


def _series(value: Any) -> Any:
    """A metric series (a list of numbers, or ``{"step": [...], "value": [...]}``), or ``None``."""
    tolist = getattr(value, "tolist", None)
    if callable(tolist) and getattr(value, "ndim", None) == 1:
        value = tolist()
    if isinstance(value, (list, tuple)) and value and all(_number(v) is not None for v in value):
        return [_number(v) for v in value]
    if isinstance(value, Mapping) and set(value) == {"step", "value"}:
        steps, values = _series(value["step"]), _series(value["value"])
        if steps is not None and values is not None and len(steps) == len(values):
            return {"step": steps, "value": values}
    return None


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


class Trial:
    """State of one trial inside its kernel; the notebook calls :meth:`step` then :meth:`finish`."""

    def __init__(self, folder: str, steps: list[str], modules: list[str], seed: int, log_level: str = "INFO") -> None:
        self.folder = Path(folder)
        self.seed = seed
        self.folder.mkdir(parents=True, exist_ok=True)
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
        """Seed ``random`` and numpy's global generator with the trial seed (before every step)."""
        import importlib.util
        import random

        random.seed(self.seed)
        if "numpy" in sys.modules or importlib.util.find_spec("numpy") is not None:
            import numpy

            numpy.random.seed(self.seed)

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
        if isinstance(raw_metrics, Mapping):
            metrics = {str(k): metric(v) for k, v in raw_metrics.items()}
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
        for key, value in metrics.items():
            if isinstance(value, (list, dict)):
                points = value if isinstance(value, list) else value["value"]
                print(f"{key} = series of {len(points)} points, last {points[-1]!r}")
            else:
                print(f"{key} = {value!r}")

    def _close_log(self) -> None:
        logging.getLogger().removeHandler(self._handler)
        self._handler.close()


def sources() -> list[str]:
    """The files of every module imported in this kernel, but the interpreter's and installed packages'.

    pytest's process keeps those of the investigation's repository and checks them against the
    commit the trial records (``checks/code_drift.py``): what the steps imported is what ran.
    """
    import site
    import sysconfig

    skip = {sys.prefix, sys.base_prefix, sys.exec_prefix, *site.getsitepackages(), site.getusersitepackages()}
    skip |= {p for p in sysconfig.get_paths().values() if p}
    prefixes = tuple(os.path.join(p, "") for p in skip if p)
    found = set()
    for module in list(sys.modules.values()):
        path = getattr(module, "__file__", None)
        if isinstance(path, str) and path.endswith(".py") and not path.startswith(prefixes):
            found.add(os.path.abspath(path))
    found.discard(_OWN_FILE)
    return sorted(found)


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
