"""Read and validate the ``[tool.mitosis]`` tables of a pyproject.toml into a ``ProjectConfig``.

Only the file is read here: no user code is imported (that is :mod:`pytest_mitosis.config.steps`),
and nothing about pytest is known. Every problem becomes a ``ConfigError`` whose message
names the file, the key, what was found and how to write it instead.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..core.errors import ConfigError
from ..core.rules import METRICS_PREFIX, DirectionRule, Directions, Tolerance, metric_name, parse_hypothesis
from .assignments import Assignment, parse_assignment
from .settings import absolute_store
from .slurm import SlurmResources, slurm_table
from .slurm import resources as slurm_resources

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised only on Python 3.10
    import tomli as tomllib

_DOTTED = r"[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*"
_REFERENCE = re.compile(rf"^(?P<module>{_DOTTED}):(?P<attr>{_DOTTED})$")
_TOP_KEYS = ("trials-folder", "store", "working-dir", "steps", "experiments", "higher-is-better", "tolerances", "slurm")
_EXPERIMENT_KEYS = ("steps", "params", "eval", "expect", "higher-is-better", "tolerances", "slurm")
#: a metric name as results key it (``main``, ``f1``), or with the prefix reproduction messages print
_METRIC = re.compile(r"^[A-Za-z_][\w.-]*\Z")
DEFAULT_TRIALS_FOLDER = "trials"


@dataclass(frozen=True)
class Reference:
    """``module:attribute.path``, the entry-point-like syntax mitosis uses for steps."""

    module: str
    attr: str

    def __str__(self) -> str:
        return f"{self.module}:{self.attr}"


@dataclass(frozen=True)
class StepConfig:
    """One entry of ``[tool.mitosis.steps]``: a callable and (optionally) its lookup dict."""

    name: str
    function: Reference
    lookup: Reference | None


@dataclass(frozen=True)
class ExperimentConfig:
    """A named chain of steps, with the narrowings and eval params of its table."""

    name: str
    steps: tuple[str, ...]
    params: tuple[Assignment, ...] = ()
    evals: tuple[Assignment, ...] = ()
    #: the hypothesis, e.g. "main < 0.05" (locked once a trial used it)
    expect: str | None = None
    #: ``higher-is-better``: true, false or the names where higher is better (None: [tool.mitosis]'s)
    higher_is_better: DirectionRule | None = None
    #: ``tolerances`` of the experiment's table, per metric name (over those of [tool.mitosis])
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    #: the experiment's ``slurm`` table, checked (over [tool.mitosis.slurm]; see :mod:`.slurm`)
    slurm: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProjectConfig:
    """Everything ``[tool.mitosis]`` says, validated, with paths made absolute."""

    path: Path
    trials_folder: Path
    steps: dict[str, StepConfig] = field(default_factory=dict)
    experiments: dict[str, ExperimentConfig] = field(default_factory=dict)
    #: experiments that cannot be collected, with the reason: each becomes its own error item,
    #: so one broken table entry or step never blocks the others
    broken: dict[str, str] = field(default_factory=dict)
    #: steps whose ``[tool.mitosis.steps]`` entry is malformed, with the reason
    broken_steps: dict[str, str] = field(default_factory=dict)
    #: every experiment name (good or broken) in the order of the table
    order: tuple[str, ...] = ()
    #: the kernels' working directory (``working-dir``; default: this pyproject's directory)
    working_dir: Path | None = None
    #: ``store`` of ``[tool.mitosis]`` (a relative ``sqlite:///`` path made absolute against this file's
    #: folder); ``None``: ``<trials folder>/mitosis.sqlite``. ``--mitosis-store`` and ini ``mitosis_store`` win
    store: str | None = None
    #: ``higher-is-better`` of [tool.mitosis]: every experiment's direction unless its table says one
    higher_is_better: DirectionRule | None = None
    #: ``[tool.mitosis.tolerances]``, per metric name
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    #: ``[tool.mitosis.slurm]``, checked: the Slurm executor's job resources (see :mod:`.slurm`)
    slurm: dict[str, Any] = field(default_factory=dict)

    def directions(
        self, experiment: str, higher: DirectionRule | None = None, lower: DirectionRule | None = None
    ) -> Directions:
        """The one resolver of an experiment's directions: its table over [tool.mitosis], then the command line
        (``--mitosis-higher-is-better``, ``--mitosis-lower-is-better``) over both."""
        table = self.experiments.get(experiment)
        rule = table.higher_is_better if table is not None and table.higher_is_better is not None else None
        return Directions.of(rule if rule is not None else self.higher_is_better).override(higher, lower)

    def tolerances_of(self, experiment: str) -> dict[str, Tolerance]:
        """The experiment's tolerances: its table's entries over those of [tool.mitosis], metric by metric."""
        table = self.experiments.get(experiment)
        return {**self.tolerances, **(table.tolerances if table is not None else {})}

    def slurm_of(self, experiment: str, overrides: tuple[tuple[str, str], ...] = ()) -> SlurmResources:
        """The experiment's Slurm job resources: ``--mitosis-slurm`` over its table over [tool.mitosis.slurm]."""
        table = self.experiments.get(experiment)
        return slurm_resources(self.slurm, table.slurm if table is not None else {}, overrides)

    @property
    def root(self) -> Path:
        """The investigation's directory: its modules are importable (and, by default, kernels run here)."""
        return self.path.parent

    @property
    def cwd(self) -> Path:
        """Where every trial's kernel runs: ``working-dir`` of ``[tool.mitosis]``, else :attr:`root`."""
        return self.working_dir or self.root

    @property
    def step_names(self) -> tuple[str, ...]:
        """Every name of ``[tool.mitosis.steps]``, usable or not."""
        return tuple(dict.fromkeys([*self.steps, *self.broken_steps]))


