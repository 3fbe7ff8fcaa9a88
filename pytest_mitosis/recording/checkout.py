"""The recorded commit as a temporary ``git worktree``, and the kernel's ``sys.path`` inside it.

The user's work tree is never touched: the commit is checked out beside it (after
``--end-of-options``, and only when it is a hex object name), with its submodules when asked,
and removed afterwards. No pytest import.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..store import printable, valid_commit
from .rebuild import ReproductionError


@contextlib.contextmanager
def checkout(worktree: Path, commit: str, submodules: bool) -> Iterator[Path]:
    """A temporary ``git worktree`` of ``worktree``'s repository at ``commit``, removed afterwards."""

    def git(*args: str, cwd: Path = worktree) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            ["git", "-c", "core.fsmonitor=false", *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
        )

    with tempfile.TemporaryDirectory(prefix="mitosis-reproduce-") as parent:
        path = Path(parent) / "checkout"
        if not valid_commit(commit):  # never an option: "--output=..." would make git write a file
            raise ReproductionError(printable(f"the recorded commit {commit!r} is not a git object name (hex digits)"))
        done = git("worktree", "add", "--detach", "--end-of-options", str(path), commit)
        if done.returncode != 0:
            raise ReproductionError(
                f"cannot check out commit {commit} of {worktree}: {done.stderr.strip()}. Fetch the commit "
                "(git fetch) or reproduce from a clone that has it."
            )
        try:
            if submodules:
                sub = git("-c", "protocol.file.allow=always", "submodule", "update", "--init", "--recursive", cwd=path)
                if sub.returncode != 0:
                    raise ReproductionError(f"cannot check out the submodules at {commit}: {sub.stderr.strip()}")
            yield path
        finally:
            git("worktree", "remove", "--force", str(path))
            git("worktree", "prune")


def kernel_path(checkout: Path, worktree: Path, project_root: Path) -> list[str]:
    """``sys.path`` for the kernel, every entry inside the work tree moved into the checkout.

    That covers the investigation's root and paths such as an editable install's ``src``
    (a ``.pth`` entry): the kernel imports the recorded commit's code, never today's.
    """
    moved = [str(checkout / project_root.relative_to(worktree))]
    for entry in sys.path:
        if not entry:
            continue
        path = Path(entry).resolve()
        if path == worktree or worktree in path.parents:
            moved.append(str(checkout / path.relative_to(worktree)))
        else:
            moved.append(entry)
    return list(dict.fromkeys(moved))
