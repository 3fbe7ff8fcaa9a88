"""Records the store could not take when they happened, kept in the trials folder until it can.

A trial whose kernel ran while the store was away (a PostgreSQL server stopped for longer than
``--mitosis-store-patience``) has a whole folder, but its record still says ``running``. Its
outcome (status, main, metrics, message, verdict, when it ended) is written to
``<trials>/.pending/<key>.json``, and so is the end of a session that could not be recorded.
Whoever opens the store next with this trials folder records them: the same session at its
end, or the next session at its start (which says so). A record is written the same way
twice without harm (``finish`` and ``end_session`` are updates of one row), so a file removed
only after its record landed is never lost and never doubled. No pytest import.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..store import StoreError

#: the folder of the trials folder that holds the records waiting for the store
PENDING = ".pending"


def _write(path: Path, data: dict[str, Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, default=repr, indent=1), encoding="utf-8")
    os.replace(tmp, path)  # whole or absent, whenever the process dies
    return path


def keep_outcome(trials: Path, key: str, name: str, fields: dict[str, Any], ended: float | None = None) -> Path:
    """Keep a trial's outcome (``finish``'s keyword arguments: the batch ``job`` that ran it too) for when the
    store is back; the file. ``ended``: when the trial ended, if not now (a Slurm task ends before its
    session records it)."""
    data = {
        "kind": "trial",
        "key": key,
        "name": name,
        "ended": time.time() if ended is None else ended,
        "finish": fields,
    }
    return _write(trials / PENDING / f"trial-{key}.json", data)


def keep_session_end(trials: Path, key: str, exitstatus: int, changed: list[str] | None) -> Path:
    """Keep a session's end (its exit status, the files changed meanwhile) for when the store is back."""
    data = {"kind": "session", "key": key, "ended": time.time(), "exitstatus": exitstatus, "changed": changed}
    return _write(trials / PENDING / f"session-{key}.json", data)


def drop_session_end(trials: Path, key: str) -> None:
    """Forget a kept session end: the session recorded its end since (with another exit status)."""
    (trials / PENDING / f"session-{key}.json").unlink(missing_ok=True)


def _accepts(method: Callable[..., Any], name: str) -> bool:
    """Whether a store's method takes the keyword ``name`` (``ended``, ``job``: ours do; a plugin's store may
    predate them)."""
    import inspect

    try:
        return name in inspect.signature(method).parameters
    except (TypeError, ValueError):
        return False


def record_kept(store: Any, trials: Path) -> tuple[list[str], list[str]]:
    """Record what ``trials/.pending`` keeps; ``(one line per record written, problems)`` (a problem:
    a file left as it is, or why the rest waits).

    Stops at the first ``StoreError`` (the store is still away: the files stay for the next
    try). A file that cannot be read is left where it is and named.
    """
    folder = trials / PENDING
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix == ".json")
    except OSError:
        return [], []
    done: list[str] = []
    problems: list[str] = []
    for path in files:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            kind, key, ended = data["kind"], str(data["key"]), float(data["ended"])
        except (OSError, ValueError, KeyError, TypeError) as err:
            problems.append(f"{path}: not a record pytest-mitosis keeps ({err}); left as it is")
            continue
        try:
            if kind == "trial":
                fields = dict(data["finish"])
                if fields.get("job") is None or not _accepts(store.finish, "job"):  # kept before jobs were: none
                    fields.pop("job", None)
                extra = {"ended": ended} if _accepts(store.finish, "ended") else {}
                store.finish(key, **fields, **extra)
                what = f"{data.get('name', key)} (key {key}) {fields.get('status')}, main={fields.get('main')!r}"
            elif kind == "session":
                end = getattr(store, "end_session", None)
                if end is None:
                    continue
                extra = {"ended": ended} if _accepts(end, "ended") else {}
                end(key, int(data["exitstatus"]), data.get("changed") or None, **extra)
                what = f"the end of session {key} (exit status {int(data['exitstatus'])})"
            else:
                continue
        except StoreError as err:
            problems.append(f"{len(files) - len(done) - len(problems)} kept in {folder} wait for the store: {err}")
            return done, problems
        except (KeyError, TypeError, ValueError) as err:
            problems.append(f"{path}: not a record pytest-mitosis keeps ({err}); left as it is")
            continue
        path.unlink(missing_ok=True)
        done.append(f"{what}, ended {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(ended))}")
    try:
        folder.rmdir()  # only when empty
    except OSError:
        pass
    return done, problems
