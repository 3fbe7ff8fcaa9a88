"""The private folders of a session's kernels and helpers: where they go, and sweeping the stale.

Each kernel talks over IPC sockets in a folder only this user can enter
(``mitosis-kernel-<pid>-<random>``, the pid being pytest's; ``<pid>.<pid namespace>.<start time>`` on
Linux, the start time telling pytest's process from a later one given the same pid),
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

from ..core.processes import alive, pid_namespace, start_time

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
    """``<pid>`` or ``<pid>.<pid namespace>.<start time>``: whose a private folder is, where that pid means
    something, and which process had it (:func:`~pytest_mitosis.core.processes.start_time`).

    A session of a version that wrote ``<pid>.<pid namespace>`` reads the start time as part of the
    namespace, finds it unlike its own and leaves the folder alone; this one reads both forms."""
    namespace = pid_namespace()
    started = start_time(os.getpid())
    if not namespace:
        return str(os.getpid())
    return f"{os.getpid()}.{namespace}" if started is None else f"{os.getpid()}.{namespace}.{started}"


def private_folder() -> str:
    """A new private folder of this process (mode 0700), swept if the process dies without removing it."""
    folder = tempfile.mkdtemp(prefix=f"{PRIVATE_PREFIX}{_owner()}-", dir=private_base())
    os.chmod(folder, 0o700)
    return folder


def sweep_stale_private_folders(tmp: str | None = None) -> int:
    """Remove kernel folders left by a pytest process that is gone (SIGKILL, power loss).

    A folder is ``mitosis-kernel-<pid>[.<pid namespace>[.<start time>]]-<random>``: it is removed only
    when no process with that pid exists in this pid namespace (with that start time, when the name
    has one: a later process given the pid is not the owner), so folders of concurrent sessions
    (another container's included) are never touched. Returns how many were removed.
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
        pid_text, _, where = owner.partition(".")
        namespace, _, started = where.partition(".")
        if namespace and namespace != here:
            continue  # another pid namespace's (a container's): its pid means nothing here
        if not pid_text.isdigit() or int(pid_text) == os.getpid():
            continue
        if alive(int(pid_text), int(started) if started.isdigit() else None):
            continue
        try:
            if entry.is_dir() and not entry.is_symlink() and entry.stat().st_uid == os.getuid():
                shutil.rmtree(entry, ignore_errors=True)
                removed += 1
        except OSError:
            continue
    return removed
