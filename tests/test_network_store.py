"""The SQLite store refuses a trials folder on a network filesystem (issue 16), with the way out.

No network filesystem can be mounted on the test machine, so the detection is fed this
machine's real ``/proc/self/mountinfo`` with one more line in the kernel's own format, whose
mount point is a real folder: the store is a real SQLite file, opened or refused for real.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_mitosis.store import SQLiteStore, StoreError
from pytest_mitosis.store.filesystems import mount_of, parse

REAL = Path("/proc/self/mountinfo").read_text() if Path("/proc/self/mountinfo").exists() else ""

NETWORK = {
    "nfs4": "412 29 0:54 / {point} rw,relatime shared:220 - nfs4 fileserver:/export/lab rw,vers=4.2,rsize=1048576",
    "fuse.sshfs": "413 29 0:55 / {point} rw,nosuid,nodev,relatime - fuse.sshfs alice@hostA:/srv/lab rw,user_id=0",
    "cifs": "414 29 0:56 / {point} rw,relatime - cifs //nas/lab rw,vers=3.1.1,cache=strict",
    "lustre": "415 29 0:57 / {point} rw,flock - lustre 10.0.0.1@tcp:/scratch rw,flock,lazystatfs",
}


def escaped(path: Path) -> str:
    return str(path).replace("\\", "\\134").replace(" ", "\\040")


@pytest.mark.skipif(not REAL, reason="no /proc/self/mountinfo (not Linux)")
def test_a_local_folder_is_not_a_network_filesystem(tmp_path: Path) -> None:
    mount = mount_of(tmp_path / "trials")
    assert mount is not None and not mount.network, mount
    store = SQLiteStore(tmp_path / "trials")
    store.close()
    assert (tmp_path / "trials" / "mitosis.sqlite").is_file()


@pytest.mark.parametrize("fstype", sorted(NETWORK))
def test_a_store_on_a_network_filesystem_is_refused_and_nothing_is_written(tmp_path: Path, fstype: str) -> None:
    lab = tmp_path / "shared lab"  # a space, written \040 by the kernel
    lab.mkdir()
    mountinfo = REAL + NETWORK[fstype].format(point=escaped(lab)) + "\n"
    trials = lab / "study" / "trials"
    with pytest.raises(StoreError) as refused:
        SQLiteStore(trials, mountinfo=mountinfo)
    message = str(refused.value)
    assert message.startswith(
        f"mitosis: the trial store {trials / 'mitosis.sqlite'} would be on a network filesystem ({fstype} "
    )
    assert f"mounted at {lab})" in message
    assert "mitosis_allow_network_store = true" in message and "--mitosis-trials-folder" in message
    assert list(lab.iterdir()) == [], "nothing was created on the shared folder"


def test_the_ini_escape_hatch_opens_it_anyway(tmp_path: Path) -> None:
    lab = tmp_path / "lab"
    lab.mkdir()
    store = SQLiteStore(lab / "trials", allow_network=True, mountinfo=REAL + NETWORK["nfs4"].format(point=lab) + "\n")
    store.close()
    assert (lab / "trials" / "mitosis.sqlite").is_file()


def test_the_deepest_mount_wins_and_escapes_are_read(tmp_path: Path) -> None:
    inner = tmp_path / "a b" / "local"
    inner.mkdir(parents=True)
    text = (
        NETWORK["nfs4"].format(point=escaped(tmp_path / "a b"))
        + "\n"
        + f"416 412 8:1 / {escaped(inner)} rw,relatime - ext4 /dev/sda1 rw\n"
    )
    assert [m.point for m in parse(text)] == [str(tmp_path / "a b"), str(inner)]
    local = mount_of(inner / "trials", text)
    assert local is not None and local.fstype == "ext4" and not local.network
    remote = mount_of(tmp_path / "a b" / "other", text)
    assert remote is not None and remote.network
