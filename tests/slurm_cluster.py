"""A real single-node Slurm cluster for the Slurm tests: Debian's ``slurm-wlm`` and ``munge``, all in a temp dir.

``slurm_cluster`` (module-scoped: each test module gets a cluster of its own) starts a private
``munged`` (its own key, socket, pid, seed and log in the temp dir; slurm.conf points at the socket
with ``AuthInfo=socket=...``, so the host's ``/etc/munge`` and ``/run/munge`` are never used), then
``slurmctld`` and ``slurmd -N <node>`` with a ``slurm.conf`` whose state, spool, pid and log files are
in the same temp dir, and waits (polling ``sinfo``, generous deadline) until the node is ``idle``.
At teardown: ``scontrol shutdown``, ``munged`` killed by its pid, the temp dir removed; the daemons
are waited for, so nothing is left running. The daemons run as root (``SlurmUser=root``), as the
machine's recipe does (``/work/shared/design/verified-facts.md``, "Slurm for tests"); without root
or without the binaries the tests skip, saying why, and ``MITOSIS_REQUIRE_SLURM=1`` (set by
``.ci/run``) turns that skip into a failure.

What was measured on this machine kind (2 cores, Slurm 22.05.8, munge 0.5.15, 2026-12-07):

- **Two clusters at once on one host work**: each has its own ``SlurmctldPort``/``SlurmdPort``
  (free ports asked of the kernel), its own munge socket and key, and its own node name
  (``NodeName=mitosis-<random> NodeAddr=127.0.0.1 NodeHostname=<hostname -s>``, ``slurmd -N`` that
  name), so xdist workers may each run a module with a cluster of its own: no need to gather every
  Slurm test in one module. (``tests/test_slurm_cli.py::test_two_clusters_run_side_by_side`` keeps
  that true.)
- **More CPUs than the host has**: ``CPUs=16`` with ``SlurmdParameters=config_overrides`` registers
  the node with 16 CPUs on 2 cores (``scontrol show node``: ``CPUTot=16``), so 6 one-CPU tasks run at
  once (``tests/test_slurm_cli.py`` proves it from their files), with room for the module's other
  arrays beside them. ``SelectTypeParameters=CR_CPU_Memory`` with ``DefMemPerCPU=100`` makes memory a counted
  resource too, so a task's allocation reads ``cpu=1,mem=100M,node=1`` (and ``RealMemory`` bounds
  how many fit); nothing enforces it (no cgroup.conf: 22.05's slurmd refuses
  ``CgroupPlugin=disabled``), so an OUT_OF_MEMORY cannot be produced here.
- **Time limit latency**: the smallest limit is one minute (``--time=0:05`` is rounded up to
  ``TimeLimit=00:01:00``); slurmctld checks running jobs against their limits in its background
  pass, every ``PERIODIC_TIMEOUT`` = 30 s, a constant of its source, not a slurm.conf setting (a
  ``SlurmctldParameters=periodic_check_interval`` is only proposed upstream: SchedMD/slurm pull
  request 200; ``OverTimeLimit`` only *adds* minutes and is 0 here), so a job reaches ``TIMEOUT``
  60-90 s after it starts (measured: 24-27 s after its limit, about 90 s after submission).
  ``KillWait=1`` makes the SIGTERM -> SIGKILL gap one second (default 30). A test of a time limit
  therefore costs about a minute and a half: start it first and let the other tests run meanwhile.
- **Finished jobs stay known**: without accounting ``sacct`` answers nothing, and ``scontrol show
  job`` knows a finished job for ``MinJobAge`` seconds: 3600 here (default 300), longer than any
  test module runs.
- **A requeued task waits**: ``scontrol requeue`` puts the task back to PENDING with ``Reason=BeginTime``,
  eligible ``cred_expire`` seconds later (120 by default: about three minutes until it ran again),
  then started by the next scheduling pass (``sched_interval``, 60 by default). Here
  ``cred_expire=10`` and ``sched_interval=2``: it runs again about 12 s after the requeue. Do not
  release it earlier (``scontrol update ... StartTime=now``): slurmd refuses to launch a job again while
  its revoked credential is younger than ``cred_expire``, and the task then ends FAILED with nothing run
  (seen here twice).
  Its ``Restarts`` counts 1.
- **A controller that is gone**: the commands retry for ``MessageTimeout`` (5 s here, 10 by default;
  ``scontrol show job`` tries twice) and then say ``Unable to contact slurm controller``.
- **Start-up**: ``slurmctld`` and ``slurmd`` fork into the background at once; the node is ``idle``
  within a second or two, and a submitted job starts about 1-2 s later (the scheduler runs when
  the job arrives; ``SchedulerParameters=sched_min_interval`` is left at its default).
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

#: how long the node may take to come up, and a command to answer (a loaded 2-core machine)
PATIENCE = 60.0
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")
COMMANDS = ("sbatch", "squeue", "scontrol", "scancel", "sinfo", "sacct")
#: the CPUs the node declares (more than the host's cores: ``config_overrides``)
CPUS = 16
PARTITION = "debug"


def missing(reason: str) -> None:
    if os.environ.get("MITOSIS_REQUIRE_SLURM"):
        pytest.fail(f"MITOSIS_REQUIRE_SLURM is set, but {reason}", pytrace=False)
    pytest.skip(reason)


def free_port() -> int:
    """A TCP port nobody listens on now (the kernel's choice)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass
class SlurmCluster:
    base: Path
    conf: Path
    node: str
    partition: str
    #: the environment for every Slurm command and for processes that run them (SLURM_CONF, PATH)
    env: dict[str, str]
    munged_pid: int | None = None
    stopped: bool = field(default=False)

    def run(self, *argv: str, check: bool = True, timeout: float = PATIENCE) -> subprocess.CompletedProcess[str]:
        """A Slurm command against this cluster (``check``: a non-zero exit fails the test, showing stderr)."""
        done = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=timeout, cwd=self.base)
        if check and done.returncode != 0:
            raise AssertionError(f"{' '.join(argv)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def log(self, daemon: str = "slurmctld") -> str:
        """A daemon's log (``slurmctld``, ``slurmd``, ``munged``), for messages when something is wrong."""
        path = {"slurmctld": self.base / "slurmctld.log", "slurmd": self.base / f"slurmd-{self.node}.log"}.get(
            daemon, self.base / "munge" / "munged.log"
        )
        return path.read_text(errors="replace") if path.exists() else f"(no {path.name})"

    def wait_idle(self) -> None:
        """Poll ``sinfo`` until the node is ``idle`` (fails with the daemons' logs at the deadline)."""
        deadline = time.monotonic() + PATIENCE
        state = ""
        while time.monotonic() < deadline:
            done = self.run("sinfo", "-h", "-n", self.node, "-o", "%T", check=False, timeout=10)
            state = done.stdout.strip() or done.stderr.strip()
            if state == "idle":
                return
            time.sleep(0.2)
        raise AssertionError(
            f"node {self.node} not idle after {PATIENCE:.0f} s (last: {state!r})\n"
            f"slurmctld.log:\n{self.log()[-2000:]}\nslurmd.log:\n{self.log('slurmd')[-2000:]}"
        )

    def stop(self) -> None:
        """``scontrol shutdown`` (both daemons end, their jobs killed), then munged; waits until they are gone."""
        if self.stopped:
            return
        self.stopped = True
        pids = [_read_pid(self.base / "slurmctld.pid"), _read_pid(self.base / f"slurmd-{self.node}.pid")]
        # slurmd leaves running jobs' slurmstepd behind at shutdown (jobs outlive a daemon restart):
        # cancel every job first and give their steps a moment to end
        self.run("scancel", f"--partition={self.partition}", check=False, timeout=30)
        deadline = time.monotonic() + PATIENCE
        while time.monotonic() < deadline and self._job_processes():
            time.sleep(0.1)
        self.run("scontrol", "shutdown", check=False, timeout=30)
        for pid in pids:
            _end(pid)
        for pid in self._job_processes():  # what the cancel did not end (a daemon that was not answering)
            _end(pid, asked=False)
        _end(self.munged_pid, asked=False)

    def _job_processes(self) -> list[int]:
        """This cluster's job processes (slurmstepd and what it runs): their environment names our slurm.conf."""
        mark = f"SLURM_CONF={self.conf}".encode()
        daemons = {_read_pid(self.base / "slurmctld.pid"), _read_pid(self.base / f"slurmd-{self.node}.pid")}
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) in {os.getpid(), self.munged_pid, *daemons}:
                continue
            try:
                environ = (entry / "environ").read_bytes().split(b"\0")
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, ValueError, IndexError):
                continue
            if mark in environ and parent not in daemons:  # slurmctld's own helper (slurmscriptd) is no job
                found.append(int(entry.name))
        return [pid for pid in found if _alive(pid)]


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (the daemons are reparented to init, so normally none) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (OSError, IndexError):
        return False


