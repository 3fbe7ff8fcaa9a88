"""Trials on several hosts: pytest-xdist workers with their own checkouts (``--tx popen//chdir=``, ``--tx ssh=``).

One machine plays several hosts: each "host" is a git clone of the investigation at the same
commit; a worker started through ``unshare --uts`` gets a host name of its own (where the machine
allows it), and the ssh test logs in to a throwaway ``sshd`` on 127.0.0.1. Every host uses this
test session's interpreter (``//python=`` of the same venv: a venv per host would cost a
minute each). The controller's trials folder and store must hold every trial, as if it had
run locally; a worker whose checkout or variants differ must fail its trials with one message.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_mitosis.store import Reader

from .conftest import PATIENCE, Run, clean_env, git, git_init, run_pytest, wait_until, write_investigation

PYPROJECT = """
[tool.mitosis]
trials-folder = "trials"

[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""

# the lookup dict reads a file git ignores: the way a host can give a variant another value
EXP = """
import json
from pathlib import Path

lookup = {"size": json.loads((Path(__file__).parent / "sizes.json").read_text())}


def run(size):
    return {"main": size * 2}
"""

SIZES = {"small": 1, "big": 5}


def clone(origin: Path, where: Path, sizes: dict[str, int] | None = SIZES) -> Path:
    """A host's own checkout of the investigation, at the controller's commit (with its ``sizes.json``)."""
    subprocess.run(["git", "clone", "-q", str(origin), str(where)], check=True, capture_output=True)
    if sizes is not None:
        (where / "sizes.json").write_text(json.dumps(sizes), encoding="utf-8")
    return where


def can_unshare() -> bool:
    try:
        return subprocess.run(["unshare", "--uts", "true"], capture_output=True).returncode == 0
    except OSError:
        return False


#: why the machine cannot play a second host (tests that need one skip, saying so)
NO_UNSHARE = "unshare --uts is not permitted here, so every worker has this machine's host name"


def python_on_host(folder: Path, host: str) -> tuple[Path, str | None]:
    """An interpreter command whose processes see ``host`` as their host name, and that name; without
    ``unshare`` the real interpreter, and ``None``: its workers run on this host, under its name."""
    wrapper = folder / f"python-on-{host}"
    if can_unshare():
        script = f'exec unshare --uts /bin/sh -c \'hostname {host} && exec "$0" "$@"\' {sys.executable} "$@"\n'
    else:
        script, host = f'exec {sys.executable} "$@"\n', None
    wrapper.write_text("#!/bin/sh\n" + script, encoding="utf-8")
    wrapper.chmod(0o755)
    return wrapper, host


@pytest.fixture(scope="module")
def origin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_investigation(tmp_path_factory.mktemp("remote") / "controller", PYPROJECT, {"exp": EXP})
    (root / "sizes.json").write_text(json.dumps(SIZES), encoding="utf-8")
    git_init(root)
    git(root, "rm", "-q", "--cached", "sizes.json")
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nsizes.json\n", encoding="utf-8")
    git(root, "commit", "-q", "-am", "sizes.json is written on each host")
    return root


@dataclass
class Cluster:
    controller: Path
    #: each worker's checkout: this host's first, then the other host's
    checkouts: tuple[Path, Path]
    #: the other worker's host name (``None``: it could not get one, see :data:`NO_UNSHARE`)
    other_host: str | None
    run: Run

    def hosts(self) -> set[str]:
        """The host names the trials must have run on."""
        return {socket.gethostname(), self.other_host or socket.gethostname()}

    def keys(self) -> set[str]:
        """The keys of this run's two trials (later tests add trials of their own to the controller's store)."""
        return {self.run.properties(f"exp[{variants}]")["mitosis.key"] for variants in SIZES}


@pytest.fixture(scope="module")
def two_hosts(origin: Path) -> Cluster:
    """Two trials over two workers: one in its own checkout, one in another checkout on another host name."""
    a = clone(origin, origin.parent / "host-a")
    b = clone(origin, origin.parent / "host-b")
    python, host_b = python_on_host(origin.parent, "mitosis-host-b")
    run = run_pytest(
        origin,
        "--mitosis",
        "-d",
        "--tx",
        f"popen//chdir={a}",
        "--tx",
        f"popen//python={python}//chdir={b}",
    )
    return Cluster(origin, (a, b), host_b, run)


def test_every_remote_trial_is_recorded_by_the_controller_with_its_folder(two_hosts: Cluster) -> None:
    run = two_hosts.run
    assert run.ret == 0, run.out
    assert "2 passed" in run.out
    trials = two_hosts.controller / "trials"
    with Reader(trials) as reader:
        records = {r.variants: r for r in reader.trials(debug=True) if r.key in two_hosts.keys()}
        hosts = {r.variants: reader.environment(r).get("hostname") for r in records.values()}
    assert set(records) == {"small", "big"}
    for variants, record in records.items():
        assert (record.status, record.iteration) == ("passed", 1)
        assert record.main == SIZES[variants] * 2
        folder = Path(str(record.folder))
        assert folder.parent == trials, "the trial's folder is in the controller's trials folder"
        assert (folder / f"{record.name}.ipynb").is_file() and (folder / f"{record.name}.html").is_file()
        assert (folder / "trial.yaml").is_file() and (folder / "outcome.json").is_file()
        assert run.properties(f"exp[{variants}]")["mitosis.html"] == str(folder / f"{record.name}.html")
    assert set(hosts.values()) == two_hosts.hosts(), hosts
    with Reader(trials) as reader:  # the controller's row; the remote workers' trials carry its key
        (session,) = [s for s in reader.sessions() if s.key == records["small"].session]
    assert {r.session for r in records.values()} == {session.key}
    assert (session.host, session.status, session.trials) == (socket.gethostname(), "ended", {"passed": 2})


def test_the_two_trials_ran_on_two_hosts(two_hosts: Cluster) -> None:
    """One trial per worker, each recording the host name its worker saw."""
    if two_hosts.other_host is None:
        pytest.skip(NO_UNSHARE)
    assert two_hosts.run.ret == 0, two_hosts.run.out
    with Reader(two_hosts.controller / "trials") as reader:
        records = [r for r in reader.trials(debug=True) if r.key in two_hosts.keys()]
        hosts = sorted(reader.environment(r).get("hostname") for r in records)
    assert hosts == sorted([socket.gethostname(), two_hosts.other_host]), hosts


def test_the_hosts_keep_no_store_and_no_trial_folder(two_hosts: Cluster) -> None:
    for checkout in two_hosts.checkouts:
        trials = checkout / "trials"
        assert not (trials / "mitosis.sqlite").exists()
        assert not [p for p in trials.glob("trial_*")], "a shipped folder is removed from the worker's host"
        # nothing copied into the checkout (pytest-xdist rsyncs pytest/ and _pytest/ unless told not to)
        assert git(checkout, "status", "--porcelain", "--untracked-files=all") == "", checkout
        assert not (checkout / "pytest").exists() and not (checkout / "_pytest").exists()


def test_a_local_session_runs_in_a_workers_checkout_after_the_gateway_run(two_hosts: Cluster) -> None:
    checkout = two_hosts.checkouts[0]  # this host's
    run = run_pytest(checkout, "--mitosis", "-k", "small")
    assert run.ret == 0, run.out
    assert "1 passed" in run.out and "uncommitted" not in run.out
    with Reader(checkout / "trials") as reader:
        (record,) = reader.trials()
    assert (record.variants, record.status, record.main) == ("small", "passed", 2)


def test_history_and_show_name_the_host(two_hosts: Cluster) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "history"],
        cwd=two_hosts.controller,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stdout.splitlines()
    assert lines[0].split()[7:9] == ["commit", "host"]
    shown_hosts = {line.split()[0]: line.split()[8] for line in lines[1:]}
    with Reader(two_hosts.controller / "trials") as reader:
        recorded = {r.key: reader.environment(r).get("hostname") for r in reader.trials(debug=True)}
    assert shown_hosts == {key: recorded[key] for key in shown_hosts}, "each trial's own host"
    assert {shown_hosts[key] for key in two_hosts.keys()} == two_hosts.hosts(), shown_hosts
    key = lines[1].split()[0]
    shown = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "show", key],
        cwd=two_hosts.controller,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert f"host {lines[1].split()[8]}" in shown
    index = (two_hosts.controller / "trials" / "report" / "index.html").read_text(encoding="utf-8")
    assert "<th>commit</th><th>host</th>" in index
    assert all(f"data-host='{line.split()[8]}'" in index for line in lines[1:])


