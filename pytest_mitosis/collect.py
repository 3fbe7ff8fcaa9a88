"""Collection: ``pyproject.toml`` becomes a ``MitosisFile`` whose items are the trials.

``MitosisFile.collect`` turns ``[tool.mitosis]`` and the command line into ``TrialItem``s
(one per trial, named ``experiment[variant-...]``); every configuration problem becomes one
``ERROR collecting pyproject.toml`` paragraph. ``TrialItem.runtest`` hands the trial to the
runner and reports its outcome; ``repr_failure`` shows our message, not our traceback.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from .errors import ConfigError, TrialFailed

if TYPE_CHECKING:
    from .identity import TrialIdentity
    from .variants import TrialSpec


class MitosisFile(pytest.File):
    """The investigation's pyproject.toml, collected for its ``[tool.mitosis]`` experiments."""

    def collect(self) -> Iterator[pytest.Item]:
        from .steps import ensure_importable, load_step
        from .variants import check_cli_assignments, check_distinct_ids, expand

        from .session import session_key

        mitosis = self.config.stash[session_key]
        if mitosis.settings.reproduce:
            yield from self._reproductions(mitosis)
            return
        try:
            project = mitosis.project()
            ensure_importable(project.root)
            loaded = {}
            trials: list[TrialSpec] = []
            for experiment in project.experiments.values():
                chain = []
                for index, step_name in enumerate(experiment.steps):
                    cache_key = (step_name, index > 0)
                    if cache_key not in loaded:
                        loaded[cache_key] = load_step(project, project.steps[step_name], chained=index > 0)
                    chain.append(loaded[cache_key])
                trials += expand(project, experiment, chain, mitosis.settings.params, mitosis.settings.evals)
            check_cli_assignments(
                project, {k[0]: v for k, v in loaded.items()}, [*mitosis.settings.params, *mitosis.settings.evals]
            )
            check_distinct_ids(project, trials)
        except ConfigError as err:
            raise self.CollectError(str(err)) from None
        for spec in trials:
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
