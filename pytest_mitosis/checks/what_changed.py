"""Why a result moved: what changed between a trial and the baseline it is compared with.

The drift gate (:mod:`.verdict`) says it when it fails a trial, and ``diff`` (views) lists the
files changed between two recorded commits with the same :func:`changed_files`. The four
causes a researcher asks about are named in the order ``diff`` uses: code (the commit, and the
files that differ), parameters (only the untracked ones can differ within an identity),
environment (interpreter, platform, packages) and seed. ``git diff --name-status`` is the only
command run: in the investigation's repository, with commits checked as hex object names and
passed after ``--end-of-options``, and with the repository settings that run commands
(fsmonitor, external diff, textconv) switched off. No pytest import.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..identity.environment import package_changes
from ..store import Previous, printable, valid_commit

#: the environment record's parts compared one by one (packages apart; ``git`` is the code's part)
PARTS = ("python", "platform", "cpu", "gpus", "env", "hostname")
#: how many changed files or packages a gate message names before "and N more"
SHOWN = 6


def changed_files(old: str, new: str, cwd: Path | None = None) -> tuple[list[str], str | None]:
    """``(lines of git diff --name-status, None)``, or ``([], why git could not tell)``."""
    for commit in (old, new):
        if not valid_commit(commit):
            return [], f"the recorded commit {printable(repr(commit))} is not a git object name: not passed to git"
    command = [
        "git", "-c", "core.fsmonitor=false", "--no-pager", "diff", "--no-ext-diff", "--no-textconv",
        "--name-status", "--end-of-options", old, new,
    ]  # fmt: skip
    try:
        done = subprocess.run(
            command, cwd=cwd, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL, check=False
        )
    except (OSError, subprocess.SubprocessError) as err:
        return [], f"git could not list the files: {err}"
    if done.returncode != 0:
        return [], f"git could not list the files: {done.stderr.strip()}"
    return done.stdout.splitlines(), None


def _listed(items: Sequence[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


def _code(old: str | None, new: str | None, root: Path) -> str:
    if old == new:
        return f"code: identical (commit {(new or '-')[:8]})"
    head = f"code: commit {(old or '-')[:8]} -> {(new or '-')[:8]}"
    if not old or not new:
        return head
    files, why = changed_files(old, new, root)
    if why is not None:
        return f"{head} ({why})"
    named = [" ".join(line.split("\t")[1:]) + f" ({_STATUS.get(line[:1], line[:1])})" for line in files]
    return f"{head}: {_listed(named)}" if named else f"{head} (no file differs)"


_STATUS = {"M": "modified", "A": "added", "D": "deleted", "R": "renamed", "C": "copied", "T": "type changed"}


def _parameters(old: Sequence[Mapping[str, Any]], new: Sequence[Mapping[str, Any]]) -> str:
    """Parameters of one identity differ only where untracked (``+name``) or seeded: name those."""
    before = {(p.get("step"), p.get("name")): p for p in old if p.get("kind") != "seed"}
    after = {(p.get("step"), p.get("name")): p for p in new if p.get("kind") != "seed"}
    changes = []
    for key in dict.fromkeys([*before, *after]):
        a, b = before.get(key), after.get(key)
        shown = lambda p: "-" if p is None else str(p.get("repr", p.get("text")))  # noqa: E731
        if a is None or b is None or (a.get("text"), a.get("repr")) != (b.get("text"), b.get("repr")):
            changes.append(f"{key[0]}.{key[1]} {shown(a)} -> {shown(b)}")
    return f"parameters: {_listed(changes)}" if changes else "parameters: identical"


def _environment(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    if old is None:
        return "environment: not recorded for the baseline"
    changes = [f"{part} changed" for part in PARTS if old.get(part) != new.get(part)]
    packages = package_changes(old.get("packages", {}), new.get("packages", {}))
    changes += packages["changed"] + [f"+{p}" for p in packages["added"]] + [f"-{p}" for p in packages["removed"]]
    extra = sorted((set(old) | set(new)) - {*PARTS, "packages", "git"})
    changes += [f"{k} changed" for k in extra if old.get(k) != new.get(k)]
    return f"environment: {_listed(changes)}" if changes else "environment: identical"


def since(
    previous: Previous,
    *,
    commit: str | None,
    environment: Mapping[str, Any],
    params: Sequence[Mapping[str, Any]],
    seed: int | None,
    root: Path,
) -> list[str]:
    """The lines that say what changed since ``previous`` (a baseline) for a trial of the same identity."""
    # as the store holds them (JSON: tuples are lists), so that only real differences show
    environment, params = json.loads(json.dumps(environment, default=str)), json.loads(json.dumps(params, default=str))
    lines = [
        _code(previous.commit, commit, root),
        _parameters(previous.params or [], params),
        _environment(previous.environment, environment),
        f"seed: identical ({seed})" if previous.seed == seed else f"seed: {previous.seed} -> {seed}",
    ]
    if all(line.split(": ", 1)[1].startswith("identical") for line in lines):
        lines.append(
            "nothing pytest-mitosis records changed: the step is not deterministic (threads, time, unseeded "
            "randomness), or it reads an input the record does not name"
        )
    return lines