def mismatched(origin: Path, case: str) -> tuple[Path, str]:
    """A host's checkout unlike the controller's, and the message that fails its worker's trials."""
    host = socket.gethostname()
    commit = git(origin, "rev-parse", "HEAD").strip()
    leave = f"or leave {host} out of --tx, and run again."
    head = f"mitosis: worker gw0 on host {host} cannot run this session's trials"
    checkout = clone(origin, origin.parent / case, {"small": 2, "big": 5} if case == "redefined" else SIZES)
    if case == "dirty":
        (checkout / "notes.txt").write_text("not committed\n", encoding="utf-8")
        return checkout, (
            f"{head}: its checkout {checkout} (commit {commit[:12]}, the controller's on host {host}) has uncommitted "
            f"changes, so the commit its trials would record would not say what ran:\n  untracked: notes.txt\n"
            f"Discard them on {host} (git -C {checkout} stash --include-untracked), or commit them, check the new "
            f"commit out on the controller and on every worker, {leave}"
        )
    if case == "other-commit":
        (checkout / "exp.py").write_text(EXP + "\n# changed\n", encoding="utf-8")
        git(checkout, "commit", "-q", "-am", "another commit")
        theirs = git(checkout, "rev-parse", "HEAD").strip()
        return checkout, (
            f"{head}: its checkout {checkout} is at commit {theirs[:12]}, the controller (host {host}) at "
            f"{commit[:12]}. Every worker runs the controller's commit, so that each trial's record says what ran. "
            f"On {host}: git -C {checkout} fetch && git -C {checkout} checkout {commit}, {leave}"
        )
    return checkout, (
        f"{head}: at commit {commit[:12]} (the controller's on host {host}), these values differ from the "
        "controller's:\n  exp[small]: variant 'small' of exp.size\n"
        f"Something outside git gives them another value on {host} (a file git ignores, an environment variable, "
        f"an installed package): trials of one name would mean different things. Make {host} give the same values "
        f"as the controller, {leave}"
    )


