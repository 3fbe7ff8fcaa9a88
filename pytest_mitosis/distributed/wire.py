"""What a worker on another host may send the controller: every field checked before it is used.

A remote worker's messages reach the controller's :class:`~pytest_mitosis.distributed.shipping.StoreServer`
over an execnet channel: through ssh, or through a socket server that anyone on the network path
may talk to. They name a folder in the controller's trials folder, carry values for its store and
bytes for its disk, so a compromised worker host could otherwise write outside the trials folder
(a key ``../../x``), rewrite another trial's record or plant a symlink. Every message passes
through here first, in one place, and is taken whole or refused whole: a refusal
(:class:`Refused`) names the field, what our own :class:`~pytest_mitosis.distributed.shipping.RemoteStore`
sends there and what came, and the server writes nothing of a refused message. The checks are
those of the values our worker produces (keys drawn by :func:`~pytest_mitosis.store.new_key`,
slugs made safe as file names, the statuses a trial ends with), not a loose sanity check.
No pytest import.
"""

from __future__ import annotations

import json
import re
import tarfile
from collections.abc import Iterable
from dataclasses import fields
from pathlib import PurePosixPath
from typing import Any, NoReturn

from ..config.settings import MAX_SEED
from ..identity.locks import Lock
from ..store import NewTrial, StoreError, job_problem, valid_key

#: bytes per message when a trial folder travels to the controller (the largest chunk accepted)
CHUNK = 1 << 20
#: the received tar's name in a trial's staging folder (no member may take it)
TRANSFER = ".transfer.tar"
#: the largest JSON text of one message (a trial's environment record, a long metric series)
MAX_TEXT = 64 << 20
#: the most keys one ``statuses`` question may ask about (SQLite's older limit on variables is 999)
MAX_KEYS = 500
#: the most variant locks of one trial
MAX_LOCKS = 10_000

#: the fields of each operation's JSON object, exactly (what ``RemoteStore`` sends)
OPERATIONS: dict[str, frozenset[str]] = {
    "open": frozenset({"worker", "host"}),
    "check_locks": frozenset({"locks"}),
    "begin": frozenset({"trial", "locks"}),
    "next_iteration": frozenset({"experiment", "identity"}),
    "previous": frozenset({"experiment", "identity", "before"}),
    "statuses": frozenset({"keys"}),
    "chunk": frozenset({"key"}),
    "finish": frozenset({"key", "status", "main", "metrics", "folder", "message", "verdict", "job"}),
    "beat": frozenset({"key", "state"}),
}
#: what a running trial's heartbeat says (``MitosisSession.on_progress``): each a short text, ``elapsed`` seconds
BEAT_STATE = frozenset({"phase", "step", "line", "elapsed", "name", "nodeid"})
#: how a trial sent by a worker may end (``running`` is the controller's to clear)
STATUSES = ("passed", "failed", "interrupted")
#: a hypothesis's verdict, or a reproduction's
VERDICTS = ("holds", "refuted", "reproduced", "not reproduced")
LOCK_KINDS = ("lookup", "eval", "expect")
#: a trial's name without its iteration, as :attr:`TrialSpec.slug` makes it: safe as a file name
SLUG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.=+-]{0,199}\Z")
FINGERPRINT = re.compile(r"[0-9a-f]{8,128}\Z")
#: the subfolder of debug trials (:mod:`pytest_mitosis.execution.artifacts`)
DEBUG = "debug"
_KEY = "a trial key (8 lower-case hexadecimal digits, as new_key draws)"


class Said(str):
    """A description of what came (``a symlink to /etc``), quoted as it is rather than as a value."""


class Refused(StoreError):
    """A worker's message is not one our worker sends: the field, what was expected, what came."""

    def __init__(self, field: str, expected: str, found: Any) -> None:
        super().__init__(f"{field}: expected {expected}, found {shown(found)}")
        self.field = field


def shown(value: Any, limit: int = 80) -> str:
    """A value as the refusal quotes it: its type and a short ``repr`` (escapes visible, never raw)."""
    if isinstance(value, Said):
        return str(value)
    if isinstance(value, bytes) and len(value) > limit:
        return f"{len(value)} bytes"
    if isinstance(value, (str, bytes)):
        text, what = repr(value), ""
    else:
        text, what = repr(value), "" if value is None or isinstance(value, bool) else f"{type(value).__name__} "
    return what + (text if len(text) <= limit else text[: limit - 3] + "...")


def refuse(field: str, expected: str, found: Any) -> NoReturn:
    raise Refused(field, expected, found)


