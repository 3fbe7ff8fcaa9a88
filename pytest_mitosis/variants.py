"""Turn an experiment and its parameters into trials: axes, their cartesian product, stable ids.

A trial's id is made of variant names (lookup params) and ``param=expr`` parts (eval-param
axes), in step order and then signature order, so it never changes between runs and
``-k "sine and slow"``, ``--lf`` and node ids keep working. No pytest import here.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ConfigError
from .assignment import Assignment
from .project import ExperimentConfig, ProjectConfig, Reference
from .steps import LoadedStep

#: a step parameter with this name receives the trial seed
SEED = "seed"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of one step of a trial, as the notebook will resolve it."""

    step: str
    name: str
    kind: Literal["lookup", "eval", "seed"]
    #: the variant name (lookup) or the Python expression (eval)
    text: str
    tracked: bool
    #: part of the trial id (every lookup param; eval params only when they form an axis)
    in_id: bool
    #: the value as resolved in the pytest process (for the header and, later, fingerprints)
    value: Any = field(compare=False, hash=False, repr=False, default=None)

    @property
    def id_part(self) -> str:
        return self.text if self.kind == "lookup" else f"{self.name}={self.text}"


@dataclass(frozen=True)
class StepSpec:
    """What the notebook needs to call one step."""

    name: str
    function: Reference
    lookup: Reference | None
    chained: bool


@dataclass(frozen=True)
class TrialSpec:
    """One trial: an experiment's steps with one value for every parameter."""

    experiment: str
    steps: tuple[StepSpec, ...]
    params: tuple[ParamSpec, ...]
    expect: str | None = None
    higher_is_better: bool | None = None

    @property
    def id(self) -> str:
        return "-".join(p.id_part for p in self.params if p.in_id)

    @property
    def item_name(self) -> str:
        """The pytest item name: ``experiment[id]``, or the bare experiment without axes."""
        return f"{self.experiment}[{self.id}]" if self.id else self.experiment

    @property
    def slug(self) -> str:
        """mitosis' trial name without the iteration (``trial_sine-slow``), safe as a file name."""
        parts = [self.experiment] + [p.id_part for p in self.params if p.in_id]
        return "trial_" + _UNSAFE.sub("_", "-".join(parts))[:120]


def _assignments_for(step: str, param: str, *sources: Sequence[Assignment]) -> list[Assignment]:
    """The assignments for ``step.param`` from the first source that has any (CLI before table)."""
    for source in sources:
        found = [a for a in source if a.step == step and a.param == param]
        if found:
            return found
    return []


def check_cli_assignments(project: ProjectConfig, loaded: dict[str, LoadedStep], cli: Sequence[Assignment]) -> None:
    """Command-line parameters must name a known step and a parameter it accepts."""
    for assignment in cli:
        flag = f"{assignment.source} {'+' if assignment.untracked else ''}{assignment.target}={assignment.value}"
        if assignment.step not in project.steps:
            raise ConfigError(
                f"{flag}: unknown step {assignment.step!r}; the steps of {project.path} are: "
                f"{', '.join(project.steps)}."
            )
        step = loaded.get(assignment.step)
        if step is not None and assignment.param not in {p.name for p in step.parameters}:
            accepted = ", ".join(p.name for p in step.parameters) or "none"
            raise ConfigError(
                f"{flag}: step {assignment.step!r} ({step.config.function}) has no parameter "
                f"{assignment.param!r}; its parameters are: {accepted}."
            )


def _eval_value(project: ProjectConfig, step: LoadedStep, assignment: Assignment, where: str) -> Any:
    try:
        code = compile(assignment.value, f"<{assignment.target}>", "eval")
    except SyntaxError as err:
        raise ConfigError(
            f"{where}: the eval expression {assignment.value!r} for {assignment.target} does not parse "
            f"({err.msg}). Eval params are Python expressions: 4, .05, '\"lorenz\"', np.ones(3)."
        ) from None
    try:
        return eval(code, dict(vars(step.module)))  # noqa: S307 - evaluating user expressions is the feature
    except Exception as err:
        raise ConfigError(
            f"{where}: the eval expression {assignment.value!r} for {assignment.target} failed in the namespace "
            f"of module {step.module.__name__!r}: {type(err).__name__}: {err}."
        ) from None


