"""Which filesystem a store would live on, so that SQLite is never put where it corrupts silently.

SQLite's WAL journal (what lets several sessions and xdist workers write one store) keeps its
index in memory shared between the processes of *one* machine; SQLite's documentation says WAL
does not work over a network filesystem. Lab users put trials folders on NFS, SMB or sshfs and
rsync them between servers, so the SQLite store refuses such a folder, with the way out.

Linux only (``/proc/self/mountinfo``); elsewhere nothing is detected and nothing refused.
Standard library only; no pytest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: filesystem types (mountinfo's field after " - ") whose locking and shared memory are not local
NETWORK_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "ncpfs", "afs", "9p", "coda",
        "lustre", "gpfs", "beegfs", "glusterfs", "ceph", "ocfs2", "gfs2", "orangefs", "pvfs2",
        "fuse.sshfs", "fuse.glusterfs", "fuse.ceph", "fuse.beegfs", "fuse.s3fs", "fuse.rclone",
        "fuse.gcsfuse", "fuse.juicefs", "fuse.cephfs",
    }
)  # fmt: skip

MOUNTINFO = "/proc/self/mountinfo"


@dataclass(frozen=True)
class Mount:
    point: str
    fstype: str
    source: str

    @property
    def network(self) -> bool:
        return self.fstype in NETWORK_TYPES


def _unescape(field: str) -> str:
    r"""mountinfo writes space, tab, newline and backslash in paths as ``\040``, ``\011``, ``\012``, ``\134``."""
    out, i = [], 0
    while i < len(field):
        if field[i] == "\\" and i + 3 < len(field) and field[i + 1 : i + 4].isdigit():
            out.append(chr(int(field[i + 1 : i + 4], 8)))
            i += 4
        else:
            out.append(field[i])
            i += 1
    return "".join(out)


def parse(text: str) -> list[Mount]:
    """The mounts of a ``/proc/self/mountinfo`` text (lines that do not parse are skipped)."""
    mounts = []
    for line in text.splitlines():
        head, sep, tail = line.partition(" - ")
        fields, rest = head.split(), tail.split()
        if not sep or len(fields) < 5 or len(rest) < 2:
            continue
        mounts.append(Mount(_unescape(fields[4]), rest[0], _unescape(rest[1])))
    return mounts


def mount_of(path: Path, mountinfo: str | None = None) -> Mount | None:
    """The mount holding ``path`` (the nearest existing ancestor when it does not exist yet)."""
    if mountinfo is None:
        try:
            mountinfo = Path(MOUNTINFO).read_text(encoding="utf-8", errors="replace")
        except OSError:
            return None
    here = path
    while not here.exists() and here != here.parent:
        here = here.parent
    target = os.path.realpath(here)
    best: Mount | None = None
    for mount in parse(mountinfo):  # the last, longest match wins: later mounts hide earlier ones
        point = mount.point.rstrip("/") or "/"
        if (target == point or target.startswith(point.rstrip("/") + "/")) and (
            best is None or len(point) >= len(best.point.rstrip("/") or "/")
        ):
            best = mount
    return best