def message(raw: Any) -> tuple[str, dict[str, Any], Any]:
    """``(operation, JSON object, data)``, the operation known and the object holding exactly its fields."""
    if not isinstance(raw, (tuple, list)) or len(raw) != 3:
        refuse("the message", "(operation, JSON text, data)", raw)
    op, text, data = raw
    if not isinstance(op, str) or op not in OPERATIONS:
        refuse("the operation", f"one of {', '.join(OPERATIONS)}", op)
    if not isinstance(text, str) or len(text) > MAX_TEXT:
        refuse(f"the {op} message's text", f"a JSON text of at most {MAX_TEXT} characters", text)
    try:
        args = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: a JSON text nested thousands deep
        refuse(f"the {op} message's text", "a JSON object", text)
    if not isinstance(args, dict):
        refuse(f"the {op} message's text", "a JSON object", args)
    exact(op, args, OPERATIONS[op])
    if op == "chunk":
        if not isinstance(data, bytes) or not 0 < len(data) <= CHUNK:
            refuse("chunk data", f"1 to {CHUNK} bytes", data)
    elif data is not None:
        refuse(f"the {op} message's data", "none (only a chunk carries bytes)", data)
    return op, args, data


def exact(where: str, args: Any, names: Iterable[str]) -> None:
    """``args`` is an object with exactly the fields ``names`` (none missing, none unknown)."""
    if not isinstance(args, dict):
        refuse(where, "a JSON object", args)
    wanted = set(names)
    missing, unknown = sorted(wanted - set(args)), sorted(set(args) - wanted)
    if missing:
        refuse(f"{where}.{missing[0]}", "a field of this message", Said("nothing"))
    if unknown:
        refuse(f"{where}.{unknown[0]}", f"only the fields {', '.join(sorted(wanted))}", unknown[0])


def key(field: str, value: Any) -> str:
    if not valid_key(value):
        refuse(field, _KEY, value)
    return str(value)


def optional_key(field: str, value: Any) -> str | None:
    return None if value is None else key(field, value)


def text(field: str, value: Any, limit: int, *, line: bool = False, empty: bool = True) -> str:
    """A string of at most ``limit`` characters; ``line``: printable, one line (a name shown in messages)."""
    if not isinstance(value, str) or len(value) > limit or (not empty and not value):
        size = "a" if empty else "a non-empty"
        refuse(field, f"{size} string of at most {limit} characters", value)
    if line and not value.isprintable():
        refuse(field, "printable characters on one line", value)
    return value


def optional_text(field: str, value: Any, limit: int) -> str | None:
    return None if value is None else text(field, value, limit)


def one_of(field: str, value: Any, allowed: Iterable[str | None]) -> Any:
    allowed = tuple(allowed)
    if not any(value == a and type(value) is type(a) for a in allowed):
        refuse(field, "one of " + ", ".join("none" if a is None else repr(a) for a in allowed), value)
    return value


def name(field: str, value: Any) -> str:
    """A worker's id or a host name (only ever shown in messages and records)."""
    return text(field, value, 255, line=True, empty=False)


def _typed(field: str, value: Any, kind: type, what: str) -> Any:
    if type(value) is not kind:  # bool is not an int here, nor int a bool
        refuse(field, what, value)
    return value


def mapping(field: str, value: Any) -> dict[str, Any]:
    """A JSON object (its keys are strings by JSON's rules)."""
    return dict(_typed(field, value, dict, "a JSON object"))


def objects(field: str, value: Any) -> list[dict[str, Any]]:
    """A list of JSON objects (a trial's steps, its parameters)."""
    _typed(field, value, list, "a list of JSON objects")
    for index, item in enumerate(value):
        mapping(f"{field}[{index}]", item)
    return list(value)


def locks(field: str, value: Any) -> list[Lock]:
    """Variant locks as ``identify`` makes them: known kinds, hex fingerprints, names as text."""
    if type(value) is not list or len(value) > MAX_LOCKS:
        refuse(field, f"a list of at most {MAX_LOCKS} locks", value)
    made = []
    for index, item in enumerate(value):
        where = f"{field}[{index}]"
        exact(where, item, [f.name for f in fields(Lock)])
        for part in ("experiment", "step", "param", "where"):
            text(f"{where}.{part}", item[part], 10_000, empty=False)
        text(f"{where}.name", item["name"], 10_000)
        one_of(f"{where}.kind", item["kind"], LOCK_KINDS)
        if not isinstance(item["fingerprint"], str) or not FINGERPRINT.match(item["fingerprint"]):
            refuse(f"{where}.fingerprint", "a hexadecimal digest", item["fingerprint"])
        made.append(Lock(**item))
    return made


def new_trial(value: Any, session: str | None) -> NewTrial:
    """The trial a worker begins; ``session``: the controller's session key, the only one its workers may name."""
    exact("trial", value, [f.name for f in fields(NewTrial)])
    key("trial.key", value["key"])
    text("trial.experiment", value["experiment"], 1000, line=True, empty=False)
    text("trial.identity", value["identity"], 1 << 20)
    text("trial.variants", value["variants"], 10_000, line=True)
    if not isinstance(value["slug"], str) or not SLUG.match(value["slug"]):
        refuse("trial.slug", "a trial name safe as a file name (letters, digits, _.=+-; at most 200)", value["slug"])
    text("trial.nodeid", value["nodeid"], 10_000, line=True, empty=False)
    _typed("trial.debug", value["debug"], bool, "true or false")
    mapping("trial.git", value["git"])
    seed = _typed("trial.seed", value["seed"], int, f"an integer from 0 to {MAX_SEED}")
    if not 0 <= seed <= MAX_SEED:
        refuse("trial.seed", f"an integer from 0 to {MAX_SEED}", seed)
    mapping("trial.environment", value["environment"])
    objects("trial.steps", value["steps"])
    objects("trial.params", value["params"])
    optional_key("trial.reproduces", value["reproduces"])
    if value["directions"] is not None:
        mapping("trial.directions", value["directions"])
    if session is not None:
        one_of("trial.session", value["session"], [session, None])
    else:
        optional_key("trial.session", value["session"])
    return NewTrial(**value)