def _axis(
    project: ProjectConfig,
    experiment: ExperimentConfig,
    step: LoadedStep,
    param_name: str,
    cli_params: Sequence[Assignment],
    cli_evals: Sequence[Assignment],
) -> list[ParamSpec] | None:
    """The values one parameter takes in an experiment, or ``None`` when its default is used."""
    found = _assignments_for(step.name, param_name, [*cli_params, *cli_evals], [*experiment.params, *experiment.evals])
    evals = [a for a in found if a.kind == "eval"]
    narrowed = [a for a in found if a not in evals]
    target = f"{step.name}.{param_name}"
    if evals and narrowed:
        where = found[0].source
        raise ConfigError(
            f"{where}: {target} is given both as a variant ({narrowed[0].value!r}) and as an eval param "
            f"({evals[0].value!r}); give one of them."
        )
    if evals:
        where = evals[0].source
        values = list(dict.fromkeys(a.value for a in evals))
        tracked = not any(a.untracked for a in evals)
        return [
            ParamSpec(step.name, param_name, "eval", text, tracked, len(values) > 1,
                      _eval_value(project, step, next(a for a in evals if a.value == text), where))
            for text in values
        ]
    variants = step.lookup.get(param_name)
    if narrowed:
        where = narrowed[0].source
        if variants is None:
            lookup_params = ", ".join(step.lookup_params) or "none"
            raise ConfigError(
                f"{where}: {target} is not a lookup param of step {step.name!r}: "
                f"its lookup dict {step.config.lookup} has no entry {param_name!r} "
                f"(its lookup params are: {lookup_params}). Use --mitosis-eval for an eval param."
            )
        names = list(dict.fromkeys(a.value for a in narrowed))
        for name in names:
            if name not in variants:
                raise ConfigError(
                    f"{where}: {target} has no variant {name!r} in {step.config.lookup}; "
                    f"the variants are: {', '.join(variants)}."
                )
        tracked = not any(a.untracked for a in narrowed)
        return [ParamSpec(step.name, param_name, "lookup", n, tracked, True, variants[n]) for n in names]
    if variants is not None:
        return [ParamSpec(step.name, param_name, "lookup", n, True, True, v) for n, v in variants.items()]
    if param_name == SEED:  # mitosis' run(seed, ...): the trial seed, unless an eval param sets it
        return [ParamSpec(step.name, param_name, "seed", "trial seed", False, False, None)]
    return None


def _missing(project: ProjectConfig, experiment: ExperimentConfig, step: LoadedStep, param: str) -> ConfigError:
    lookup = f" or add {param!r} to its lookup dict ({step.config.lookup})" if step.config.lookup else ""
    return ConfigError(
        f"{project.path}: experiment {experiment.name!r}, step {step.name!r} ({step.config.function}): "
        f"parameter {param!r} has no default and no value. Give it one on the command line, "
        f"--mitosis-eval {step.name}.{param}=EXPR, or in the experiment table, "
        f'[tool.mitosis.experiments] {experiment.name} = {{ steps = [...], eval = {{ "{step.name}.{param}" = "EXPR" }} }}'
        f"{lookup}."
    )


def expand(
    project: ProjectConfig,
    experiment: ExperimentConfig,
    steps: Sequence[LoadedStep],
    cli_params: Sequence[Assignment] = (),
    cli_evals: Sequence[Assignment] = (),
) -> list[TrialSpec]:
    """All trials of ``experiment``: the cartesian product over its steps' axes."""
    axes: list[list[ParamSpec]] = []
    for step in steps:
        for param in step.parameters:
            axis = _axis(project, experiment, step, param.name, cli_params, cli_evals)
            if axis is not None:
                axes.append(axis)
            elif param.default is param.empty:
                raise _missing(project, experiment, step, param.name)
    step_specs = tuple(StepSpec(s.name, s.config.function, s.config.lookup, s.chained) for s in steps)
    return [
        TrialSpec(experiment.name, step_specs, tuple(combo), experiment.expect, experiment.higher_is_better)
        for combo in itertools.product(*axes)
    ]


def check_distinct_ids(project: ProjectConfig, trials: Sequence[TrialSpec]) -> None:
    """Two trials must never share an id (variant names joined by '-' can collide)."""
    seen: dict[str, TrialSpec] = {}
    for spec in trials:
        other = seen.setdefault(spec.item_name, spec)
        if other is not spec:
            first = " + ".join(p.id_part for p in other.params if p.in_id)
            second = " + ".join(p.id_part for p in spec.params if p.in_id)
            raise ConfigError(
                f"{project.path}: experiment {spec.experiment!r}: two trials would both be {spec.item_name} "
                f"({first}, and {second}). Rename a variant so that ids stay distinct (a '-' inside a variant "
                "name is what makes them collide)."
            )
