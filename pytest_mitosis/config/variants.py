"""Turn an experiment and its parameters into trials: axes, their cartesian product, stable ids.

A trial's id is made of variant names (lookup params) and ``param_value`` parts (eval params
not at their signature default), in step order and then signature order, so it never changes
between runs and ``-k "sine and slow"``, ``-k amplitude_4``, ``--lf`` and node ids keep
working. pytest's ``-k`` grammar reads only words made of letters, digits and ``_.+-:/[]\\``,
so an eval part is written ``name_value`` with every other character folded to ``_`` (never
``=``, which ``-k`` cannot parse). No pytest import here.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..core.errors import ConfigError
from ..core.fingerprint import fingerprint
from ..core.rules import Directions, Tolerance
from .assignments import Assignment
from .project import ExperimentConfig, ProjectConfig, Reference
from .steps import LoadedStep

#: a step parameter with this name receives the trial seed
SEED = "seed"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.=+-]+")
#: characters an eval value keeps in a trial id: -k words, and nothing a node id or a path would split on
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_.+-]+")
#: an eval value longer than this (after folding) is cut and made unique with a digest of its expression
ID_VALUE_LIMIT = 24


@dataclass(frozen=True)
class ParamSpec:
    """One parameter of one step of a trial, as the notebook will resolve it."""

    step: str
    name: str
    kind: Literal["lookup", "eval", "seed"]
    #: the variant name (lookup) or the Python expression (eval)
    text: str
    tracked: bool
    #: part of the trial id: every lookup param; a tracked eval param not at its default; an untracked
    #: eval param only when it forms an axis
    in_id: bool
    #: the value as resolved in the pytest process (for the header and, later, fingerprints)
    value: Any = field(compare=False, hash=False, repr=False, default=None)
    #: the eval param's part of the id (``amplitude_4``); lookup params use their variant name
    label: str = field(compare=False, default="")
    #: an eval value exactly equal to the signature default: neither in the id nor in the identity
    at_default: bool = field(compare=False, default=False)

    @property
    def id_part(self) -> str:
        return self.text if self.kind == "lookup" else self.label or eval_label(self.name, self.text)


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:6]


def eval_label(name: str, text: str, unique: bool = False) -> str:
    """An eval value's part of a trial id: ``amplitude_4``, ``system_lorenz``, ``x0_np.ones_3``.

    A string literal contributes its content, any other expression its text; each run of
    characters that ``-k`` cannot parse (spaces too) becomes one ``_``. A value longer than
    ``ID_VALUE_LIMIT`` is cut and ends in six hex digits of the expression's SHA-256, so it
    stays unique and stable (the same expression always gives the same part); ``unique`` adds
    those digits to a short value too, for two expressions that fold to the same text.
    """
    try:
        literal = ast.literal_eval(text)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        literal = None
    source = literal if isinstance(literal, str) else text
    short = _ID_UNSAFE.sub("_", source).strip("_")
    if len(short) > ID_VALUE_LIMIT:
        short = short[: ID_VALUE_LIMIT - 7].rstrip("_") + "_" + _digest(text)
    elif unique or not short:
        short = (short + "_" if short else "") + _digest(text)
    return f"{name}_{short}"


def _at_default(value: Any, default: Any) -> bool:
    """Whether an eval value is exactly the signature default (same fingerprint), so not worth naming."""
    if default is inspect.Parameter.empty or type(value) is not type(default):
        return False
    try:
        return fingerprint(value)[0] == fingerprint(default)[0]
    except Exception:  # cannot tell: name it (its setup will say why it cannot be fingerprinted)
        return False


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
    #: which way is better, per metric: the pyproject's rules and the command line's, resolved once per experiment
    directions: Directions = Directions()
    #: per metric name: how close is unchanged for the drift gate, or ignored (``[tool.mitosis.tolerances]``)
    tolerances: tuple[tuple[str, Tolerance], ...] = ()

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
        if step is not None and assignment.kind != "eval":
            # checked here too, not only where an experiment expands: the step's experiments may
            # all be broken, and a typo must still stop the session rather than run the others
            _check_variants(step, assignment.param, [assignment.value], assignment.source)


def _check_variants(step: LoadedStep, param_name: str, names: Sequence[str], where: str) -> None:
    """Each of ``names`` is a variant of ``step.param_name`` in its lookup dict, or a ``ConfigError``."""
    target = f"{step.name}.{param_name}"
    variants = step.lookup.get(param_name)
    if variants is not None and not variants:
        raise ConfigError(
            f"{where}: {target} has no variants: its entry {param_name!r} in the lookup dict "
            f"{step.config.lookup} is empty ({{}}), so there is no variant {names[0]!r} to choose. "
            f"Add the variant there, or give the value as an eval param (--mitosis-eval {target}=EXPR)."
        )
    if variants is None:
        lookup_params = ", ".join(step.lookup_params) or "none"
        raise ConfigError(
            f"{where}: {target} is not a lookup param of step {step.name!r}: "
            f"its lookup dict {step.config.lookup} has no entry {param_name!r} "
            f"(its lookup params are: {lookup_params}). Use --mitosis-eval for an eval param."
        )
    for name in names:
        if name not in variants:
            raise ConfigError(
                f"{where}: {target} has no variant {name!r} in {step.config.lookup}; "
                f"the variants are: {', '.join(variants)}."
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
    param: inspect.Parameter,
    cli_params: Sequence[Assignment],
    cli_evals: Sequence[Assignment],
) -> list[ParamSpec] | None:
    """The values one parameter takes in an experiment, or ``None`` when its default is used."""
    param_name = param.name
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
        resolved = {
            text: _eval_value(project, step, next(a for a in evals if a.value == text), where) for text in values
        }
        # Named in the id (as mitosis names trials by their values): every tracked value not at the
        # signature default; an untracked one only where it tells the trials of an axis apart (and
        # an untracked value is never fingerprinted, not even to compare it with the default).
        default = {text: tracked and _at_default(value, param.default) for text, value in resolved.items()}
        named = {text: not default[text] and (tracked or len(values) > 1) for text in values}
        labels = {text: eval_label(param_name, text) for text in values}
        folded = [labels[t] for t in values if named[t]]
        labels = {t: eval_label(param_name, t, unique=folded.count(label) > 1) for t, label in labels.items()}
        return [
            ParamSpec(
                step.name, param_name, "eval", text, tracked, named[text], resolved[text], labels[text], default[text]
            )
            for text in values
        ]
    variants = step.lookup.get(param_name)
    if narrowed:
        where = narrowed[0].source
        names = list(dict.fromkeys(a.value for a in narrowed))
        _check_variants(step, param_name, names, where)
        chosen = step.lookup[param_name]  # _check_variants: the entry exists and has every name
        tracked = not any(a.untracked for a in narrowed)
        return [ParamSpec(step.name, param_name, "lookup", n, tracked, True, chosen[n]) for n in names]
    if variants:  # an empty entry ({}) is a lookup param without variants: no axis, the default applies
        return [ParamSpec(step.name, param_name, "lookup", n, True, True, v) for n, v in variants.items()]
    if param_name == SEED:  # mitosis' run(seed, ...): the trial seed, unless an eval param sets it
        return [ParamSpec(step.name, param_name, "seed", "trial seed", False, False, None)]
    return None


def _missing(project: ProjectConfig, experiment: ExperimentConfig, step: LoadedStep, param: str) -> ConfigError:
    where = f"{project.path}: experiment {experiment.name!r}, step {step.name!r} ({step.config.function})"
    eval_table = (
        f"[tool.mitosis.experiments] {experiment.name} = {{ steps = [...], eval = "
        f'{{ "{step.name}.{param}" = "EXPR" }} }}'
    )
    if param in step.lookup and not step.lookup[param]:
        return ConfigError(
            f"{where}: parameter {param!r} has no default, and its entry in the lookup dict {step.config.lookup} "
            f'is empty ({{}}), so it has no variant to take. Add a variant there ({param!r}: {{"name": value}}), '
            f"or give it a value on the command line, --mitosis-eval {step.name}.{param}=EXPR, or in the experiment "
            f"table, {eval_table}."
        )
    lookup = f" or add {param!r} to its lookup dict ({step.config.lookup})" if step.config.lookup else ""
    return ConfigError(
        f"{where}: parameter {param!r} has no default and no value. Give it one on the command line, "
        f"--mitosis-eval {step.name}.{param}=EXPR, or in the experiment table, {eval_table}"
        f"{lookup}."
    )


def expand(
    project: ProjectConfig,
    experiment: ExperimentConfig,
    steps: Sequence[LoadedStep],
    cli_params: Sequence[Assignment] = (),
    cli_evals: Sequence[Assignment] = (),
    directions: Directions | None = None,
) -> list[TrialSpec]:
    """All trials of ``experiment``: the cartesian product over its steps' axes.

    ``directions``: the experiment's, command line included (default: the pyproject's alone).
    """
    rules = directions if directions is not None else project.directions(experiment.name)
    tolerances = tuple(sorted(project.tolerances_of(experiment.name).items()))
    axes: list[list[ParamSpec]] = []
    for step in steps:
        for param in step.parameters:
            axis = _axis(project, experiment, step, param, cli_params, cli_evals)
            if axis is not None:
                axes.append(axis)
            elif param.default is param.empty:
                raise _missing(project, experiment, step, param.name)
    step_specs = tuple(StepSpec(s.name, s.config.function, s.config.lookup, s.chained) for s in steps)
    return [
        TrialSpec(experiment.name, step_specs, tuple(combo), experiment.expect, rules, tolerances)
        for combo in itertools.product(*axes)
    ]


def _parts(spec: TrialSpec) -> str:
    return " + ".join(
        p.id_part if p.kind == "lookup" else f"{p.id_part} (eval {p.step}.{p.name}={p.text})"
        for p in spec.params
        if p.in_id
    )


def check_distinct_ids(project: ProjectConfig, trials: Sequence[TrialSpec]) -> None:
    """Two trials must never share an id (variant names joined by '-', or folded eval values, can collide)."""
    seen: dict[str, TrialSpec] = {}
    for spec in trials:
        other = seen.setdefault(spec.item_name, spec)
        if other is not spec:
            evals = any(p.kind == "eval" and p.in_id for p in (*spec.params, *other.params))
            hint = (
                "Rename a variant, or write an eval expression differently, so that ids stay distinct (a '-' inside "
                "a variant name, or expressions that differ only in characters an id cannot hold, make them collide)."
                if evals
                else "Rename a variant so that ids stay distinct (a '-' inside a variant name is what makes them collide)."
            )
            raise ConfigError(
                f"{project.path}: experiment {spec.experiment!r}: two trials would both be {spec.item_name} "
                f"({_parts(other)}, and {_parts(spec)}). {hint}"
            )