def adhoc_experiment(
    project: ProjectConfig, chain: tuple[str, ...], option: str = "--mitosis-steps"
) -> ExperimentConfig:
    """An experiment for a chain of steps named on the command line (mitosis' ``mitosis data odes``).

    It is named by its steps joined with ``+`` (``data+odes``: a valid pytest name that ``-k``
    can select), so running the same chain again ad hoc records the same experiment. A chain
    that is a declared experiment with exactly these steps is that experiment, table included.
    """
    spelled = f"{option} {','.join(chain)}"
    for step in chain:
        if step not in project.step_names:
            raise ConfigError(
                f"{spelled}: unknown step {step!r}; the steps of {project.path} are: {', '.join(project.step_names)}."
            )
    name = "+".join(chain)
    declared = project.experiments.get(name)
    if declared is not None and declared.steps == chain:
        return declared
    if declared is not None or name in project.broken:
        raise ConfigError(
            f"{spelled}: {project.path} declares an experiment {name!r} with other steps "
            f"({' -> '.join(declared.steps) if declared else 'see its error'}); the chain would be recorded under "
            "the same name. Rename that experiment in [tool.mitosis.experiments]."
        )
    return ExperimentConfig(name, chain)


def _metric_key(path: Path, key: str, name: object, seen: dict[str, str]) -> str:
    """``name`` as results key it; the same metric named twice (``f1`` and ``metrics.f1``) is an error."""
    if not isinstance(name, str) or not _METRIC.match(name) or name == METRICS_PREFIX.rstrip("."):
        raise _fail(path, key, f'expected metric names such as "main" or "f1" (or "metrics.f1"), found {name!r}.')
    bare = metric_name(name)
    if bare in seen and seen[bare] != name:
        raise _fail(
            path,
            key,
            f"{seen[bare]!r} and {name!r} name the same metric ({bare}); keep one of them.",
        )
    seen[bare] = name
    return bare


