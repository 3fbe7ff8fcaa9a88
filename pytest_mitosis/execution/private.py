"""The private folders of a session's kernels and helpers: where they go, and sweeping the stale.

Each kernel talks over IPC sockets in a folder only this user can enter
(``mitosis-kernel-<pid>-<random>``, the pid being pytest's; ``<pid>.<pid namespace>`` on Linux),
and pytest-xdist's controller puts the sockets of its shared helpers in one too (see
:mod:`.shared`). A folder whose pytest process is gone (SIGKILL, power loss) is removed by the
next session of the same pid namespace: a container's session (its own pid namespace, the same
``/tmp``) never takes another container's live pytest for a dead one. No jupyter_client import here:
the controller of an xdist session and the session's preflight need these without a kernel.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from ..core.processes import alive, pid_namespace

#: prefix of each kernel's private folder (sockets, connection file); the pid says whose it is
PRIVATE_PREFIX = "mitosis-kernel-"
#: a Unix socket's path holds at most 107 bytes (sun_path); the kernel adds "/kernel-NN" to the folder
SOCKET_PATH_MAX = 100


def private_base() -> str:
    """Where kernels' private folders go: ``$TMPDIR``, or ``/tmp`` when ``$TMPDIR`` is so deep that
    the kernel's socket paths would not fit in a Unix socket address."""
    base = tempfile.gettempdir()
    longest = os.path.join(base, f"{PRIVATE_PREFIX}{_owner()}-xxxxxxxx", "kernel-xx")
    if len(os.fsencode(longest)) > SOCKET_PATH_MAX and os.path.isdir("/tmp") and os.access("/tmp", os.W_OK):
        return "/tmp"
    return base


def _owner() -> str:
    """``<pid>`` or ``<pid>.<pid namespace>``: whose a private folder is, and where that pid means something."""
    namespace = pid_namespace()
    return f"{os.getpid()}.{namespace}" if namespace else str(os.getpid())


def private_folder() -> str:
    """A new private folder of this process (mode 0700), swept if the process dies without removing it."""
    folder = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{_owner()}-", dir=private_base())
    os.chmod(folder, 0o700)
    return folder


def sweep_stale_private_folders(tmp: str | None = None) -> int:
    """Remove kernel folders left by a pytest process that is gone (SIGKILL, power loss).

    A folder is ``mitosis-kernel-<pid>[.<pid namespace>]-<random>``: it is removed only when no
    process with that pid exists in this pid namespace, so folders of concurrent sessions (another
    container's included) are never touched. Returns how many were removed.
    """
    base = Path(tmp or private_base())
    here = pid_namespace()
    removed = 0
    try:
        entries = list(base.iterdir())
    except OSError:
        return 0
    for entry in entries:
        if not entry.name.startswith(PRIVATE_PREFIX):
            continue
        owner = entry.name[len(PRIVATE_PREFIX) :].split("-", 1)[0]
        pid_text, _, namespace = owner.partition(".")
        if namespace and namespace != here:
            continue  # another pid namespace's (a container's): its pid means nothing here
        if not pid_text.isdigit() or int(pid_text) == os.getpid() or alive(int(pid_text)):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed
