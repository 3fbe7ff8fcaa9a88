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
