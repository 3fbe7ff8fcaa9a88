"""Before the first trial: the session-wide refusals (a dirty tree, a trials folder in the way, an
unusable store), then the leftovers of killed sessions and the records kept while the store was away.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from ..store import TrialStore
    from .context import SessionContext
    from .state import SessionState


class Preflight:
    """Readies the trials folder and the store once per session, refusing what cannot run."""

    def __init__(self, context: SessionContext, state: SessionState) -> None:
        self.context = context
        self.state = state
        self._swept = False

    def run(self) -> None:
        """Session-wide refusals, before the first trial: a dirty tree, an unusable store.

        Then the leftovers of sessions that were killed: their staging folders (once the store
        has marked their trials interrupted) and their kernels' private folders.
        """
        from ..checks.clean_tree import refusal
        from ..store import StoreError

        context = self.context
        try:
            project = context.project()
        except ConfigError:
            return  # reported as a collection error already
        if not context.settings.debug and not context.settings.reproduce:  # reproductions run in a clean checkout
            message = refusal(context.repo(), project.root)
            if message is not None:
                raise pytest.UsageError(message)
        self.prepare_trials_folder()
        try:
            store = context.store()
        except StoreError as err:
            raise pytest.UsageError(str(err)) from None
        self.record_kept(earlier=True)
        self.sweep(store)

    def prepare_trials_folder(self) -> None:
        """Create the trials folder (with its .gitignore); a path in the way is a usage error."""
        from ..execution.artifacts import prepare_trials_folder

        folder = self.context.project().trials_folder
        pyproject = self.context.settings.pyproject
        if folder == pyproject or folder in pyproject.parents:
            raise pytest.UsageError(
                f"mitosis: the trials folder {folder} {'is' if folder == pyproject else 'holds'} the investigation's "
                f"{pyproject.name} ({pyproject}): trial folders and the store go into a folder of their own, never "
                "over or around the code. Point --mitosis-trials-folder (or trials-folder in [tool.mitosis]) at a "
                f"new folder, such as {pyproject.parent / 'trials'}."
            )
        try:
            prepare_trials_folder(folder, gitignore=self.context.settings.gitignore)
        except OSError as err:
            what = err.strerror or str(err)
            if folder.exists() and not folder.is_dir():
                what = "it exists and is not a folder"
            raise pytest.UsageError(
                f"mitosis: the trials folder {folder} cannot be used: {what}. Point --mitosis-trials-folder (or "
                "trials-folder in [tool.mitosis]) at a folder you can write, or move what is in the way."
            ) from None

    def record_kept(self, earlier: bool) -> None:
        """Record the outcomes (and session ends) kept in the trials folder while the store was away
        (see :mod:`..recording.pending`), saying so in the terminal summary; never opens a store for it."""
        store = self.context.opened_store()
        if store is None:
            return
        from ..recording.pending import record_kept

        recorded, problems = record_kept(store, self.context.project().trials_folder)
        when = "kept by an earlier session while the store was away" if earlier else "once the store was back"
        self.state.store_notes += [f"mitosis: recorded {when}: {line}" for line in recorded]
        self.state.store_notes += [f"mitosis: {line}" for line in problems]

    def sweep(self, store: TrialStore) -> None:
        """Remove what killed sessions left: staging folders of trials no longer running, kernel folders."""
        from ..execution.artifacts import leftover_staging, remove_staging
        from ..execution.private import sweep_stale_private_folders

        if self._swept:
            return
        self._swept = True
        trials = self.context.project().trials_folder
        keys = leftover_staging(trials)
        statuses = getattr(store, "statuses", None)
        if keys and statuses is not None:
            for key, status in statuses(keys).items():
                if status != "running":
                    remove_staging(trials, key)
        sweep_stale_private_folders()
