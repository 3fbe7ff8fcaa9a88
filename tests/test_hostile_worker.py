"""A worker on another host is not trusted: the controller checks every field of its messages.

The controller's real :class:`~pytest_mitosis.distributed.shipping.StoreServer` answers a real execnet
channel, as in a ``--tx ssh=`` or ``--tx socket=`` session; on the other end, a process started
by execnet (the "worker") sends crafted messages, the way a compromised worker host or anyone
on the path of an unauthenticated socket connection could. Each case asserts the refusal the
worker hears (field, expected, found), that nothing outside the controller's trials folder
changed (every file around it snapshotted before and after, a file the first exploit appended
to included), that nothing half-written stays inside it, and what the store holds. No kernel.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sqlite3
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import execnet
import pytest

from pytest_mitosis.distributed.shipping import CHUNK, END, StoreServer
from pytest_mitosis.store import NewTrial, SQLiteStore, new_key, valid_key

KEY = "0123abcd"
OTHER = "fedc9876"  # a trial in the store that this worker never began
SESSION = "5e551011"
FOLDER = f"trial_exp-a-1_{KEY}"  # the folder a trial named trial_exp-a, iteration 1, key KEY lands in

#: the worker: relays the crafted messages over the store channel, collects the answers (a chunk has none),
#: ends with a question every server answers (every chunk before it has then been handled), and goes away
#: (its store channel closes, as when a worker's process ends) before it hands the answers back
WORKER = """
store = channel.receive()
answers = []
for message in channel.receive() + [("statuses", '{"keys": []}', None)]:
    store.send(message)
    if not (isinstance(message, (tuple, list)) and message and message[0] == "chunk"):
        answers.append(store.receive(60))
store.close()
channel.send(answers)
"""


@pytest.fixture(scope="module")
def gateway() -> Iterator[execnet.Gateway]:
    gw = execnet.makegateway("popen")
    yield gw
    gw.exit()


def trial(key: str = KEY, **changes: Any) -> dict[str, Any]:
    """A trial as a worker's ``begin`` sends it (``changes``: the crafted fields)."""
    made = asdict(
        NewTrial(
            key=key,
            experiment="exp",
            identity='[["run", "x", "lookup", "a"]]',
            variants="a",
            slug="trial_exp-a",
            nodeid="exp.py::exp[a]",
            debug=False,
            git={"commit": "0" * 40},
            seed=7,
            environment={"hostname": "evil"},
            steps=[{"name": "run", "function": "exp:run"}],
            params=[],
            session=SESSION,
        )
    )
    return {**made, **changes}


def op(name: str, data: bytes | None = None, **args: Any) -> tuple[str, str, bytes | None]:
    return (name, json.dumps(args), data)


def begin(**changes: Any) -> tuple[str, str, None]:
    fields = {"trial": trial(**changes)}
    return ("begin", json.dumps({**fields, "locks": []}), None)


def finish(key: str = KEY, folder: str | None = FOLDER, **changes: Any) -> tuple[str, str, None]:
    args = {"key": key, "status": "passed", "main": 4.0, "metrics": {}, "folder": folder, "message": None}
    return ("finish", json.dumps({**args, "verdict": None, "job": None, **changes}), None)


#: the batch job a worker's trial ran in, as the Slurm executor fills it
JOB = {
    "executor": "slurm",
    "job": "1234_5",
    "array_job": "1234",
    "task": 5,
    "node": "node01",
    "partition": "debug",
    "allocation": "cpu=1,mem=500M,node=1",
    "restarts": 0,
    "state": "COMPLETED",
}
JOB_TEXT = "a string of at most 200 printable characters"


