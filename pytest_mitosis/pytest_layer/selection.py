"""What a session was asked to run: the sweep size guard and node ids that match no trial.

Every lookup param a step accepts is an axis, so a plain ``pytest --mitosis`` over a shared
lookup dict can mean a thousand kernels. The guard refuses to *run* more than
``mitosis_max_trials`` trials that nobody selected; ``--collect-only`` and ``--mitosis-check``
are never limited. Imported only when ``--mitosis`` is given.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..config.settings import Settings
from ..core.errors import ConfigError
from .options import trial_node_ids

if TYPE_CHECKING:
    import pytest

    from ..config.variants import TrialSpec
    from .context import SessionContext

#: options that select trials when typed on the command line (not from addopts, where
#: ``-m "not slow"`` is a project-wide default, not a choice of these trials). ``--mitosis-param``
#: is not one: it narrows one step's axis, and every experiment without that step keeps its
#: whole sweep, so the trials left after it are counted like any others.
_SELECTING = ("-k", "-m", "--lf", "--last-failed")


def explicit_selection(config: pytest.Config, settings: Settings) -> str | None:
    """The option by which the user chose the trials to run, or ``None`` when nothing was chosen.

    Counted: ``-k``, ``-m`` and ``--lf`` typed on the command line, and node ids inside the
    pyproject (``pyproject.toml::sine[slow]``). Not counted: options from ``addopts`` or
    ``PYTEST_ADDOPTS``, ``--deselect`` (it removes a few, it does not choose),
    ``--mitosis-param`` (it narrows one axis: the trials left are counted), ``--mitosis-eval``
    (repeating it *makes* an axis) and ``--mitosis-steps`` (a chain is what to run, not how
    much of its sweep). ``--mitosis-resume`` typed on the command line counts: it continues a sweep
    that was started once already (its size accepted then), and runs only what is missing of it.
    """
    typed = [a for a in config.invocation_params.args if isinstance(a, str)]
    if "--mitosis-resume" in typed:
        return "--mitosis-resume"
    for arg in typed:
        for option in _SELECTING:
            if arg == option or arg.startswith(option + "=") or (len(option) == 2 and arg.startswith(option)):
                if option in ("-k", "-m") and not (config.option.keyword if option == "-k" else config.option.markexpr):
                    continue
                if option in ("--lf", "--last-failed") and not _failed_last_time(config):
                    continue  # with nothing failed last time, --lf runs everything
                return option
    if config.args_source == config.ArgsSource.ARGS and trial_node_ids(config):
        return "a node id"
    return None


def _failed_last_time(config: pytest.Config) -> bool:
    plugin = config.pluginmanager.get_plugin("lfplugin")
    return bool(getattr(plugin, "lastfailed", None))


def guarded(context: SessionContext) -> bool:
    """Whether the sweep size guard applies to this session at all (cheap: nothing is collected to tell):
    a limit is set, this is no reproduction, and nobody selected the trials."""
    settings: Settings = context.settings
    return bool(settings.max_trials) and not settings.reproduce and not explicit_selection(context.config, settings)


def sweep_size_refusal(
    context: SessionContext, trials: Sequence[tuple[str, TrialSpec]] | None, node_ids: Sequence[str] = ()
) -> str | None:
    """The sweep size guard: why this session must not start more than ``max_trials`` kernels nobody chose.

    ``trials`` are the selected trials; ``None`` under pytest-xdist, whose controller does not
    collect: then ``node_ids`` are what a worker collected (and will run), counted without
    importing the steps in the controller. Only when they are over the limit are the experiments
    expanded here, to leave out an experiment that cannot be collected (its one item is no
    trial). ``context`` is the session's (what it reads once).
    """
    settings: Settings = context.settings
    limit = settings.max_trials
    if not guarded(context):
        return None
    per_experiment: dict[str, int] = {}
    examples: dict[str, str] = {}
    if trials is None:
        if not context.collects_trials():
            return None
        root = context.config.rootpath
        files = {i.split("::", 1)[0] for i in node_ids if "::" in i}
        ours = {f for f in files if (root / f).resolve() == settings.pyproject}
        names = [i.split("::", 1)[1] for i in node_ids if i.split("::", 1)[0] in ours and "::" in i]
        if len(names) <= limit:
            return None
        try:
            broken = {e.name for e in context.experiments() if e.error is not None}
        except ConfigError:
            return None  # the workers report it as a collection error
        for name in names:
            experiment = name.split("[", 1)[0]
            if experiment not in broken:
                per_experiment[experiment] = per_experiment.get(experiment, 0) + 1
                examples.setdefault(experiment, name)
    else:
        for _, spec in trials:
            per_experiment[spec.experiment] = per_experiment.get(spec.experiment, 0) + 1
            examples.setdefault(spec.experiment, spec.item_name)
    if sum(per_experiment.values()) <= limit:
        return None
    return refusal(per_experiment, limit, examples, context.config, settings.pyproject)


def refusal(
    per_experiment: Mapping[str, int], limit: int, examples: Mapping[str, str], config: pytest.Config, pyproject: Path
) -> str:
    """The message of the sweep size guard: the count per experiment and every way to select."""
    total = sum(per_experiment.values())
    width = max(len(name) for name in per_experiment)
    counts = "\n".join(
        f"  {name.ljust(width)}  {count} trial{'s' if count != 1 else ''}" for name, count in per_experiment.items()
    )
    try:
        where = os.path.relpath(pyproject, config.invocation_params.dir)
    except ValueError:  # another drive on Windows
        where = str(pyproject)
    name, item = next(iter(examples.items()))
    words = [w for w in re.split(r"[\[\]\-]", item) if w and "=" not in w and w != name][:1]
    keyword = f'-k "{name} and {words[0]}"' if words else f"-k {name}"
    return (
        f"mitosis: this session would run {total} trials, more than mitosis_max_trials ({limit}), "
        f"and none was selected:\n{counts}\n"
        f"Select the trials to run with {keyword}, -m, node ids ('{where}::{item}') or --lf, or narrow "
        f"axes with --mitosis-param STEP.PARAM=VARIANT; or raise the limit with --mitosis-max-trials {total} "
        f"(ini mitosis_max_trials; 0: no limit). "
        "`pytest --mitosis --collect-only -q` lists the trials, `pytest --mitosis --mitosis-check` checks them "
        "without running any."
    )


_NOT_FOUND = re.compile(
    r"^(?:not found: (?P<a>\S+)\n\(no match in any of .*\)|found no collectors for (?P<b>\S+))$", re.S
)


def explain_not_found(message: str, context: SessionContext) -> str:
    """pytest's "not found: pyproject.toml::nosuch", completed with what the pyproject does hold."""
    match = _NOT_FOUND.match(message)
    if match is None:
        return message
    arg = match.group("a") or match.group("b")
    path, _, rest = arg.partition("::")
    settings: Settings = context.settings
    if not rest or settings.reproduce or Path(path).resolve() != settings.pyproject:
        return message
    name = rest.split("[", 1)[0].split("::", 1)[0]
    for given in context.config.args:  # pytest reports the id without its [...]: show what was typed
        given_path, _, given_rest = given.partition("::")
        if Path(given_path).resolve() == settings.pyproject and given_rest.split("[", 1)[0] == name:
            rest = given_rest
            break
    try:
        project = context.project()
        experiments = context.experiments()
    except ConfigError:
        return message
    names = [e.name for e in experiments]
    shown = ", ".join(names) or "none"
    chains = " (--mitosis-steps collects only the chains it names)" if settings.chains else ""
    found = next((e for e in experiments if e.name == name), None)
    if found is not None:
        trials = [spec.item_name for spec in found.trials]
        listed = ", ".join(trials[:10]) + (f", ... ({len(trials)} in all)" if len(trials) > 10 else "")
        why = (
            f"experiment {name!r} has no trial {rest!r}; its trials are: {listed or 'none'}. "
            f'Select several with -k, e.g. -k "{name} and VARIANT".'
        )
    elif name in project.step_names:
        why = (
            f"{name!r} is a step of [tool.mitosis.steps] but not an experiment{chains}; the experiments are: "
            f"{shown}. Run the step on its own with --mitosis-steps {name}."
        )
    else:
        why = f"{settings.pyproject} has no experiment {name!r}{chains}; the experiments are: {shown}."
    return f"not found: {arg}\n{why}"
