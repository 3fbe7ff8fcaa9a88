"""Whether a process still exists: how leftovers of a killed session are told from a running one's.

A ``running`` record in the store and a kernel's private folder both carry the pid of the
pytest process that made them; either is cleaned up only once that process is gone.
"""

from __future__ import annotations

import os


def alive(pid: int) -> bool:
    """True while a process with this pid exists (also when it belongs to another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def machine() -> str:
    """What makes a pid meaningful: this boot of this kernel and this pid namespace.

    Two containers may share a host name (and a PostgreSQL store) but not their pids: a pid is
    checked with :func:`alive` only where the record's machine is this one; elsewhere a running
    record's heartbeat age says whether its process lives.
    """
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as stream:
            boot = stream.read().strip()
        return f"{boot}:{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:  # not Linux: the host name stands for the machine, as before heartbeats
        import socket

        return socket.gethostname()