def tar(*members: tuple[tarfile.TarInfo, bytes | None]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as made:
        for info, content in members:
            made.addfile(info, io.BytesIO(content) if content is not None else None)
    return buffer.getvalue()


def member(
    name: str, kind: bytes = tarfile.REGTYPE, content: bytes = b"", link: str = ""
) -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.linkname, info.mode = kind, len(content), link, 0o644
    if kind != tarfile.REGTYPE:
        info.size = 0
    return info, content


def sparse(name: str, size: int) -> tuple[tarfile.TarInfo, bytes]:
    """A member of one stored byte that claims ``size`` bytes once unpacked (GNU sparse, in PAX headers)."""
    info, content = member(name, content=b"x")
    info.pax_headers = {"GNU.sparse.map": "0,1", "GNU.sparse.size": str(size), "GNU.sparse.name": name}
    return info, content


def folder(*extra: tuple[tarfile.TarInfo, bytes]) -> bytes:
    """A trial folder as a worker's ``tar.add(folder, arcname=".")`` sends it, with ``extra`` members."""
    root = tarfile.TarInfo(".")
    root.type, root.mode = tarfile.DIRTYPE, 0o755
    return tar((root, None), member("./trial.yaml", content=b"experiment: exp\n"), *extra)


def chunk(data: bytes, key: str = KEY) -> tuple[str, str, bytes]:
    return op("chunk", data, key=key)


@dataclass
class Home:
    """The controller's side: its trials folder and store, and the files around them an attack aims at."""

    root: Path
    trials: Path
    store: SQLiteStore
    #: the file the issue's exploit appended to: ``trials/.staging/../../escaped/.transfer.tar``
    victim: Path
    server: StoreServer | None = None
    answers: list[Any] = field(default_factory=list)

    def outside(self) -> dict[str, tuple[str, str]]:
        """Every path under ``root`` but inside the trials folder: its kind and content."""
        found = {}
        for here, dirs, files in os.walk(self.root):
            if Path(here) == self.trials:
                dirs[:] = []
                continue
            for name in dirs + files:
                path = Path(here) / name
                if path.is_symlink():
                    found[str(path)] = ("symlink", os.readlink(path))
                elif path.is_dir():
                    found[str(path)] = ("folder", "")
                else:
                    found[str(path)] = ("file", hashlib.sha256(path.read_bytes()).hexdigest())
        return found

    def inside(self) -> list[str]:
        """What the trials folder holds besides the store's files (the staging folder listed by its entries)."""
        found = []
        for path in sorted(self.trials.rglob("*")):
            relative = path.relative_to(self.trials).as_posix()
            if not relative.startswith("mitosis.sqlite") and relative != ".staging":
                found.append(relative)
        return found

    def row(self, key: str) -> dict[str, Any] | None:
        with sqlite3.connect(self.trials / "mitosis.sqlite") as db:
            db.row_factory = sqlite3.Row
            found = db.execute("SELECT status, folder, message, main FROM trials WHERE key=?", (key,)).fetchone()
        return None if found is None else dict(found)


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Home]:
    root = tmp_path / "home"
    trials = root / "trials"
    trials.mkdir(parents=True)
    victim = root / "escaped" / ".transfer.tar"
    victim.parent.mkdir()
    victim.write_bytes(b"the controller's user's file")
    (root / "notes.txt").write_text("keep me\n")
    store = SQLiteStore(trials)
    made = Home(root, trials, store, victim)
    # a trial some other worker began: this worker may not finish it
    store.begin(NewTrial(**{**trial(OTHER), "nodeid": "exp.py::exp[b]", "identity": "[]", "slug": "trial_exp-b"}), [])
    yield made
    store.close()


def serve(gateway: execnet.Gateway, home: Home, messages: list[Any]) -> list[Any]:
    """The worker sends ``messages`` to a real ``StoreServer`` over a real channel; its answers."""
    channel = gateway.newchannel()
    server = StoreServer(channel, lambda: home.store, home.trials, threading.Lock(), {}, session=SESSION)
    channel.setcallback(server, endmarker=END)
    worker = gateway.remote_exec(WORKER)
    worker.send(channel)
    worker.send(messages)
    answers = worker.receive(timeout=60)
    home.server, home.answers = server, answers
    return answers


OPEN = op("open", worker="gw9", host="evil")


@dataclass(frozen=True)
class Case:
    name: str
    messages: list[Any]
    #: the refusal's field, expected and found, as the worker hears it (and the controller keeps)
    refusal: str
    #: the status of trial KEY afterwards (None: never recorded)
    status: str | None
    #: how many answers tell the worker (a chunk is never answered: its refusal comes with the trial's finish)
    heard: int = 1


LEGIT = [OPEN, begin(), chunk(folder())]
A_KEY = "a trial key (8 lower-case hexadecimal digits, as new_key draws)"

