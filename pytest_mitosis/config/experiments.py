"""The experiments of a session, each expanded into its trials or isolated with the reason it cannot run.

``collect_experiments`` loads the step functions and lookup dicts the selected experiments
use and expands every experiment into its trial specs. A problem of one experiment (its step
module, lookup dict, table entry, a parameter without value) makes only that experiment a
:class:`Collected` with an ``error``, so the others still run; problems of the command line
itself raise ``ConfigError``. Pure: the pytest layer (:mod:`pytest_mitosis.pytest_layer.collection`) turns
the result into items.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from .project import adhoc_experiment
from .steps import LoadedStep, ensure_importable, load_step
from .variants import check_cli_assignments, check_distinct_ids, expand

if TYPE_CHECKING:
    from .project import ExperimentConfig, ProjectConfig
    from .settings import Settings
    from .variants import TrialSpec


#: the sources of command-line assignments (see options.py): their errors are the command's, not one experiment's
_COMMAND_LINE = ("--mitosis-param", "--mitosis-eval", "--mitosis-steps")


@dataclass(frozen=True)
class Collected:
    """One experiment as collection found it: its trials, or why it cannot run."""

    name: str
    trials: tuple[TrialSpec, ...] = ()
    #: the complete message when the experiment cannot be collected (then it has no trials)
    error: str | None = None


def collect_experiments(project: ProjectConfig, settings: Settings) -> list[Collected]:
    """Every selected experiment with its trials, each one isolated from the others' problems.

    A broken step module, lookup dict, table entry or missing parameter makes only the
    experiments that use it a :class:`Collected` with an ``error``. Problems of the command
    line itself (an unknown step or variant in ``--mitosis-param``, ``--mitosis-eval``,
    ``--mitosis-steps``) raise ``ConfigError``: nothing the user asked for can be trusted then.
    """
    ensure_importable(project.root)
    if settings.chains:
        selected: list[ExperimentConfig | str] = [adhoc_experiment(project, chain) for chain in settings.chains]
    else:
        selected = [project.experiments.get(name) or name for name in project.order]
    loaded: dict[tuple[str, bool], LoadedStep | ConfigError] = {}

    def step(name: str, chained: bool) -> LoadedStep:
        if name in project.broken_steps:
            raise ConfigError(project.broken_steps[name])
        if (name, chained) not in loaded:
            try:
                loaded[(name, chained)] = load_step(project, project.steps[name], chained=chained)
            except ConfigError as err:
                loaded[(name, chained)] = err
        found = loaded[(name, chained)]
        if isinstance(found, ConfigError):
            raise found
        return found

    cli = [*settings.params, *settings.evals]
    found: list[Collected] = []
    for experiment in selected:
        if isinstance(experiment, str):
            found.append(Collected(experiment, error=project.broken[experiment]))
            continue
        try:
            chain = [step(name, index > 0) for index, name in enumerate(experiment.steps)]
            directions = project.directions(experiment.name, settings.higher_is_better, settings.lower_is_better)
            trials = expand(project, experiment, chain, settings.params, settings.evals, directions)
            check_distinct_ids(project, trials)
        except ConfigError as err:
            if str(err).startswith(_COMMAND_LINE):
                raise
            found.append(Collected(experiment.name, error=str(err)))
            continue
        found.append(Collected(experiment.name, tuple(trials)))
    usable = {name: step for (name, _), step in loaded.items() if isinstance(step, LoadedStep)}
    check_cli_assignments(project, usable, [a for a in cli if a.step not in project.broken_steps])
    return found
