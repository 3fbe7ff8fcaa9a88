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
from typing import TYPE_CHECKING, Any

import pytest

from ..core.errors import ConfigError, TrialFailed

if TYPE_CHECKING:
    from ..config.variants import TrialSpec
    from ..identity.trial import TrialIdentity
    from .session import MitosisSession


class MitosisFile(pytest.File):
    """The investigation's pyproject.toml, collected for its ``[tool.mitosis]`` experiments."""

    def __init__(self, *, mitosis: MitosisSession, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        #: the session's context, handed over by the hook that collects this file (never imported here)
        self.mitosis = mitosis

    def collect(self) -> Iterator[pytest.Item]:
        mitosis = self.mitosis
        if mitosis.context.settings.reproduce:
            yield from self._reproductions(mitosis)
            return
        try:
            experiments = mitosis.context.experiments()
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
                item = TrialItem.from_parent(
                    self, name=spec.item_name, nodeid=f"{self.nodeid}::{spec.item_name}", spec=spec
                )
                item.add_marker("mitosis")
                yield item

    def _reproductions(self, mitosis: MitosisSession) -> Iterator[pytest.Item]:
        from ..recording.reproduction import select
        from ..store.readers import Reader, RecordsError

        try:
            reader = Reader(mitosis.context.project().trials_folder, mitosis.context.store_url())
            records = select(reader, mitosis.context.settings.reproduce)
        except (ConfigError, RecordsError) as err:
            raise self.CollectError(str(err)) from None
        for record in records:
            name = f"reproduce[{record.key}]"
            item = ReproduceItem.from_parent(
                self, name=name, nodeid=f"{self.nodeid}::{name}", record=record, reader=reader
            )
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

    @property
    def mitosis(self) -> MitosisSession:
        """The session's context, from the ``MitosisFile`` that collected this item."""
        parent = self.parent
        assert isinstance(parent, MitosisFile), "collected by MitosisFile"
        return parent.mitosis

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
        from ..recording.reproduction import ReproductionError
        from ..views.summary import user_properties

        try:
            outcome = self.mitosis.trials.reproduce(self.nodeid, self.record, self.reader)
        except ReproductionError as err:
            raise TrialFailed(str(err)) from None
        self.user_properties.extend(user_properties(outcome, self.mitosis.context.session_key))
        job = self.mitosis.trials.job_of(self.nodeid)
        if job is not None:  # a Slurm task: where it ran, and its own time (not the time pytest waited for it)
            self.user_properties.append(("mitosis.job", job))
            self.ran_for = outcome.seconds
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
        #: under Slurm, the seconds the trial ran in its job: the call's duration in reports and junit XML
        self.ran_for: float | None = None

    def setup(self) -> None:
        """Refuse the trial before its kernel starts if a variant changed meaning (per trial)."""
        from ..core import profile
        from ..identity.trial import UnfingerprintableValue
        from ..store.protocol import StoreError, VariantRedefined

        refusal = None
        try:
            with profile.timed("setup and guards"):
                done = self.mitosis.trials.resumed(self.nodeid, self.spec)
                if done is not None:  # reported at the trial's own location, not at this line (see hooks.py)
                    pytest.skip(done)
                self.identity = self.mitosis.trials.guard(self.nodeid, self.spec)
        except (VariantRedefined, UnfingerprintableValue, StoreError, TrialFailed) as err:
            refusal = str(err)
        if refusal is not None:  # outside the except block: no "during handling" chain in the report
            self._stop_if_code_moved()
            pytest.fail(refusal, pytrace=False)

    def runtest(self) -> None:
        from ..core import profile
        from ..views.summary import user_properties

        assert self.identity is not None, "setup() ran"
        try:
            outcome = self.mitosis.trials.run(self.nodeid, self.spec, self.identity)
        finally:
            profile.flush("trial", self.nodeid)
        self.user_properties.extend(user_properties(outcome, self.mitosis.context.session_key))
        job = self.mitosis.trials.job_of(self.nodeid)
        if job is not None:  # a Slurm task: where it ran, and its own time (not the time pytest waited for it)
            self.user_properties.append(("mitosis.job", job))
            self.ran_for = outcome.seconds
        if not outcome.passed:
            self._stop_if_code_moved()
            raise TrialFailed(outcome.message or "the trial failed")

    def _stop_if_code_moved(self) -> None:
        """Once the investigation's code changed, every later trial would be refused: the sweep stops, as ``-x``
        stops pytest (pytest-xdist's workers stop too, and their controller says why)."""
        if self.mitosis.state.code_moved is not None:
            self.session.shouldfail = self.mitosis.state.code_moved

    def reportinfo(self) -> tuple[Any, int | None, str]:
        return self.path, None, f"trial: {self.name}"