def _direction(path: Path, key: str, value: object) -> DirectionRule:
    """``true``, ``false`` or a list of metric names."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list) and value:
        seen: dict[str, str] = {}
        return tuple(_metric_key(path, key, name, seen) for name in value)
    raise _fail(
        path,
        key,
        'expected true (main and every metric), false, or a list of metric names such as ["main", "f1"], '
        f"found {value!r}.",
    )


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0 or value == float("inf"):
        return None
    return float(value)


def _tolerances(path: Path, key: str, table: object) -> dict[str, Tolerance]:
    """``{ NAME = { rtol = R, atol = A } }`` or ``{ NAME = "ignore" }`` per metric name."""
    expected = 'expected { rtol = 0.01, atol = 0 } (either may be left out) or "ignore"'
    if not isinstance(table, dict):
        raise _fail(
            path,
            key,
            f'expected a table of metric names, such as {{ main = {{ rtol = 0.01 }}, fit_seconds = "ignore" }}, found {table!r}.',
        )
    found: dict[str, Tolerance] = {}
    seen: dict[str, str] = {}
    for name, value in table.items():
        bare = _metric_key(path, key, name, seen)
        where = f"{key} {name}"
        if value == "ignore":
            found[bare] = Tolerance(ignore=True)
            continue
        if not isinstance(value, dict) or not value or set(value) - {"rtol", "atol"}:
            raise _fail(path, where, f"{expected}, found {value!r}.")
        numbers = {part: _number(value.get(part, 0.0)) for part in ("rtol", "atol")}
        for part, number in numbers.items():
            if number is None:
                raise _fail(path, f"{where} {part}", f"expected a number >= 0, found {value[part]!r}.")
        found[bare] = Tolerance(numbers["rtol"] or 0.0, numbers["atol"] or 0.0)
    return found


def _fail(path: Path, key: str, message: str) -> ConfigError:
    return ConfigError(f"{path}: {key}: {message}")


def _reference(path: Path, key: str, text: object, what: str) -> Reference:
    match = _REFERENCE.match(text) if isinstance(text, str) else None
    if match is None:
        raise _fail(
            path,
            key,
            f'expected the {what} as "module:attribute" (for example "sine_experiment:run"), found {text!r}.',
        )
    return Reference(match.group("module"), match.group("attr"))


def _step(path: Path, name: str, entry: object) -> StepConfig:
    key = f"[tool.mitosis.steps] {name}"
    if isinstance(entry, str):
        entry = [entry]
    if not isinstance(entry, list) or not 1 <= len(entry) <= 2:
        raise _fail(
            path,
            key,
            f'expected ["module:callable", "module:lookup_dict"], found {entry!r}. '
            f'Write it as {name} = ["sine_experiment:run", "sine_experiment:lookup_dict"] '
            "(the lookup dict may be left out).",
        )
    function = _reference(path, key, entry[0], "callable")
    lookup = _reference(path, key, entry[1], "lookup dict") if len(entry) == 2 else None
    return StepConfig(name, function, lookup)


def _names(value: object) -> list[str] | None:
    """A string or a list of strings, as a list; ``None`` for anything else."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value and all(isinstance(v, str) for v in value):
        return list(value)
    return None


def _assignments(path: Path, key: str, table: object, steps: tuple[str, ...], what: str) -> tuple[Assignment, ...]:
    option = "params" if what == "VARIANT" else "eval"
    if not isinstance(table, dict):
        raise _fail(path, f"{key} {option}", f'expected a table such as {{ "step.param" = ... }}, found {table!r}.')
    found: list[Assignment] = []
    for target, value in table.items():
        values = _names(value)
        if values is None:
            raise _fail(
                path,
                f"{key} {option} {target!r}",
                f"expected a string or a list of strings, found {value!r}."
                + (
                    ' Eval values are Python expressions written as strings, e.g. "4" or "\'lorenz\'".'
                    if what == "EXPR"
                    else ""
                ),
            )
        for text in values:
            try:
                assignment = parse_assignment(f"{target}={text}", f"{path}: {key} {option}", what)
            except Exception:
                raise _fail(
                    path, f"{key} {option}", f'expected keys of the form "step.param", found {target!r}.'
                ) from None
            if assignment.step not in steps:
                raise _fail(
                    path,
                    f"{key} {option} {target!r}",
                    f"step {assignment.step!r} is not one of this experiment's steps ({', '.join(steps)}).",
                )
            found.append(assignment)
    return tuple(found)


