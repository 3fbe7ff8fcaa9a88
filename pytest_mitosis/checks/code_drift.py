"""The code a trial ran is its commit's: the files it depends on are compared with the commit, per trial.

The clean-tree guard (:mod:`.clean_tree`) proves the tree clean when the session starts; a
sweep then runs for hours while the researcher goes on editing the same checkout. Each
trial's kernel imports the investigation's modules when it starts, so an edit made meanwhile
reaches every later trial, which would still record the clean commit. Here the files a trial
depends on are compared with the session's commit, by content (git's blob hash), when the
trial starts (``pyproject.toml``, the step and lookup modules, and every file of the
repository that earlier trials' kernels imported) and when it ends (the same, plus what its
own kernel imported). A difference fails the trial and names the files.

Checking, not a snapshot of the commit: a snapshot would run the kernel from a copy of the
tracked files, and an investigation's untracked inputs (data next to a module, read through
``__file__``; generated modules in ignored folders) would be missing from it. Checking
leaves the kernel where it always runs and costs a hash of a few small files per trial.

No pytest import here; git is asked once per session for the commit's tree (and again only
to confirm a difference through git's own filters, or whether a new file is ignored).
"""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from .clean_tree import _ignored, _within


def blob_hash(path: Path) -> str | None:
    """git's object id of ``path``'s content as a blob (``None`` when it cannot be read); a symlink's is its target's text."""
    try:
        data = os.readlink(path).encode() if path.is_symlink() else path.read_bytes()
    except OSError:
        return None
    digest = hashlib.sha1(b"blob %d\0" % len(data))
    digest.update(data)
    return digest.hexdigest()


@dataclass
class CommitFiles:
    """The files of one commit, compared with what is on disk now.

    ``own`` are folders the plugin writes (the trials folder); ``ignore`` the ``mitosis_dirty_ignore``
    patterns: neither is ever a change of the code.
    """

    worktree: Path
    commit: str
    own: tuple[Path, ...] = ()
    ignore: tuple[str, ...] = ()
    _tree: dict[str, str] | None = field(default=None, repr=False)
    _ignored: dict[str, bool] = field(default_factory=dict, repr=False)

    def _git(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", *args], cwd=self.worktree, input=stdin, capture_output=True, text=True, check=False
        )

    def tree(self) -> dict[str, str]:
        """``{path relative to the work tree: blob id}`` of every file of the commit (read once)."""
        if self._tree is None:
            done = self._git("ls-tree", "-r", "-z", "--full-tree", self.commit)
            tree: dict[str, str] = {}
            for entry in done.stdout.split("\0"):
                meta, _, path = entry.partition("\t")
                parts = meta.split()
                if len(parts) == 3 and parts[1] == "blob":
                    tree[path] = parts[2]
            self._tree = tree
        return self._tree

    def changed(self, paths: Iterable[Path]) -> list[str]:
        """The paths (relative to the work tree, with what happened) whose content is not the commit's."""
        tree = self.tree()
        found: list[str] = []
        new: list[str] = []
        for path in sorted({Path(p) for p in paths}):
            try:
                relative = path.resolve().relative_to(self.worktree).as_posix()
            except ValueError:
                continue  # outside the repository: an installed package, the standard library
            if _within(path.resolve(), self.own) or _ignored(relative, self.ignore) or relative.startswith(".git/"):
                continue
            expected = tree.get(relative)
            if expected is None:
                if path.exists():
                    new.append(relative)
                continue
            actual = blob_hash(path)
            if actual is None:
                found.append(f"deleted: {relative}")
            elif actual != expected and self._differs(relative, expected):
                found.append(f"modified: {relative}")
        found += [f"untracked: {relative}" for relative in self._not_ignored(new)]
        return found

    def _differs(self, relative: str, expected: str) -> bool:
        """Confirm a difference through git's own filters (line endings, clean filters): rare, so not cached."""
        done = self._git("hash-object", f"--path={relative}", "--", relative)
        return done.returncode != 0 or done.stdout.strip() != expected

    def _not_ignored(self, relative: list[str]) -> list[str]:
        """Of files the commit does not have, those git does not ignore (created since the session started)."""
        unknown = [r for r in relative if r not in self._ignored]
        if unknown:
            done = self._git("check-ignore", "--stdin", "-z", stdin="\0".join(unknown) + "\0")
            ignored = set(done.stdout.split("\0")) if done.returncode in (0, 1) else set(unknown)
            for r in unknown:
                self._ignored[r] = r in ignored
        return [r for r in relative if not self._ignored[r]]


def module_files(root: Path, modules: Iterable[str]) -> list[Path]:
    """Where modules named in ``[tool.mitosis.steps]`` live under ``root`` (without importing them)."""
    found = []
    for name in modules:
        base = root.joinpath(*name.split("."))
        for candidate in (base.with_suffix(".py"), base / "__init__.py"):
            if candidate.is_file():
                found.append(candidate)
                break
    return found


def changed_message(changed: list[str], commit: str, when: str) -> str:
    """Why a trial fails: the files it depends on are not the commit's (``when``: before or after it ran).

    The files come first, on the first line: pytest's short summary keeps only that line's start.
    """
    named = [f"{path} ({what})" for what, _, path in (line.partition(": ") for line in changed)]
    shown = ", ".join(named[:5]) + (f" and {len(named) - 5} more" if len(named) > 5 else "")
    verb = "is" if len(named) == 1 else "are"
    return (
        f"{shown} {verb} not as in commit {commit[:8]} (the investigation's code changed {when}), which its record "
        "would name. Commit the change (or undo it), then run the rest of the sweep with --mitosis-resume: it runs "
        "only the trials that have not passed at the commit then checked out."
    )


def stop_message(changed: list[str]) -> str:
    """Why the session stops after the trial that found the change: every later trial would be refused."""
    files = ", ".join(line.partition(": ")[2] for line in changed[:5]) + (" ..." if len(changed) > 5 else "")
    return (
        f"mitosis: the investigation's code changed while the sweep ran ({files}): no later trial would run its "
        "commit's code, so the sweep stops here. Commit the change (or undo it), then run pytest --mitosis "
        "--mitosis-resume"
    )
