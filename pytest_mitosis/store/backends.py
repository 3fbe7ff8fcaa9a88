"""Which store a URL means: ``make_store`` opens the writer for ``pytest_mitosis_make_store``.

``None`` (no ``--mitosis-store``, no ``mitosis_store``, no ``store`` in ``[tool.mitosis]``) is
``<trials folder>/mitosis.sqlite``. No pytest import.
"""

from __future__ import annotations

from pathlib import Path

from .protocol import TrialStore
from .sqlite import SQLiteStore
from .url import StoreURL
from .url import parse as parse_url


def readable(store: object) -> StoreURL | None:
    """The URL a reader opens to read ``store`` back, when the store says (ours do: ``store.url``).

    A store from a plugin's ``pytest_mitosis_make_store`` that subclasses ours keeps its URL;
    one that does not is read through the configured URL.
    """
    url = getattr(store, "url", None)
    return url if isinstance(url, StoreURL) else None


def make_store(
    store: str | StoreURL | None, folder: Path, allow_network: bool = False, patience: float | None = None
) -> TrialStore:
    """The writer for ``store`` (a URL, already absolute for SQLite) beside the trials folder ``folder``;
    ``patience``: seconds a PostgreSQL store that went away is waited for (its default when ``None``)."""
    if store is None:
        return SQLiteStore(folder, allow_network=allow_network)
    url = store if isinstance(store, StoreURL) else parse_url(store)
    if url.kind == "sqlite":
        return SQLiteStore(folder, allow_network=allow_network, path=url.path)
    from .postgres import PostgresStore

    return PostgresStore(url) if patience is None else PostgresStore(url, patience=patience)