def _experiment(path: Path, name: str, entry: object, steps: Mapping[str, Any]) -> ExperimentConfig:
    key = f"[tool.mitosis.experiments] {name}"
    table: dict[str, Any]
    if isinstance(entry, (list, str)):
        table = {"steps": entry}
    elif isinstance(entry, dict):
        table = entry
    else:
        raise _fail(path, key, f"expected a list of steps or a table {{ steps = [...] }}, found {entry!r}.")
    unknown = sorted(set(table) - set(_EXPERIMENT_KEYS))
    if unknown:
        raise _fail(path, key, f"unknown key {unknown[0]!r}; the keys are: {', '.join(_EXPERIMENT_KEYS)}.")
    chain = _names(table.get("steps"))
    if chain is None:
        raise _fail(path, key, f'expected steps = ["step", ...], found {table.get("steps")!r}.')
    for step in chain:
        if step not in steps:
            raise _fail(
                path,
                key,
                f"unknown step {step!r}; the steps of [tool.mitosis.steps] are: {', '.join(steps)}.",
            )
    chain_t = tuple(chain)
    params = _assignments(path, key, table.get("params", {}), chain_t, "VARIANT")
    evals = _assignments(path, key, table.get("eval", {}), chain_t, "EXPR")
    expect = table.get("expect")
    if expect is not None and parse_hypothesis(expect) is None:
        raise _fail(
            path,
            f"{key} expect",
            f'expected a comparison of main or a metric with a number, such as "main < 0.05" or "accuracy >= 0.9", '
            f"found {expect!r}.",
        )
    higher = table.get("higher-is-better")
    direction = _direction(path, f"{key} higher-is-better", higher) if higher is not None else None
    tolerances = _tolerances(path, f"{key} tolerances", table["tolerances"]) if "tolerances" in table else {}
    slurm = slurm_table(f"{path}: {key} slurm", table["slurm"]) if "slurm" in table else {}
    return ExperimentConfig(
        name, chain_t, params, evals, expect.strip() if expect else None, direction, tolerances, slurm
    )


def load_project(
    pyproject: Path, trials_folder: Path | None = None, *, stands_for: Path | None = None
) -> ProjectConfig:
    """Read ``pyproject``'s ``[tool.mitosis]``; ``trials_folder`` (CLI or ini) wins over the table.

    ``stands_for`` is where the file belongs when ``pyproject`` is a copy of it (a reproduction
    reads the committed file with ``git show``): ``working-dir`` is resolved against that place
    and not checked, because the directory it names exists in the recorded commit's checkout,
    which is made later.
    """
    mitosis = _mitosis_table(pyproject, _read_toml(pyproject))
    # A malformed entry breaks only its step (and the experiments using it), never the file.
    steps: dict[str, StepConfig] = {}
    broken_steps: dict[str, str] = {}
    for name, entry in mitosis["steps"].items():
        try:
            steps[name] = _step(pyproject, name, entry)
        except ConfigError as err:
            broken_steps[name] = str(err)
    order, experiments, broken = _experiments(pyproject, mitosis, steps, broken_steps)
    if trials_folder is None:
        trials_folder = _trials_folder(pyproject, mitosis)
    working_dir = _working_dir(pyproject, mitosis, stands_for)
    store = _store(pyproject, mitosis)
    higher = mitosis.get("higher-is-better")
    direction = _direction(pyproject, "[tool.mitosis] higher-is-better", higher) if higher is not None else None
    tolerances = (
        _tolerances(pyproject, "[tool.mitosis.tolerances]", mitosis["tolerances"]) if "tolerances" in mitosis else {}
    )
    return ProjectConfig(
        pyproject,
        trials_folder,
        steps,
        experiments,
        broken,
        broken_steps,
        order,
        working_dir,
        store=store,
        higher_is_better=direction,
        tolerances=tolerances,
        slurm=slurm_table(f"{pyproject}: [tool.mitosis.slurm]", mitosis["slurm"]) if "slurm" in mitosis else {},
    )


def _read_toml(pyproject: Path) -> dict[str, Any]:
    try:
        with pyproject.open("rb") as stream:
            return tomllib.load(stream)
    except OSError as err:
        raise ConfigError(f"{pyproject}: cannot be read ({err.strerror}).") from None
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"{pyproject}: is not valid TOML ({err}). Fix the file and run again.") from None