CASES = [
    Case(
        "the issue's exploit: a key that climbs out of the trials folder",
        [OPEN, begin(key="../../escaped"), chunk(b"appended", key="../../escaped")],
        f"trial.key: expected {A_KEY}, found '../../escaped'",
        None,
    ),
    Case(
        "a chunk for a key never begun, climbing out",
        [OPEN, chunk(b"appended", key="../../escaped")],
        f"key: expected {A_KEY}, found '../../escaped'",
        None,
        heard=0,
    ),
    Case(
        "a chunk for a trial key another worker began",
        [OPEN, chunk(b"appended", key=OTHER)],
        f"key: expected the key of a trial worker gw9 began and has not finished, found '{OTHER}'",
        None,
        heard=0,
    ),
    Case(
        "a finish that rewrites another worker's trial",
        [OPEN, finish(key=OTHER, folder=None)],
        f"key: expected the key of a trial worker gw9 began and has not finished, found '{OTHER}'",
        None,
    ),
    Case(
        "a folder named outside the trials folder",
        [*LEGIT, finish(folder=f"../../escaped/{FOLDER}")],
        f"folder: expected '{FOLDER}', found '../../escaped/{FOLDER}'",
        "failed",
    ),
    Case(
        "a folder named by an absolute path",
        [*LEGIT, finish(folder=f"/tmp/{FOLDER}")],
        f"folder: expected '{FOLDER}', found '/tmp/{FOLDER}'",
        "failed",
    ),
    Case(
        "a folder inside the trials folder, but another trial's place",
        [*LEGIT, finish(folder=f".staging/{FOLDER}")],
        f"folder: expected '{FOLDER}', found '.staging/{FOLDER}'",
        "failed",
    ),
    Case(
        "a tar member that climbs out",
        [OPEN, begin(), chunk(folder(member("../../escaped/planted.txt", content=b"x"))), finish()],
        "folder member '../../escaped/planted.txt': expected a relative path inside the trial folder, "
        "found '../../escaped/planted.txt'",
        "failed",
    ),
    Case(
        "a tar member with an absolute name",
        [OPEN, begin(), chunk(folder(member("/tmp/planted.txt", content=b"x"))), finish()],
        "folder member '/tmp/planted.txt': expected a relative path inside the trial folder, found '/tmp/planted.txt'",
        "failed",
    ),
    Case(
        "a symlink out of the folder, then a file written through it",
        [
            OPEN,
            begin(),
            chunk(folder(member("./out", tarfile.SYMTYPE, link="../../.."), member("./out/planted.txt", content=b"x"))),
            finish(),
        ],
        "folder member './out': expected a regular file or a folder, found a symlink to ../../..",
        "failed",
    ),
    Case(
        "a hard link to a file outside",
        [OPEN, begin(), chunk(folder(member("./notes", tarfile.LNKTYPE, link="../../../notes.txt"))), finish()],
        "folder member './notes': expected a regular file or a folder, found a hard link to ../../../notes.txt",
        "failed",
    ),
    Case(
        "a device file",
        [OPEN, begin(), chunk(folder(member("./disk", tarfile.BLKTYPE))), finish()],
        "folder member './disk': expected a regular file or a folder, found a device or FIFO",
        "failed",
    ),
    Case(
        "a sparse file of one byte that unpacks to a terabyte",
        [OPEN, begin(), chunk(folder(sparse("./big", 1 << 40))), finish()],
        "folder member './big': expected a regular file or a folder, found a sparse file",
        "failed",
    ),
    Case(
        "a member that overwrites the transfer while it is read",
        [OPEN, begin(), chunk(folder(member("./.transfer.tar", content=b"x"))), finish()],
        "folder member './.transfer.tar': expected any name but the transfer's own, found './.transfer.tar'",
        "failed",
    ),
    Case(
        "a chunk larger than a worker ever sends",
        [OPEN, begin(), chunk(b"x" * (CHUNK + 1)), finish()],
        f"chunk data: expected 1 to {CHUNK} bytes, found {CHUNK + 1} bytes.",
        "failed",
    ),
    Case(
        "a slug that is a path",
        [OPEN, begin(slug="../../escaped")],
        "trial.slug: expected a trial name safe as a file name (letters, digits, _.=+-; at most 200), "
        "found '../../escaped'",
        None,
    ),
    Case(
        "a trial of another session",
        [OPEN, begin(session="00000000")],
        f"trial.session: expected one of '{SESSION}', none, found '00000000'",
        None,
    ),
    Case(
        "a field the store does not know",
        [OPEN, begin(host="controller")],
        "trial.host: expected only the fields " + ", ".join(sorted(trial())) + ", found 'host'",
        None,
    ),
    Case(
        "a status no trial ends with",
        [*LEGIT, finish(status="running")],
        "status: expected one of 'passed', 'failed', 'interrupted', found 'running'",
        "interrupted",  # refused whole: the trial stays running until its worker goes (its staging folder too)
    ),
    Case(
        "a job whose node adds a line to every view",
        [*LEGIT, finish(job={**JOB, "node": "node01\nmitosis: all trials passed"})],
        f"job.node: expected none or {JOB_TEXT}, found 'node01\\nmitosis: all trials passed'",
        "interrupted",  # refused whole, like a finish with any other field not ours
    ),
    Case(
        "a job whose state is a megabyte",
        [*LEGIT, finish(job={**JOB, "state": "x" * (1 << 20)})],
        f"job.state: expected none or {JOB_TEXT}, found 'xxxx",
        "interrupted",
    ),
    Case(
        "a job requeued a negative number of times",
        [*LEGIT, finish(job={**JOB, "restarts": -1})],
        "job.restarts: expected an integer from 0, found int -1",
        "interrupted",
    ),
    Case(
        "a job whose task is true",
        [*LEGIT, finish(job={**JOB, "task": True})],
        "job.task: expected an integer from 0, found True",
        "interrupted",
    ),
    Case(
        "a job whose id is empty",
        [*LEGIT, finish(job={**JOB, "job": ""})],
        "job.job: expected a non-empty string of at most 200 printable characters, found ''",
        "interrupted",
    ),
    Case(
        "a job without its id",
        [*LEGIT, finish(job={k: v for k, v in JOB.items() if k != "job"})],
        "job.job: expected a field of the job, found nothing",
        "interrupted",
    ),
    Case(
        "a job with a field of its own",
        [*LEGIT, finish(job={**JOB, "status": "passed"})],
        "job.status: expected only the fields " + ", ".join(sorted(JOB)) + ", found 'status'",
        "interrupted",
    ),
    Case(
        "a job that is a text",
        [*LEGIT, finish(job="1234_5")],
        "job: expected none or a JSON object, found '1234_5'",
        "interrupted",
    ),
    Case(
        "an operation that is not one",
        [OPEN, op("_gone"), op("__init__")],
        "the operation: expected one of open, check_locks, begin, next_iteration, previous, statuses, chunk, "
        "finish, beat, found '_gone'",
        None,
    ),
    Case(
        "a host name that adds a line to every message",
        [op("open", worker="gw9", host="evil\nmitosis: all trials passed")],
        "host: expected printable characters on one line, found 'evil\\nmitosis: all trials passed'",
        None,
    ),
    Case(
        "a heartbeat for another worker's trial",
        [OPEN, op("beat", key=OTHER, state={"phase": "step"})],
        f"key: expected the key of a trial worker gw9 began and has not finished, found '{OTHER}'",
        None,
    ),
    Case(
        "a heartbeat whose state carries a field of its own",
        [OPEN, begin(), op("beat", key=KEY, state={"phase": "step", "status": "passed"})],
        "state.status: expected only the fields elapsed, line, name, nodeid, phase, step, found 'status'",
        "interrupted",  # its worker went away after the refusal
    ),
    Case(
        "a heartbeat whose last line is a megabyte",
        [OPEN, begin(), op("beat", key=KEY, state={"line": "x" * (1 << 20)})],
        "state.line: expected a string of at most 1000 characters",
        "interrupted",
    ),
    Case(
        "a question about keys that are not keys",
        [OPEN, op("statuses", keys=["0123abcd", "' OR 1=1 --"])],
        f'keys[1]: expected {A_KEY}, found "\' OR 1=1 --"',
        None,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_a_crafted_worker_message_is_refused_and_writes_nothing_outside_the_trials_folder(
    gateway: execnet.Gateway, home: Home, case: Case
) -> None:
    before = home.outside()
    answers = serve(gateway, home, case.messages)
    server = home.server
    assert server is not None
    # the refusal: kept by the controller, and answered to the worker unless it refused a chunk
    assert server.refusals, f"nothing was refused; answers: {answers}"
    refusal = server.refusals[0]
    assert case.refusal in refusal, refusal
    assert refusal.startswith("mitosis: ") and "worker " in refusal
    heard = [text for kind, text, _ in answers if kind == "StoreError" and case.refusal in text]
    assert len(heard) == case.heard, answers
    # nothing outside the trials folder changed (the file the exploit appended to included)
    assert home.outside() == before
    assert home.victim.read_bytes() == b"the controller's user's file"
    # nothing half-written inside: no staging folder, no trial folder
    assert home.inside() == []
    row = home.row(KEY)
    assert (row or {}).get("status") == case.status
    if case.status == "failed":  # the trial ran: its record says why its folder was not kept
        assert row is not None and row["folder"] is None, row
        assert f"but its folder could not be stored in {home.trials}: " in row["message"], row
        assert case.refusal in row["message"], row
    other = home.row(OTHER)
    assert other is not None and other["status"] == "running" and other["main"] is None


def test_the_refusal_names_the_worker_the_field_what_was_expected_and_what_came(
    gateway: execnet.Gateway, home: Home
) -> None:
    answers = serve(gateway, home, [OPEN, begin(key="../../escaped")])
    assert answers[1] == (
        "StoreError",
        "mitosis: the controller refused a 'begin' message of worker gw9 on host evil: trial.key: expected a trial "
        "key (8 lower-case hexadecimal digits, as new_key draws), found '../../escaped'. Nothing of it was written. "
        "pytest-mitosis never sends that: check that the worker runs the controller's pytest-mitosis version, and "
        "that nobody else can reach its connection.",
        "",
    )
    assert answers[-1] == ("ok", "{}", "")  # the channel goes on serving the worker's next question


def test_a_worker_s_folder_as_pytest_mitosis_sends_it_is_stored(gateway: execnet.Gateway, home: Home) -> None:
    """The cases above are refused for what they send, not because this harness refuses everything."""
    before = home.outside()
    answers = serve(gateway, home, [*LEGIT, finish()])
    assert answers == [
        ("ok", json.dumps({"shared": False, "location": home.store.location}), ""),
        ("ok", "1", ""),
        ("ok", "[]", ""),
        ("ok", "{}", ""),
    ]
    assert home.server is not None and home.server.refusals == []
    assert home.inside() == [FOLDER, f"{FOLDER}/trial.yaml"]
    assert (home.trials / FOLDER / "trial.yaml").read_text() == "experiment: exp\n"
    assert home.row(KEY) == {"status": "passed", "folder": str(home.trials / FOLDER), "message": None, "main": "4.0"}
    assert home.outside() == before


def test_a_worker_s_job_reaches_the_controller_s_store(gateway: execnet.Gateway, home: Home) -> None:
    """A trial that ran as a batch job on a worker's host: the job arrives with its record, as it was sent."""
    queued = {**JOB, "node": None, "partition": "", "allocation": None, "state": None, "restarts": 2}
    answers = serve(gateway, home, [*LEGIT, finish(job=queued)])
    assert answers[2] == ("ok", "[]", "") and home.server is not None and home.server.refusals == []
    with sqlite3.connect(home.trials / "mitosis.sqlite") as db:
        (job,) = db.execute("SELECT job FROM trials WHERE key=?", (KEY,)).fetchone()
    assert json.loads(job) == queued


def test_a_worker_s_heartbeat_reaches_the_controller_s_store(gateway: execnet.Gateway, home: Home) -> None:
    """The beat row itself goes when the worker's trial ends (its channel closes here): what it held is read as written."""
    state = {"phase": "step", "step": "fit", "line": "epoch 3", "elapsed": 12.5, "name": "trial_exp-a-1"}
    written: list[tuple[str, ...]] = []
    beat = home.store.beat

    def recorded(kind: str, key: str, session: str | None, given: dict[str, Any]) -> None:
        beat(kind, key, session, given)
        with sqlite3.connect(home.trials / "mitosis.sqlite") as db:
            written.extend(db.execute("SELECT kind, key, session, state FROM beats").fetchall())

    home.store.beat = recorded  # type: ignore[method-assign]
    answers = serve(gateway, home, [OPEN, begin(), op("beat", key=KEY, state=state)])
    assert answers[2] == ("ok", "null", "")
    assert [(k, key, session, json.loads(text)) for k, key, session, text in written] == [
        ("trial", KEY, SESSION, state)
    ]


def test_a_folder_that_failed_on_the_way_leaves_no_staging_folder(gateway: execnet.Gateway, home: Home) -> None:
    """A worker whose folder could not be read after some chunks went finishes without a folder: nothing stays."""
    message = "its folder could not be read on evil: [Errno 5] Input/output error"
    answers = serve(gateway, home, [*LEGIT, finish(folder=None, status="failed", message=message)])
    assert answers[-2] == ("ok", "[]", "")
    assert home.inside() == []
    assert home.row(KEY) == {"status": "failed", "folder": None, "message": message, "main": "4.0"}


def test_the_controller_takes_exactly_the_keys_new_key_draws() -> None:
    assert all(valid_key(new_key()) for _ in range(100))
    assert not valid_key("0123ABCD") and not valid_key("0123abc") and not valid_key("0123abcd\n")