def _end(pid: int | None, asked: bool = True) -> None:
    """Wait for ``pid`` to end; SIGTERM (at once unless it was ``asked`` to end already), then SIGKILL."""
    if pid is None:
        return
    for sig in ((None,) if asked else ()) + (signal.SIGTERM, signal.SIGKILL):
        if sig is not None and _alive(pid):
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                return
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and _alive(pid):
            time.sleep(0.1)
        if not _alive(pid):
            return


def slurm_conf(base: Path, node: str, memory: int) -> str:
    """A single-node cluster's slurm.conf: everything in ``base``, ports free now, the knobs tests need."""
    host = socket.gethostname().split(".")[0]
    return f"""\
ClusterName=mitosis
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
AuthType=auth/munge
AuthInfo=socket={base}/munge/munge.socket,cred_expire=10
SchedulerParameters=sched_interval=2
CredType=cred/munge
SlurmUser=root
SlurmdUser=root
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU_Memory
DefMemPerCPU=100
SlurmdParameters=config_overrides
ReturnToService=2
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
StateSaveLocation={base}/state
SlurmdSpoolDir={base}/spool
SlurmctldPidFile={base}/slurmctld.pid
SlurmdPidFile={base}/slurmd-{node}.pid
SlurmctldLogFile={base}/slurmctld.log
SlurmdLogFile={base}/slurmd-{node}.log
# seconds between a job's SIGTERM and SIGKILL at its time limit or scancel (default 30)
KillWait=1
# finished jobs stay known to scontrol for an hour (there is no accounting for sacct)
MinJobAge=3600
# how long a command keeps trying a controller that does not answer (default 10 s; scontrol tries twice)
MessageTimeout=5
NodeName={node} NodeAddr=127.0.0.1 NodeHostname={host} CPUs={CPUS} RealMemory={memory} State=UNKNOWN
PartitionName={PARTITION} Nodes={node} Default=YES MaxTime=INFINITE State=UP
"""