def _mitosis_table(pyproject: Path, data: dict[str, Any]) -> dict[str, Any]:
    """The ``[tool.mitosis]`` table, with a non-empty ``steps`` table and no unknown key."""
    mitosis = data.get("tool", {}).get("mitosis")
    if not isinstance(mitosis, dict) or not isinstance(mitosis.get("steps"), dict) or not mitosis["steps"]:
        raise ConfigError(
            f"{pyproject}: no [tool.mitosis.steps] table. Register each experiment step as "
            'name = ["module:callable", "module:lookup_dict"], for example:\n\n'
            "    [tool.mitosis.steps]\n"
            '    sine = ["sine_experiment:run", "sine_experiment:lookup_dict"]'
        )
    unknown = sorted(set(mitosis) - set(_TOP_KEYS))
    if unknown:
        raise _fail(pyproject, "[tool.mitosis]", f"unknown key {unknown[0]!r}; the keys are: {', '.join(_TOP_KEYS)}.")
    return mitosis


def _experiments(
    pyproject: Path, mitosis: dict[str, Any], steps: dict[str, StepConfig], broken_steps: dict[str, str]
) -> tuple[tuple[str, ...], dict[str, ExperimentConfig], dict[str, str]]:
    """``(order, experiments, broken)``: the experiments in their order, each well-formed one, and why each other
    is broken (its own entry, or a step it uses). Without ``[tool.mitosis.experiments]``, one per step."""
    table = mitosis.get("experiments")
    experiments: dict[str, ExperimentConfig] = {}
    broken: dict[str, str] = {}
    if table is None:
        for name in mitosis["steps"]:
            if name in steps:
                experiments[name] = ExperimentConfig(name, (name,))
            else:
                broken[name] = broken_steps[name]
        return tuple(mitosis["steps"]), experiments, broken
    if not isinstance(table, dict) or not table:
        raise _fail(pyproject, "[tool.mitosis.experiments]", f"expected a table of experiments, found {table!r}.")
    known = {**dict.fromkeys(steps), **dict.fromkeys(broken_steps)}
    for name, entry in table.items():
        try:
            experiment = _experiment(pyproject, name, entry, known)
        except ConfigError as err:
            broken[name] = str(err)
            continue
        failed = [step for step in experiment.steps if step in broken_steps]
        if failed:
            broken[name] = broken_steps[failed[0]]
        else:
            experiments[name] = experiment
    return tuple(table), experiments, broken


def _trials_folder(pyproject: Path, mitosis: dict[str, Any]) -> Path:
    folder = mitosis.get("trials-folder", DEFAULT_TRIALS_FOLDER)
    if not isinstance(folder, str) or not folder.strip():
        raise _fail(pyproject, "[tool.mitosis] trials-folder", f"expected a folder name, found {folder!r}.")
    return (pyproject.parent / folder).resolve()


def _working_dir(pyproject: Path, mitosis: dict[str, Any], stands_for: Path | None) -> Path | None:
    """``working-dir`` resolved against the file (or the place it ``stands_for``, then unchecked)."""
    if "working-dir" not in mitosis:
        return None
    where = mitosis["working-dir"]
    if not isinstance(where, str) or not where.strip():
        raise _fail(
            pyproject,
            "[tool.mitosis] working-dir",
            f'expected a directory relative to this file, such as ".." for its parent, found {where!r}.',
        )
    working_dir = ((stands_for or pyproject).parent / where).resolve()
    if stands_for is None and not working_dir.is_dir():
        raise _fail(
            pyproject,
            "[tool.mitosis] working-dir",
            f"{where!r} is {working_dir}, which is not a directory. Give a directory relative to this file.",
        )
    return working_dir


def _store(pyproject: Path, mitosis: dict[str, Any]) -> str | None:
    """``store``, a relative SQLite path made absolute against the file."""
    store = mitosis.get("store")
    if store is None:
        return None
    if not isinstance(store, str) or not store.strip():
        raise _fail(
            pyproject,
            "[tool.mitosis] store",
            f"expected a store URL (sqlite:///PATH or postgresql://USER@HOST/DB), found {store!r}.",
        )
    return absolute_store(store.strip(), pyproject.parent)