def recorded(trials: Path) -> int:
    if not (trials / "mitosis.sqlite").exists():
        return 0
    with Reader(trials) as reader:
        return len(reader.trials(debug=True))


@pytest.mark.parametrize("case", ["dirty", "other-commit", "redefined"])
def test_a_worker_unlike_the_controller_fails_its_trials_before_any_kernel(origin: Path, case: str) -> None:
    """A dirty checkout, another commit, a variant redefined outside git: the exact message once (the
    worker's other trials point to it), no record."""
    checkout, message = mismatched(origin, case)
    before = recorded(origin / "trials")
    run = run_pytest(origin, "--mitosis", "-d", f"--tx=popen//chdir={checkout}")
    assert run.ret == 1, run.out
    assert "2 errors" in run.out
    first, second = re.findall(r"_ ERROR at setup of trial: exp\[(\w+)\] _+\n\[gw0\] linux -- Python", run.out)
    errors = run.out.split("short test summary info")[0]  # the summary repeats it (in full when CI is set)
    assert errors.count(message) == 1, run.out
    assert (
        f"{message.split(':', 2)[0]}:{message.split(':', 2)[1]}: see the error of pyproject.toml::exp[{first}] for why."
    ) in run.out
    assert "INTERNALERROR" not in run.out and "Traceback" not in run.out
    assert recorded(origin / "trials") == before, "no trial was recorded"


