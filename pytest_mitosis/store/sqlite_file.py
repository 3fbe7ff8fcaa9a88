"""What the SQLite store's file and folder must be before SQLite may write to them.

Every check here only reads, so a file we refuse stays byte-identical (its header included:
the switch to WAL waits until the file is known to be ours): a trials folder that is a file
or cannot be written, a store that is a directory, an empty store beside trial folders, a
SQLite file without our tables, a store from a newer version, a network filesystem.
No pytest import.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from .filesystems import mount_of
from .protocol import StoreError
from .tables import SCHEMA_VERSION

FILENAME = "mitosis.sqlite"
BUSY_TIMEOUT = 120.0


_FIX = "Move it aside (or pass --mitosis-trials-folder for a new folder) and run again."
_OURS = ("meta", "trials", "environments", "locks")


def foreign_message(path: Path, found: str) -> str:
    return (
        f"mitosis: the trial store {path} cannot be used: {found}. It is not a pytest-mitosis store or it is "
        f"damaged; nothing was written to it. {_FIX}"
    )


def _trial_folders(folder: Path) -> list[Path]:
    """The trial folders of this trials folder's store: its own, and its debug trials' in ``debug/`` unless
    ``debug/`` holds a store of its own (a session run with ``--mitosis-trials-folder trials/debug``:
    those trials are that store's, which is not lost)."""
    found: list[Path] = []
    for parent in (folder, folder / "debug"):
        if parent != folder and (parent / FILENAME).is_file():
            continue
        try:
            found += [p for p in parent.iterdir() if p.name.startswith("trial_") and p.is_dir()]
        except OSError:
            pass
    return sorted(found)


def _refuse_beside_trial_folders(path: Path, folder: Path, state: str) -> None:
    """A new store where trial folders already are would number trials from 1 again beside them."""
    trials = _trial_folders(folder)
    if not trials:
        return
    what = "is empty (0 bytes)" if state == "empty" else "does not exist"
    aside = "the trial folders and the empty file" if state == "empty" else "the trial folders"
    raise StoreError(
        f"mitosis: the trial store {path} {what}, but {folder} holds {len(trials)} trial "
        f"folder{'s' if len(trials) > 1 else ''} ({trials[0].name}{', ...' if len(trials) > 1 else ''}): the "
        "store that recorded them was truncated or lost, and a new one would number trials from 1 again "
        f"beside them. Restore the store from a copy or backup, or move {aside} aside; nothing was written."
    )


def _readonly(err: BaseException) -> bool:
    text = str(err).lower()
    return "readonly" in text or "read-only" in text or "unable to open" in text


def refuse_network_filesystem(path: Path, mountinfo: str | None = None) -> None:
    """Raise ``StoreError`` when ``path`` would be on a network filesystem (see filesystems.py)."""
    mount = mount_of(path.parent, mountinfo)
    if mount is None or not mount.network:
        return
    raise StoreError(
        f"mitosis: the trial store {path} would be on a network filesystem ({mount.fstype} {mount.source}, "
        f"mounted at {mount.point}). SQLite's WAL journal, which lets several sessions and xdist workers write one "
        "store safely, needs memory shared between processes on one machine, and on a network filesystem it can "
        "corrupt the store without a word. For a team, use a shared PostgreSQL store (--mitosis-store "
        "postgresql://USER@HOST/DB, or store in [tool.mitosis]); alone, keep the store on a local disk "
        "(--mitosis-store sqlite:///LOCAL/PATH/mitosis.sqlite: the artifacts may stay on the shared folder), or the "
        "whole trials folder (--mitosis-trials-folder, or trials-folder in [tool.mitosis]) and copy it to the "
        "shared place after the sessions (`python -m pytest_mitosis backup DEST` for the store, rsync for the trial "
        "folders). If you know this filesystem's locking works across your processes, set the ini key "
        "mitosis_allow_network_store = true."
    )


def check_store_path(folder: Path, path: Path | None = None) -> bool:
    """Refuse an unusable trials folder or store before anything is written; ``True`` for a new store.

    Everything here only reads: a file we refuse stays byte-identical (its header included,
    so the switch to WAL waits until the file is known to be ours). Refused: a trials
    folder that is a file or cannot be written, a store that is a directory, an empty or missing
    store beside trial folders (the store that numbered them is lost), a SQLite file without our
    tables or with some of them gone, and a store from a newer pytest-mitosis.
    """
    path = path or folder / FILENAME
    _check_trials_folder(folder)
    if path.is_dir():
        raise StoreError(
            f"mitosis: the trial store {path} is a directory, not a file. Move that directory aside (pytest-mitosis "
            "creates the store there), or choose another trials folder (--mitosis-trials-folder DIR)."
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise StoreError(
            f"mitosis: the trials folder {folder} is not writable for this user: trials and the store are written "
            "there. Make it writable (chmod u+w, or chattr -i if it is immutable), or choose another trials folder "
            "(--mitosis-trials-folder DIR)."
        )
    if not path.exists():
        _refuse_beside_trial_folders(path, folder, "missing")
        return True
    if not os.access(path, os.R_OK | os.W_OK):
        raise StoreError(
            f"mitosis: the trial store {path} is not writable for this user. Make it writable (chmod u+w, or chattr "
            "-i if it is immutable), or choose another trials folder (--mitosis-trials-folder DIR)."
        )
    if path.stat().st_size == 0:
        _refuse_beside_trial_folders(path, folder, "empty")
        return True
    tables, version = _tables_and_version(path)
    _check_tables(path, tables, version)
    return False


def _check_trials_folder(folder: Path) -> None:
    """The trials folder exists (created with its parents when missing) and is a folder."""
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                what = "is a file" if parent == folder else f"cannot be created: {parent} is a file"
                raise StoreError(
                    f"mitosis: the trials folder {folder} {what}, not a folder. Move that file aside, or choose "
                    "another trials folder (--mitosis-trials-folder DIR, or trials-folder in [tool.mitosis])."
                )
            break
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise StoreError(
            f"mitosis: the trials folder {folder} cannot be created: {err.strerror or err}. Create it yourself with "
            "write permission for this user, or choose another trials folder (--mitosis-trials-folder DIR)."
        ) from None


def _tables_and_version(path: Path) -> tuple[set[str], int | None]:
    """The tables of the SQLite file at ``path`` and its schema version (``None`` when it has none), read
    without creating or changing anything.

    A read-only connection honours locks and journals, and creates nothing beside a file in
    rollback-journal mode (every file as it is being created, and foreign ones). Beside a
    WAL-mode file it would create -wal and -shm: when they are absent, no session has the
    file open and everything is in the main file (our stores get their tables before the
    switch to WAL), so read it as immutable, which creates nothing.
    """
    try:
        with path.open("rb") as stream:
            head = stream.read(20)
    except OSError as err:
        raise StoreError(foreign_message(path, err.strerror or str(err))) from None
    wal = len(head) == 20 and head[18] == 2 and head[19] == 2
    shared = any(path.with_name(path.name + suffix).exists() for suffix in ("-wal", "-shm"))
    uri = f"{path.resolve().as_uri()}?mode=ro" + ("&immutable=1" if wal and not shared else "")
    try:
        db = sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT)
    except sqlite3.Error as err:
        raise StoreError(foreign_message(path, str(err))) from None
    try:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        row = db.execute("SELECT value FROM meta WHERE name='schema_version'").fetchone() if "meta" in tables else None
    except sqlite3.Error as err:
        raise StoreError(foreign_message(path, str(err))) from None
    finally:
        db.close()
    return tables, int(row[0]) if row is not None and str(row[0]).isdigit() else None


def _check_tables(path: Path, tables: set[str], version: int | None) -> None:
    """Refuse a file without our tables, with some of them gone, or from a newer pytest-mitosis."""
    if "meta" not in tables:
        found = (
            f"it has the tables {', '.join(sorted(tables))} but none of pytest-mitosis's"
            if tables
            else "it is a SQLite database without any table (not a store, or one whose tables were dropped)"
        )
        raise StoreError(foreign_message(path, found))
    if version is not None and version > SCHEMA_VERSION:
        raise StoreError(
            f"mitosis: the trial store {path} has schema version {version}, written by a newer "
            f"pytest-mitosis; this one knows version {SCHEMA_VERSION}. Upgrade pytest-mitosis "
            "(pip install -U pytest-mitosis); the store was left as it is."
        )
    required = _OURS + (("sessions",) if version is not None and version >= 2 else ())  # version 1: before sessions
    missing = [t for t in required if t not in tables]
    if missing or version is None:
        gone = f"the table{'s' if len(missing) > 1 else ''} {', '.join(missing)}" if missing else "its schema version"
        raise StoreError(
            f"mitosis: the trial store {path} cannot be used: {gone} {'are' if len(missing) > 1 else 'is'} gone "
            "(damaged, or edited by hand); nothing was written to it. Restore it from a copy or backup, or move it "
            "aside (or pass --mitosis-trials-folder for a new folder) and run again."
        )
