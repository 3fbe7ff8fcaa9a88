"""Collection: ``pyproject.toml`` becomes a ``MitosisFile`` whose items are the trials.

``MitosisFile.collect`` turns ``[tool.mitosis]`` and the command line into ``TrialItem``s
(one per trial, named ``experiment[variant-...]``). A problem of one experiment (its step
module, lookup dict, table entry, a parameter without value) becomes a ``BrokenExperiment``
item whose setup fails with the message, so the other experiments still run (a collection
error would stop the whole session); only a file that cannot be read at all, or a wrong
command line, is one ``ERROR collecting pyproject.toml``. ``TrialItem.runtest`` hands the
trial to the runner and reports its outcome; ``repr_failure`` shows our message, not our
traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest

from .errors import ConfigError, TrialFailed

if TYPE_CHECKING:
    from .identity import TrialIdentity
    from .options import Settings
    from .project import ExperimentConfig, ProjectConfig
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
    from .project import adhoc_experiment
    from .steps import LoadedStep, ensure_importable, load_step
    from .variants import check_cli_assignments, check_distinct_ids, expand

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
            trials = expand(project, experiment, chain, settings.params, settings.evals)
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


class MitosisFile(pytest.File):
    """The investigation's pyproject.toml, collected for its ``[tool.mitosis]`` experiments."""

    def collect(self) -> Iterator[pytest.Item]:
        from .session import session_key

        mitosis = self.config.stash[session_key]
        if mitosis.settings.reproduce:
            yield from self._reproductions(mitosis)
            return
        try:
            experiments = mitosis.experiments()
        except ConfigError as err:
            raise self.CollectError(str(err)) from None
        for experiment in experiments:
            if experiment.error is not None:
                # An item, not a CollectError: a collection error would stop the whole session,
                # and -k deselects an item like any other.
                broken = BrokenExperiment.from_parent(self, name=experiment.name, message=experiment.error)
                broken.add_marker("mitosis")
                yield broken
                continue
            for spec in experiment.trials:
                # The node id is given as a string so that pytest parses "experiment[id]" into a name
                # and params, exactly as it parses the ids it stores for --lf and --deselect.
                item = TrialItem.from_parent(self, name=spec.item_name, nodeid=f"{self.nodeid}::{spec.item_name}", spec=spec)
                item.add_marker("mitosis")
                yield item

    def _reproductions(self, mitosis: Any) -> Iterator[pytest.Item]:
        from .records import Reader, RecordsError
        from .reproduce import select

        try:
            reader = Reader(mitosis.project().trials_folder)
            records = select(reader, mitosis.settings.reproduce)
        except (ConfigError, RecordsError) as err:
            raise self.CollectError(str(err)) from None
        for record in records:
            name = f"reproduce[{record.key}]"
            item = ReproduceItem.from_parent(self, name=name, nodeid=f"{self.nodeid}::{name}", record=record, reader=reader)
            item.add_marker("mitosis")
            yield item


class BrokenExperiment(pytest.Item):
    """An experiment that cannot be collected: its setup fails with the reason, the others run."""

    def __init__(self, *, message: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.message = message

    def setup(self) -> None:
        pytest.fail(f"experiment {self.name!r} cannot run: {self.message}", pytrace=False)

    def runtest(self) -> None:  # pragma: no cover - setup always fails
        raise AssertionError("unreachable")

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"experiment {self.name} (cannot be collected)"


class _OutcomeItem(pytest.Item):
    """An item whose failures are our messages (``TrialFailed``), never our traceback."""

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, TrialFailed):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style=style)


class ReproduceItem(_OutcomeItem):
    """Re-run one recorded trial at its commit; passes when main and metrics match the record."""

    def __init__(self, *, record: Any, reader: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.record = record
        self.reader = reader

    def runtest(self) -> None:
        from .reporting import user_properties
        from .reproduce import ReproductionError
        from .session import session_key

        try:
            outcome = self.config.stash[session_key].reproduce(self, self.record, self.reader)
        except ReproductionError as err:
            raise TrialFailed(str(err)) from None
        self.user_properties.extend(user_properties(outcome))
        self.user_properties.append(("mitosis.reproduces", self.record.key))
        if not outcome.passed:
            raise TrialFailed(outcome.message or "the reproduction failed")

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"reproduction of {self.record.name} (key {self.record.key})"


class TrialItem(_OutcomeItem):
    """One trial of one experiment: runs in a fresh kernel when pytest calls ``runtest``."""

    def __init__(self, *, spec: TrialSpec, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spec = spec
        self.identity: TrialIdentity | None = None

    def setup(self) -> None:
        """Refuse the trial before its kernel starts if a variant changed meaning (per trial)."""
        from .identity import UnfingerprintableValue
        from .session import session_key
        from .store import StoreError, VariantRedefined

        refusal = None
        try:
            self.identity = self.config.stash[session_key].guard(self.nodeid, self.spec)
        except (VariantRedefined, UnfingerprintableValue, StoreError) as err:
            refusal = str(err)
        if refusal is not None:  # outside the except block: no "during handling" chain in the report
            pytest.fail(refusal, pytrace=False)

    def runtest(self) -> None:
        from .reporting import user_properties
        from .session import session_key

        assert self.identity is not None, "setup() ran"
        outcome = self.config.stash[session_key].run(self, self.identity)
        self.user_properties.extend(user_properties(outcome))
        if not outcome.passed:
            raise TrialFailed(outcome.message or "the trial failed")

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"trial: {self.name}"