def test_a_trial_the_controller_cannot_store_fails_saying_where_its_folder_stayed(origin: Path) -> None:
    checkout = clone(origin, origin.parent / "unstored")
    trials = origin / "trials"
    staging = trials / ".staging"
    staging.mkdir(parents=True, exist_ok=True)
    if subprocess.run(["chattr", "+i", str(staging)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here: as root, nothing else makes a folder unwritable")
    try:
        run = run_pytest(origin, "--mitosis", "-d", "-k", "small", f"--tx=popen//chdir={checkout}")
    finally:
        subprocess.run(["chattr", "-i", str(staging)], capture_output=True)
    assert run.ret == 1, run.out
    (folder,) = (checkout / "trials").glob("trial_exp-small-*")
    assert (folder / f"{folder.name.rsplit('_', 1)[0]}.html").is_file(), "the worker keeps the folder it could not send"
    key = folder.name.rsplit("_", 1)[1]
    host = socket.gethostname()
    problem = f"its folder could not be stored in {trials}: [Errno 1] Operation not permitted: '{staging / key}'"
    assert (
        f"mitosis: trial {folder.name} ran on host {host}, but the controller could not store it: {problem}. "
        f"Its folder stays on {host}: {folder}. Make the controller's trials folder writable (free space, "
        "permissions), and run again."
    ) in run.out
    with Reader(trials) as reader:
        (record,) = [r for r in reader.trials(debug=True) if r.key == key]
    assert (record.status, record.folder) == ("failed", None)
    assert record.message == f"ran on host {host} (worker gw0), but {problem}"
    assert not (trials / folder.name).exists() and not (staging / key).exists()


def test_a_worker_over_a_socket_gateway_is_recorded_by_the_controller(two_hosts: Cluster) -> None:
    """``--tx socket=``: execnet's socket server on 127.0.0.1, started here and stopped by its pid."""
    origin = two_hosts.controller
    checkout = clone(origin, origin.parent / "over-socket")
    with Reader(origin / "trials") as reader:
        last = max(r.iteration or 0 for r in reader.trials() if r.variants == "small")
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "execnet.script.socketserver", f"127.0.0.1:{port}"],
        cwd=checkout,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_until(f"execnet's socket server listening on port {port}", listening, server)
        run = run_pytest(origin, "--mitosis", "-d", "-k", "small", f"--tx=socket=127.0.0.1:{port}//chdir={checkout}")
    finally:
        server.terminate()
        server.wait(timeout=10)
    assert run.ret == 0, run.out
    key = run.properties("exp[small]")["mitosis.key"]
    with Reader(origin / "trials") as reader:
        (record,) = [r for r in reader.trials() if r.key == key]
        assert reader.environment(record)["git"]["worktree"] == str(checkout)
    assert record.iteration == last + 1 and Path(str(record.folder)).parent == origin / "trials"
    assert (Path(str(record.folder)) / f"{record.name}.ipynb").is_file()


WAIT = """
import os
import time
from pathlib import Path

lookup = {"seconds": {"long": 120}}


def wait(seconds):
    # the pytest process (the worker) that started this kernel: not always its parent process, since a
    # forked kernel is a child of the session's fork server
    Path(os.environ["WORKER_PID_FILE"]).write_text(os.environ["JPY_PARENT_PID"])
    time.sleep(seconds)
    return {"main": 0}
"""


def test_a_worker_killed_mid_trial_leaves_it_recorded_failed(tmp_path: Path) -> None:
    root = write_investigation(
        tmp_path / "controller",
        '[tool.mitosis.steps]\nwait = ["wait:wait", "wait:lookup"]\n\n[tool.pytest.ini_options]\n',
        {"wait": WAIT},
    )
    git_init(root)
    checkout = clone(root, tmp_path / "host", None)
    pid_file = tmp_path / "worker.pid"
    session = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", "-d", f"--tx=popen//chdir={checkout}"],
        cwd=root,
        env=clean_env(WORKER_PID_FILE=str(pid_file)),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        wait_until("the worker's pid, written by the step", lambda: pid_file.exists() and pid_file.read_text(), session)
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
        out, _ = session.communicate(timeout=120)
    finally:
        if session.poll() is None:
            session.kill()
            session.wait()
    assert session.returncode == 1, out
    assert "worker 'gw0' crashed while running 'pyproject.toml::wait[long]'" in out
    with Reader(root / "trials") as reader:
        (record,) = reader.trials()
    # failed whichever comes first: the end of the worker's channel, or xdist's crash report
    assert (record.status, record.iteration) == ("failed", 1)
    assert record.message == (
        f"worker gw0 on host {socket.gethostname()} crashed while running this trial: its process ended before the "
        "trial finished (killed, out of memory, or a crash in native code)"
    )
    assert "mitosis session " in out and ": 1 trial (1 failed); " in out
    staging = checkout / "trials" / ".staging"
    assert [p.name for p in staging.iterdir()] == [record.key], "the killed worker left its staging folder"
    again = run_pytest(
        root,
        "--mitosis",
        "-d",
        "--mitosis-eval=wait.seconds=0",
        f"--tx=popen//chdir={checkout}",
        env=clean_env(WORKER_PID_FILE=str(tmp_path / "again.pid")),
    )
    assert again.ret == 0, again.out
    assert list(staging.iterdir()) == [], "the next session on that host removed it"


SHARED_CONFTEST = """
import os
from pathlib import Path

import pytest

from pytest_mitosis.store import SQLiteStore


class LabStore(SQLiteStore):
    shared = True  # every host reaches it (here: one folder of one machine)


@pytest.hookimpl(optionalhook=True)
def pytest_mitosis_make_store(config, folder):
    return LabStore(Path(os.environ["LAB_STORE"]))
"""


def test_with_a_shared_store_workers_write_it_and_keep_their_folders(tmp_path: Path) -> None:
    """A store that says it is ``shared`` is written by each worker; the folders stay on the workers' hosts."""
    root = write_investigation(tmp_path / "controller", PYPROJECT, {"exp": EXP})
    (root / "conftest.py").write_text(SHARED_CONFTEST, encoding="utf-8")
    (root / "sizes.json").write_text(json.dumps(SIZES), encoding="utf-8")
    git_init(root)
    git(root, "rm", "-q", "--cached", "sizes.json")
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nsizes.json\n", encoding="utf-8")
    git(root, "commit", "-q", "-am", "sizes.json is written on each host")
    checkout = clone(root, tmp_path / "host")
    lab = tmp_path / "lab"
    lab.mkdir()
    run = run_pytest(
        root, "--mitosis", "-d", "-k", "small", f"--tx=popen//chdir={checkout}", env=clean_env(LAB_STORE=str(lab))
    )
    assert run.ret == 0, run.out
    with Reader(lab) as reader:
        (record,) = reader.trials()
    folder = Path(str(record.folder))
    assert folder.parent == checkout / "trials" and (folder / f"{record.name}.html").is_file()
    assert run.properties("exp[small]")["mitosis.html"] == str(folder / f"{record.name}.html")
    assert not list((root / "trials").glob("trial_*")) and not (root / "trials" / "mitosis.sqlite").exists()


# -- real ssh ------------------------------------------------------------------------------------


@dataclass
class SshHost:
    alias: str
    config: Path
    hostname: str


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def ssh_host(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshHost]:
    """A throwaway sshd on 127.0.0.1 (root by key only), as another host when ``unshare --uts`` works.

    Skipped, saying why, where the machine cannot run it; ``MITOSIS_REQUIRE_SSH=1`` (``.ci/run``)
    turns the skip into a failure.
    """

    def unavailable(reason: str) -> None:
        if os.environ.get("MITOSIS_REQUIRE_SSH") == "1":
            pytest.fail(f"MITOSIS_REQUIRE_SSH=1 but {reason}")
        pytest.skip(reason)

    sshd = shutil.which("sshd") or ("/usr/sbin/sshd" if Path("/usr/sbin/sshd").exists() else None)
    if sshd is None or shutil.which("ssh") is None or shutil.which("ssh-keygen") is None:
        unavailable("the ssh test needs Debian's openssh-server and openssh-client (apt-get install openssh-server)")
    if os.geteuid() != 0:
        unavailable("the ssh test logs in as root with a throwaway key, so it runs as root only")
    assert sshd is not None
    folder = tmp_path_factory.mktemp("sshd")
    for name in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(folder / name)], check=True, capture_output=True
        )
    shutil.copy(folder / "client_key.pub", folder / "authorized_keys")
    port = _free_port()
    (folder / "sshd_config").write_text(
        f"Port {port}\nListenAddress 127.0.0.1\nHostKey {folder / 'host_key'}\nPidFile {folder / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {folder / 'authorized_keys'}\nPermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n",
        encoding="utf-8",
    )
    config = folder / "ssh_config"
    config.write_text(
        f"Host mitosis-test-host\n  HostName 127.0.0.1\n  Port {port}\n  User root\n"
        f"  IdentityFile {folder / 'client_key'}\n  IdentitiesOnly yes\n  BatchMode yes\n"
        f"  StrictHostKeyChecking no\n  UserKnownHostsFile {folder / 'known_hosts'}\n  LogLevel ERROR\n",
        encoding="utf-8",
    )
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation folder (Debian's service creates it)
    hostname = "mitosis-ssh-host" if can_unshare() else socket.gethostname()
    command = [sshd, "-D", "-e", "-f", str(folder / "sshd_config")]
    if hostname != socket.gethostname():
        command = ["unshare", "--uts", "/bin/sh", "-c", f'hostname {hostname} && exec "$@"', "sh", *command]
    log = (folder / "sshd.log").open("w")
    server = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + PATIENCE  # sshd starts slowly on a loaded machine: it is waited for
        while True:
            done = subprocess.run(
                ["ssh", "-F", str(config), "mitosis-test-host", "hostname"], capture_output=True, text=True
            )
            if done.returncode == 0 or server.poll() is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        if done.returncode != 0:
            unavailable(
                f"sshd on 127.0.0.1:{port} did not let the test log in: {done.stderr.strip()} {(folder / 'sshd.log').read_text()}"
            )
        assert done.stdout.strip() == hostname
        yield SshHost("mitosis-test-host", config, hostname)
    finally:
        server.terminate()
        server.wait(timeout=10)
        log.close()


def test_a_worker_over_ssh_runs_in_its_checkout_and_the_controller_records_it(
    two_hosts: Cluster, ssh_host: SshHost
) -> None:
    """The iteration comes from the controller's store, and so does the previous trial the gate compares with."""
    origin = two_hosts.controller
    with Reader(origin / "trials") as reader:
        first = max((r for r in reader.trials() if r.variants == "big"), key=lambda r: r.iteration or 0)
    checkout = clone(origin, origin.parent / "over-ssh")
    run = run_pytest(
        origin,
        "--mitosis",
        "-d",
        "-k",
        "big",
        "--mitosis-compare=last",
        "--tx",
        f"ssh={ssh_host.alias}//ssh_config={ssh_host.config}//python={sys.executable}//chdir={checkout}",
    )
    assert run.ret == 0, run.out
    assert "1 passed" in run.out
    key = run.properties("exp[big]")["mitosis.key"]
    with Reader(origin / "trials") as reader:
        (record,) = [r for r in reader.trials(debug=True) if r.key == key]
        assert reader.environment(record)["hostname"] == ssh_host.hostname
        assert reader.environment(record)["git"]["worktree"] == str(checkout)
    folder = Path(str(record.folder))
    assert folder.parent == origin / "trials"
    assert (folder / f"{record.name}.html").is_file()
    assert not list((checkout / "trials").glob("trial_*"))
    assert record.iteration == (first.iteration or 0) + 1
    compared = run.values("exp[big]", "mitosis.compare")
    assert compared == [f"main and metrics unchanged since {first.name}, key {first.key}"]