def begun(trial: NewTrial, taken: list[Lock]) -> None:
    """A trial's locks are its own experiment's (a worker must not lock another experiment's variants)."""
    for index, lock in enumerate(taken):
        if lock.experiment != trial.experiment:
            refuse(f"locks[{index}].experiment", f"the trial's experiment {trial.experiment!r}", lock.experiment)


def running(field: str, value: Any, keys: Iterable[str], worker: str) -> str:
    """A key this worker began and has not finished (never another worker's trial, nor a finished one)."""
    found = key(field, value)
    if found not in set(keys):
        refuse(field, f"the key of a trial worker {worker} began and has not finished", found)
    return found


def finish(args: dict[str, Any]) -> dict[str, Any]:
    """A finished trial's record (``key`` and ``folder`` are checked by the caller, which knows them)."""
    one_of("status", args["status"], STATUSES)
    mapping("metrics", args["metrics"])
    optional_text("message", args["message"], 1 << 20)
    one_of("verdict", args["verdict"], (None, *VERDICTS))
    if args["folder"] is not None:
        text("folder", args["folder"], 1000, empty=False)
    problem = job_problem(args["job"])  # the batch job that ran it, as every executor writes it
    if problem is not None:
        field, expected, found = problem
        absent = isinstance(args["job"], dict) and field.removeprefix("job.") not in args["job"]
        refuse(field, expected, Said("nothing") if absent else found)
    return args


def beat_state(value: Any) -> dict[str, Any]:
    """A heartbeat's state: only its known fields, each a short text (``elapsed``: seconds)."""
    state = mapping("state", value)
    unknown = sorted(set(state) - BEAT_STATE)
    if unknown:
        refuse(f"state.{unknown[0]}", f"only the fields {', '.join(sorted(BEAT_STATE))}", unknown[0])
    for name in sorted(BEAT_STATE - {"elapsed"}):
        if state.get(name) is not None:
            text(f"state.{name}", state[name], 1000)
    elapsed = state.get("elapsed")
    if elapsed is not None and (type(elapsed) not in (int, float) or not 0 <= elapsed < 1e9):
        refuse("state.elapsed", "seconds (a number from 0)", elapsed)
    return state


def keys(field: str, value: Any) -> list[str]:
    if type(value) is not list or len(value) > MAX_KEYS:
        refuse(field, f"a list of at most {MAX_KEYS} trial keys", value)
    return [key(f"{field}[{index}]", item) for index, item in enumerate(value)]


def folder(relative: str, leaf: str, debug: bool) -> tuple[str, ...]:
    """The parts of a trial folder the worker names: ``leaf`` (``NAME_KEY``), or ``debug/leaf`` for a debug trial.

    Exactly the folder the trial's own name and key give (as :class:`TrialFolder` lays it out),
    so a worker can name no other place in the trials folder.
    """
    parts = PurePosixPath(relative).parts
    allowed = [(leaf,), (DEBUG, leaf)] if debug else [(leaf,)]
    if parts not in allowed or relative != "/".join(parts):
        refuse("folder", " or ".join(repr("/".join(a)) for a in allowed), relative)
    return parts


def members(tar: tarfile.TarFile) -> list[tarfile.TarInfo]:
    """The members of a received trial folder, each a plain file or folder inside it; else refused.

    Stricter than ``tarfile``'s ``data`` filter: no symlink, hard link, device or FIFO at all,
    no sparse file (a few bytes that unpack to terabytes), no absolute name, no ``..``, and no
    member taking the received tar's own name.
    """
    found = tar.getmembers()
    for member in found:
        field = f"folder member {member.name!r}"
        parts = [p for p in PurePosixPath(member.name).parts if p != "."]
        if PurePosixPath(member.name).is_absolute() or ".." in parts or "\x00" in member.name:
            refuse(field, "a relative path inside the trial folder", member.name)
        if parts == [TRANSFER]:
            refuse(field, "any name but the transfer's own", member.name)
        if member.issparse() or not (member.isfile() or member.isdir()):
            refuse(field, "a regular file or a folder", _kind(member))
        if not parts and not member.isdir():
            refuse(field, "the trial folder itself to be a folder", _kind(member))
    return found


def _kind(member: tarfile.TarInfo) -> Said:
    for test, what in (
        (member.issym, f"a symlink to {member.linkname}"),
        (member.islnk, f"a hard link to {member.linkname}"),
        (member.isdev, "a device or FIFO"),
        (member.issparse, "a sparse file"),
        (member.isdir, "a folder"),
    ):
        if test():
            return Said(what)
    return Said("a file")
