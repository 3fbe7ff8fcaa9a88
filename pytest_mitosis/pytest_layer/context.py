"""What one pytest session with ``--mitosis`` reads once: settings, project, experiments, git state,
environment, seed, session key, store.

Each is read or opened once per process, lazily (``--help`` and ``--collect-only`` never open a
store or read git), and handed to the services that act on trials (:mod:`.trials`,
:mod:`.preflight`, :mod:`.heartbeat`). Nothing here runs a trial or writes a record: a refusal
of a stage becomes pytest's error (``UsageError``) and that is all.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..config.settings import Settings
from ..core.errors import ConfigError
from ..execution.warmup import WorkAhead

if TYPE_CHECKING:
    from ..checks.clean_tree import RepoState
    from ..config.experiments import Collected
    from ..config.project import ProjectConfig
    from ..execution.shared import SharedHelpers
    from ..store import StoreURL, TrialStore


def warmup_imports() -> None:
    """What reading the git state and the environment imports, imported here in the main thread
    (see execution/warmup.py: the warm-up thread must not be the first to import a module)."""
    import importlib.metadata  # noqa: F401

    try:
        import git  # noqa: F401
    except ImportError:  # no git executable: reading the git state says so, as a usage error
        pass

    from ..checks import clean_tree  # noqa: F401
    from ..identity import environment  # noqa: F401


class SessionContext:
    """What the session reads once, and the store it opens once."""

    def __init__(self, config: pytest.Config, settings: Settings) -> None:
        from ..execution.shared import worker_paths

        #: when this session started (pytest's configure): its record's start
        self.started = time.time()
        self.config = config
        self.settings = settings
        self._project: ProjectConfig | None = None
        self._repo: RepoState | None = None
        self._store: TrialStore | None = None
        self._environment: dict[str, Any] | None = None
        self._experiments: list[Collected] | None = None
        self._seed: int | None = settings.seed
        self._session_key: str | None = None
        self._store_lock = threading.Lock()
        #: the kernel, HTML exporter, git state and environment made ready while pytest collects
        self.ahead = WorkAhead(
            kernel=settings.kernel or "auto",
            preload=settings.preload,
            steps=self.step_modules,
            shared=worker_paths(config),
        )
        #: pytest-xdist's controller: the warm parent and HTML helper of its local workers (see configure_node)
        self.shared: SharedHelpers | None = None

    def _workerinput(self, name: str) -> Any:
        """What the xdist controller sent this worker under ``name`` (``None``: not a worker, or not sent)."""
        return (getattr(self.config, "workerinput", None) or {}).get(name)

    @property
    def seed(self) -> int:
        """The session's seed: given, sent by the xdist controller, or drawn once here."""
        if self._seed is None:
            sent = self._workerinput("mitosis_seed")
            if sent is not None:
                self._seed = int(sent)
            else:
                import secrets

                from ..config.settings import MAX_SEED

                self._seed = secrets.randbelow(MAX_SEED + 1)
        return self._seed

    @property
    def session_key(self) -> str:
        """The session's key (see :mod:`.session_record`): sent by the xdist controller, or drawn once here."""
        if self._session_key is None:
            sent = self._workerinput("mitosis_session")
            if sent is not None:
                self._session_key = str(sent)
            else:
                from ..store import new_key

                self._session_key = new_key()
        return self._session_key

    @session_key.setter
    def session_key(self, key: str) -> None:
        self._session_key = key

    def project(self) -> ProjectConfig:
        """``[tool.mitosis]``, read once (lazily: ``--help`` never reads it)."""
        if self._project is None:
            from ..config.project import load_project

            self._project = load_project(self.settings.pyproject, self.settings.trials_folder)
        return self._project

    def step_modules(self) -> tuple[Path, list[str]]:
        """The investigation's root and the modules of its steps and lookups (what the fork server scans)."""
        project = self.project()
        modules = [ref.module for s in project.steps.values() for ref in (s.function, s.lookup) if ref is not None]
        return project.root, modules

    def experiments(self) -> list[Collected]:
        """The selected experiments with their trials (or why they cannot run), expanded once per process."""
        if self._experiments is None:
            from ..config.steps import ensure_importable

            project = self.project()
            ensure_importable(project.root)  # here too: each trial's kernel gets this process's sys.path
            # in a fork of the warm parent, which has the steps' libraries: this process need not import them
            found = self.ahead.collect(project, self.settings, quiet=self.config.getoption("capture", "fd") != "no")
            if found is None:
                from ..config.experiments import collect_experiments

                found = collect_experiments(project, self.settings)
            self._experiments = found
        return self._experiments

    def collects_trials(self) -> bool:
        """Whether this session's arguments include the investigation's pyproject.toml."""
        return str(self.settings.pyproject) in {str(Path(a.split("::")[0]).resolve()) for a in self.config.args}

    def repo(self) -> RepoState:
        """The git state of the investigation, read once per process."""
        if self._repo is None:
            try:
                facts = self.ahead.provenance()
                self._repo = facts[0] if facts is not None else self.read_repo()
            except ConfigError as err:  # no git to read it with: the session cannot say what ran
                raise pytest.UsageError(str(err)) from None
        return self._repo

    def read_repo(self) -> RepoState:
        """The git state now (the session's own files, the trials folder and store, never count as changes)."""
        from ..checks.clean_tree import repo_state

        return repo_state(self.project().root, own=self.own_files(), ignore=self.settings.dirty_ignore)

    def own_files(self) -> tuple[Path, ...]:
        """What pytest-mitosis writes in the tree: the trials folder, declared outputs, a SQLite store named by
        URL with its journal files. Never a change of the investigation's code."""
        own: tuple[Path, ...] = (self.project().trials_folder, *self.settings.outputs)
        url = self.store_url()
        if url is None or not url.startswith("sqlite:///"):
            return own
        path = Path(url.removeprefix("sqlite:///"))
        return (*own, path, *(path.with_name(path.name + suffix) for suffix in ("-wal", "-shm", "-journal")))

    def read_facts(self) -> tuple[RepoState, dict[str, Any]]:
        """The git state and the environment, read together (in the warm-up thread while pytest collects)."""
        from ..identity.environment import gather

        return self.read_repo(), gather(self.settings.env_vars)

    def environment(self) -> dict[str, Any]:
        """The environment record, gathered once per process; plugins add keys through the hook."""
        if self._environment is None:
            from ..checks.clean_tree import summary
            from ..identity.environment import gather, merge

            facts = self.ahead.provenance()
            found = dict(facts[1]) if facts is not None else gather(self.settings.env_vars)
            found["git"] = summary(self.repo())
            try:
                self._environment = merge(found, self.config.hook.pytest_mitosis_environment(config=self.config))
            except ValueError as err:
                raise pytest.UsageError(f"mitosis: {err}") from None
        return self._environment

    def store_url(self) -> str | None:
        """The store URL: ``--mitosis-store`` or ini ``mitosis_store``, else ``store`` of ``[tool.mitosis]``;
        ``None`` for ``<trials folder>/mitosis.sqlite``."""
        return self.settings.store or self.project().store

    def read_from(self) -> str | StoreURL | None:
        """What readers in this session open: the store this session writes, once it is open (so a
        store from a plugin's ``pytest_mitosis_make_store`` is read back too), else the configured URL."""
        from ..store import readable

        found = readable(self._store) if self._store is not None else None
        return found or self.store_url()

    def store(self) -> TrialStore:
        """The trial store, opened on first use (never by ``--collect-only`` or ``--help``)."""
        with self._store_lock:  # execnet's receiver threads may ask while the main thread opens it: one store
            if self._store is None:
                folder = self.project().trials_folder
                store = self.config.hook.pytest_mitosis_make_store(config=self.config, folder=folder)
                if store is None:
                    raise pytest.UsageError(
                        f"mitosis: no plugin provided a trial store for {folder}: every pytest_mitosis_make_store "
                        "implementation returned None. Return a TrialStore from yours, or let the built-in one answer."
                    )
                self._store = store
            return self._store

    def opened_store(self) -> TrialStore | None:
        """The store if this process opened it (nothing is opened to ask)."""
        return self._store

    def close_store(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