def start_cluster() -> SlurmCluster:
    """A new cluster in a temp dir, its node idle (or the test skipped/failed, saying why)."""
    absent = [path for path in DAEMONS if not os.access(path, os.X_OK)]
    absent += [name for name in COMMANDS if shutil.which(name) is None]
    if absent:
        missing(f"Slurm is not installed ({', '.join(absent)} missing): apt-get install slurm-wlm munge")
    if os.geteuid() != 0:
        missing("the test cluster's daemons run as root (SlurmUser=root), and these tests do not")
    if shutil.which("runuser") is None:
        missing("runuser (to start munged as the munge user) is missing")
    base = Path(tempfile.mkdtemp(prefix="mitosis-slurm-"))
    os.chmod(base, 0o755)  # munged checks every folder above its socket
    munge = base / "munge"
    munge.mkdir(mode=0o755)
    key = munge / "munge.key"
    key.write_bytes(os.urandom(1024))
    for path in (munge, key):
        shutil.chown(path, "munge", "munge")
    key.chmod(0o400)
    started = subprocess.run(
        [
            "runuser",
            "-u",
            "munge",
            "--",
            "/usr/sbin/munged",
            f"--socket={munge / 'munge.socket'}",
            f"--key-file={key}",
            f"--log-file={munge / 'munged.log'}",
            f"--pid-file={munge / 'munged.pid'}",
            f"--seed-file={munge / 'munged.seed'}",
        ],
        capture_output=True,
        text=True,
        timeout=PATIENCE,
    )
    if started.returncode != 0:
        shutil.rmtree(base, ignore_errors=True)
        missing(f"munged did not start: {started.stderr.strip()}")
    node = f"mitosis-{secrets.token_hex(3)}"
    conf = base / "slurm.conf"
    memory = 100 * CPUS * 4  # MB: four times what the CPUs' default memory needs
    conf.write_text(slurm_conf(base, node, memory), encoding="utf-8")
    (base / "state").mkdir()
    (base / "spool").mkdir()
    env = {**os.environ, "SLURM_CONF": str(conf), "PATH": os.environ.get("PATH", "/usr/bin:/bin")}
    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID", "SQUEUE_FORMAT", "SQUEUE_FORMAT2"):
        env.pop(name, None)  # a suite that itself runs as a Slurm job must not leak its own job into ours
    cluster = SlurmCluster(base, conf, node, PARTITION, env, _read_pid(munge / "munged.pid"))
    try:
        for argv in (["/usr/sbin/slurmctld"], ["/usr/sbin/slurmd", "-N", node]):
            daemon = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=PATIENCE, cwd=base)
            if daemon.returncode != 0:
                raise AssertionError(f"{argv[0]} did not start: {daemon.stderr.strip()}\n{cluster.log()[-2000:]}")
        cluster.wait_idle()
    except BaseException:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)
        raise
    return cluster


def own_cluster() -> Iterator[SlurmCluster]:
    """A cluster for as long as the generator runs: stopped and removed when it ends."""
    cluster = start_cluster()
    try:
        yield cluster
    finally:
        cluster.stop()
        shutil.rmtree(cluster.base, ignore_errors=True)


@pytest.fixture(scope="module")
def slurm_cluster() -> Iterator[SlurmCluster]:
    yield from own_cluster()


def start_session(root: Path, cluster: SlurmCluster, *args: str) -> tuple[subprocess.Popen[str], Path]:
    """``pytest --mitosis --mitosis-executor=slurm ARGS`` on ``cluster``, in the background (stopped with the
    test, see ``conftest.background``), its output in ``session.log`` beside ``root``: the process and the log."""
    import sys

    from .conftest import background, clean_env

    log = root.parent / "session.log"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "--mitosis-executor=slurm", *args]
    with log.open("w") as out:
        proc = background(
            argv,
            cwd=root,
            env=clean_env(SLURM_CONF=cluster.env["SLURM_CONF"]),
            stdout=out,
            stderr=subprocess.STDOUT,
            text=True,
        )
    return proc, log
