"""The clean-repository guard: a trial's commit must say exactly what code ran.

Reads the git work tree that holds the investigation (GitPython, imported here only) and
lists what would make a recorded commit a lie: modified or staged tracked files, untracked
files git does not ignore, dirty submodules. What the plugin writes itself (the trials
folder, wherever it is) and files that cannot change a result (bytecode, pytest's cache,
egg-info: the ``mitosis_dirty_ignore`` ini key) never count. No pytest import here.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..core.errors import ConfigError

SHOWN = 10


@dataclass(frozen=True)
class RepoState:
    """What git says about the investigation's work tree."""

    worktree: Path | None
    commit: str | None = None
    branch: str | None = None
    dirty: tuple[str, ...] = field(default_factory=tuple)
    error: str | None = None
    remote: str | None = None
    submodules: tuple[tuple[str, str], ...] = ()

    @property
    def clean(self) -> bool:
        return self.worktree is not None and self.commit is not None and not self.dirty


def _ignored(path: str, patterns: tuple[str, ...]) -> bool:
    parts = PurePosixPath(path.rstrip("/")).parts
    for pattern in patterns:
        if pattern.endswith("/"):
            if any(fnmatch.fnmatchcase(part, pattern[:-1]) for part in parts[:-1]) or (
                path.endswith("/") and fnmatch.fnmatchcase(parts[-1], pattern[:-1])
            ):
                return True
        elif fnmatch.fnmatchcase(parts[-1], pattern) or fnmatch.fnmatchcase(path, pattern):
            return True
    return False


def _within(path: Path, folders: tuple[Path, ...]) -> bool:
    return any(path == f or f in path.parents for f in folders)


_CODES = {
    "M": "modified",
    "A": "added",
    "D": "deleted",
    "R": "renamed",
    "C": "copied",
    "U": "unmerged",
    "T": "type changed",
}


def _describe(code: str) -> str:
    if code == "??":
        return "untracked"
    for letter in code:
        if letter in _CODES:
            return _CODES[letter]
    return "changed"


def repo_state(start: Path, own: tuple[Path, ...] = (), ignore: tuple[str, ...] = ()) -> RepoState:
    """Inspect the work tree holding ``start``; ``own`` are folders the plugin writes."""
    try:
        import git
    except ImportError as err:  # GitPython refuses to load without a git executable
        raise ConfigError(
            f"git is not on PATH ({str(err).splitlines()[0]}): every trial records the commit it ran, which "
            "pytest-mitosis reads with git. Install git (apt-get install git) or put it on PATH, and run again."
        ) from None

    try:
        repo = git.Repo(start, search_parent_directories=True)
    except (git.InvalidGitRepositoryError, git.NoSuchPathError):
        return RepoState(None)
    worktree = Path(repo.working_tree_dir or start).resolve()
    try:
        commit: str | None = repo.head.commit.hexsha
    except ValueError:  # a repository without any commit yet
        commit = None
    try:
        branch: str | None = repo.active_branch.name
    except (TypeError, ValueError):
        branch = None
    remote = None
    try:
        remotes = {r.name: r for r in repo.remotes}
        chosen = remotes.get("origin") or next(iter(remotes.values()), None)
        remote = next(iter(chosen.urls), None) if chosen is not None else None
    except (git.GitCommandError, ValueError):
        remote = None
    submodules: list[tuple[str, str]] = []
    try:
        for line in repo.git.submodule("status", "--recursive").splitlines():
            fields = line[1:].split()
            if len(fields) >= 2:
                submodules.append((fields[1], fields[0]))
    except git.GitCommandError:
        pass
    try:
        raw = repo.git.status("--porcelain=v1", "-z", "--untracked-files=all", "--ignore-submodules=none")
    except git.GitCommandError as err:
        return RepoState(worktree, commit, branch, error=str(err).strip())
    entries = raw.split("\0")
    dirty: list[str] = []
    index = 0
    while index < len(entries):
        entry = entries[index]
        index += 1
        if len(entry) < 4:
            continue
        code, path = entry[:2], entry[3:]
        if code[0] in "RC":
            index += 1  # the rename's source path follows
        if _within((worktree / path).resolve(), own) or _ignored(path, ignore):
            continue
        dirty.append(f"{_describe(code)}: {path}")
    return RepoState(worktree, commit, branch, tuple(dirty), None, remote, tuple(submodules))


def refusal(state: RepoState, root: Path) -> str | None:
    """Why no clean trial can run from this tree (``None`` when it can)."""
    debug = "or pass --mitosis-debug to run anyway as a debug trial (kept apart, never a reproducible result)."
    if state.worktree is None:
        return (
            f"mitosis: {root} is not in a git repository, so a trial could not record the commit that ran. "
            f"Run `git init` there and commit the investigation, {debug}"
        )
    if state.error is not None:
        return (
            f"mitosis: git could not report the state of {state.worktree}: {state.error}. Fix the repository, {debug}"
        )
    if state.commit is None:
        return f"mitosis: the git repository {state.worktree} has no commit yet. Commit the investigation, {debug}"
    if not state.dirty:
        return None
    shown = "\n".join(f"  {line}" for line in state.dirty[:SHOWN])
    more = f"\n  ... and {len(state.dirty) - SHOWN} more" if len(state.dirty) > SHOWN else ""
    return (
        f"mitosis: the git repository {state.worktree} has uncommitted changes, so the commit a trial records "
        f"would not say what ran:\n{shown}{more}\n"
        "Commit them, stash them (git stash --include-untracked), add files that cannot change a result to "
        f".gitignore (or to the mitosis_dirty_ignore ini key), {debug}"
    )


def summary(state: RepoState) -> dict[str, Any]:
    """What a trial record keeps about the code that ran."""
    return {
        "commit": state.commit,
        "branch": state.branch,
        "remote": state.remote,
        "submodules": {path: sha for path, sha in state.submodules},
        "dirty": list(state.dirty),
        "worktree": str(state.worktree) if state.worktree else None,
    }
