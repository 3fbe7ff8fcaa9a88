"""Trials run by an xdist worker on another host, recorded in the controller's store: a proxy and its server.

A worker that does not share the controller's host and trials folder must never open the
controller's SQLite file (SQLite over a network filesystem corrupts; over ssh there is no file
at all). Its store is a :class:`RemoteStore`: every ``TrialStore`` call goes over an execnet
channel (created by the controller for that worker, sent in ``workerinput``) to a
:class:`StoreServer`, which answers it against the controller's store under one lock. So the
iteration is allocated and the variant locks checked *by the controller's store, atomically,
before the kernel starts*, and the drift gate asks the controller's store for the previous
result, exactly as for a local trial. At ``finish`` the worker sends the whole trial folder
(a tar, in chunks) before the record: the controller unpacks it into its staging folder,
renames it into place and only then finishes the record with the controller's path. A
folder that cannot be stored finishes the record ``failed`` with the reason, and the worker's
trial fails saying where its folder stayed; nothing is silently lost. The worker removes its
copy once the controller has it.
"""

from __future__ import annotations

import json
import os
import shutil
import tarfile
import threading
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from ..core.errors import MitosisError, TrialFailed
from ..execution.artifacts import STAGING
from ..identity.locks import Lock
from ..store import KeyTaken, NewTrial, Previous, StoreError, VariantRedefined
from . import wire
from .wire import CHUNK, TRANSFER

_TRANSFER = TRANSFER


class ChannelEnd:
    """What execnet hands the callback when the channel closes (the worker's process is gone)."""


END = ChannelEnd()


class RemoteStore:
    """The worker's side: a ``TrialStore`` whose every call is answered by the controller's store."""

    shared = False
    #: ``finish`` sends the trial's folder away: its HTML page must be in it by then (not rendered later)
    ships_folders = True

    def __init__(self, channel: Any, *, trials: Path, host: str, location: str) -> None:
        self._channel = channel
        self._trials = trials
        self._host = host
        self.location = location
        self._lock = threading.Lock()

    def _call(self, op: str, data: bytes | None = None, **args: Any) -> Any:
        """One request and its answer; the controller's refusals come back as the same exceptions."""
        with self._lock:
            try:
                self._channel.send((op, json.dumps(args), data))
                answer = self._channel.receive()
            except Exception as err:  # EOFError, execnet's RemoteError, OSError: the controller is gone
                raise StoreError(
                    f"mitosis: the controller (which holds the trial store {self.location}) no longer answers "
                    f"host {self._host}: {type(err).__name__}: {err}. The controller's session ended or lost "
                    "its connection to this worker; run again."
                ) from None
        kind, text, extra = answer
        if kind == "ok":
            return json.loads(text)
        if kind == "VariantRedefined":
            raise VariantRedefined(text, extra)
        if kind == "KeyTaken":
            raise KeyTaken(text)
        raise StoreError(text)

    def check_locks(self, locks: Sequence[Lock]) -> None:
        self._call("check_locks", locks=[asdict(lock) for lock in locks])

    def begin(self, trial: NewTrial, locks: Sequence[Lock]) -> int | None:
        value = self._call("begin", trial=asdict(trial), locks=[asdict(lock) for lock in locks])
        return None if value is None else int(value)

    def next_iteration(self, experiment: str, identity: str) -> int:
        return int(self._call("next_iteration", experiment=experiment, identity=identity))

    def beat(self, kind: str, key: str, session: str | None, state: dict[str, Any]) -> None:
        """A running trial's heartbeat, written by the controller (which keeps the session's own)."""
        if kind == "trial":
            self._call("beat", key=key, state=state)

    def previous(self, experiment: str, identity: str, before: str | None = None) -> Previous | None:
        value = self._call("previous", experiment=experiment, identity=identity, before=before)
        return None if value is None else Previous(**value)

    def finish(
        self,
        key: str,
        *,
        status: str,
        main: Any,
        metrics: dict[str, Any],
        folder: str | None,
        message: str | None,
        verdict: str | None = None,
        job: dict[str, Any] | None = None,
    ) -> list[str]:
        """Send the trial folder, then the record; the folder here is removed once the controller has both."""
        relative = None
        if folder is not None:
            path = Path(folder)
            relative = path.relative_to(self._trials).as_posix()
            try:
                self._ship(key, path)
            except OSError as err:
                message = f"{message + '; ' if message else ''}its folder could not be read on {self._host}: {err}"
                status, relative = "failed", None
        try:
            warnings = self._call(
                "finish",
                key=key,
                status=status,
                main=main,
                metrics=metrics,
                folder=relative,
                message=message,
                verdict=verdict,
                job=job,
            )
        except StoreError as err:
            name = f"trial {Path(folder).name}" if folder is not None else f"the trial of key {key}"
            stays = f" Its folder stays on {self._host}: {folder}." if folder is not None else ""
            raise TrialFailed(
                f"mitosis: {name} ran on host {self._host}, but the controller could not store it: {err}.{stays} "
                "Make the controller's trials folder writable (free space, permissions), and run again."
            ) from None
        if folder is not None and relative is not None:
            shutil.rmtree(folder, ignore_errors=True)
        return [str(w) for w in warnings]

    def _ship(self, key: str, folder: Path) -> None:
        """The folder as a tar, sent in chunks (no answer per chunk: the pipe paces the sender)."""
        import tempfile

        with tempfile.TemporaryFile() as buffer:
            with tarfile.open(fileobj=buffer, mode="w") as tar:
                tar.add(folder, arcname=".")
            buffer.seek(0)
            with self._lock:
                while True:
                    data = buffer.read(CHUNK)
                    if not data:
                        break
                    try:
                        self._channel.send(("chunk", json.dumps({"key": key}), data))
                    except Exception as err:
                        raise OSError(f"the controller no longer answers: {err}") from None

    def close(self) -> None:
        """Nothing to release: the channel belongs to xdist's gateway."""


class StoreServer:
    """The controller's side for one worker: the execnet channel's callback (it runs in execnet's receiver thread).

    Nothing a worker sends is trusted: every message passes :mod:`pytest_mitosis.distributed.wire` before
    it is used (a key, a folder name, a tar member, a value for the store), and a message that
    is not what our :class:`RemoteStore` sends is refused whole, its refusal answered to the
    worker and kept in :attr:`refusals`. A worker may finish only the trials it began, and its
    folder lands only where that trial's name and key put it.
    """

    def __init__(
        self,
        channel: Any,
        open_store: Any,
        trials: Path,
        lock: threading.Lock,
        shipped: dict[str, Path],
        session: str | None = None,
    ):
        self._channel = channel
        self._open_store = open_store
        self._trials = trials
        self._lock = lock
        #: the controller's session key: the only session a worker's trial may name (``None``: any key)
        self._session = session
        #: trial key → the controller's folder of every trial received (the summary shows these paths)
        self.shipped = shipped
        self.closed = False
        self.worker = "?"
        self.host = "?"
        self._running: set[str] = set()
        #: the trials :meth:`_gone` recorded ``interrupted`` (a crash report may follow: see :meth:`crashed`)
        self._lost: set[str] = set()
        #: trial key → (its folder's name, debug): where its folder may land
        self._folders: dict[str, tuple[str, bool]] = {}
        self._broken: dict[str, str] = {}
        #: every refusal of a message from this worker, as answered (a chunk's, which has no answer, too)
        self.refusals: list[str] = []

    def __call__(self, message: Any) -> None:
        if isinstance(message, ChannelEnd):
            self._gone()
            return
        # the operation named, even in a message refused below: a chunk is never answered (the worker reads no answer)
        named = message[0] if isinstance(message, (tuple, list)) and message else None
        op = named if isinstance(named, str) and named in wire.OPERATIONS else "?"
        try:
            op, args, data = wire.message(message)
            with self._lock:
                result = getattr(self, f"_op_{op}")(args, data)
            answer: tuple[str, str, str] = ("ok", json.dumps(result), "")
        except wire.Refused as err:
            with self._lock:
                answer = ("StoreError", self._refused(op, err, message), "")
        except VariantRedefined as err:
            answer = ("VariantRedefined", str(err), err.short)
        except KeyTaken as err:
            answer = ("KeyTaken", str(err), "")
        except MitosisError as err:
            answer = ("StoreError", str(err), "")
        except Exception as err:  # never an exception in execnet's thread: the worker must hear why
            answer = ("StoreError", f"{type(err).__name__}: {err}", "")
        if op != "chunk":
            try:
                self._channel.send(answer)
            except Exception:  # the worker is gone; its channel's end marker follows
                pass

    def _refused(self, op: str, err: wire.Refused, message: Any) -> str:
        """The refusal's text (kept in :attr:`refusals`): whose message, which field, expected, found.

        A refused chunk of a trial this worker began breaks that trial's folder: its staging
        folder goes at once, and the trial's ``finish`` records it ``failed`` with this text.
        """
        what = "a message" if op == "?" else f"a {op!r} message"
        text = (
            f"mitosis: the controller refused {what} of worker {self.worker} on host {self.host}: {err}. Nothing of "
            "it was written. pytest-mitosis never sends that: check that the worker runs the controller's "
            "pytest-mitosis version, and that nobody else can reach its connection."
        )
        self.refusals.append(text)
        if op == "chunk":
            try:
                key = json.loads(message[1]).get("key")
            except Exception:  # no key to be read: no trial of this worker to break
                key = None
            if isinstance(key, str) and key in self._running:
                self._broken.setdefault(key, text)
                shutil.rmtree(self._staging(key), ignore_errors=True)
        return text

    def _op_open(self, args: dict[str, Any], data: Any) -> dict[str, Any]:
        worker, host = wire.name("worker", args["worker"]), wire.name("host", args["host"])
        self.worker, self.host = worker, host
        store = self._open_store()
        return {"shared": bool(getattr(store, "shared", False)), "location": store.location}

    def _op_check_locks(self, args: dict[str, Any], data: Any) -> None:
        self._open_store().check_locks(wire.locks("locks", args["locks"]))

    def _op_begin(self, args: dict[str, Any], data: Any) -> int | None:
        trial = wire.new_trial(args["trial"], self._session)
        locks = wire.locks("locks", args["locks"])
        wire.begun(trial, locks)
        iteration = self._open_store().begin(trial, locks)
        name = trial.slug if iteration is None else f"{trial.slug}-{iteration}"
        self._running.add(trial.key)
        self._folders[trial.key] = (f"{name}_{trial.key}", trial.debug)
        return iteration

    def _op_next_iteration(self, args: dict[str, Any], data: Any) -> int:
        experiment = wire.text("experiment", args["experiment"], 1000, line=True, empty=False)
        return self._open_store().next_iteration(experiment, wire.text("identity", args["identity"], 1 << 20))

    def _op_previous(self, args: dict[str, Any], data: Any) -> dict[str, Any] | None:
        experiment = wire.text("experiment", args["experiment"], 1000, line=True, empty=False)
        identity = wire.text("identity", args["identity"], 1 << 20)
        found = self._open_store().previous(experiment, identity, wire.optional_key("before", args["before"]))
        return None if found is None else asdict(found)

    def _op_statuses(self, args: dict[str, Any], data: Any) -> dict[str, str]:
        keys = wire.keys("keys", args["keys"])
        statuses = getattr(self._open_store(), "statuses", None)  # optional in the protocol, as for session.sweep
        return dict(statuses(keys)) if statuses is not None and keys else {}

    def _op_beat(self, args: dict[str, Any], data: Any) -> None:
        """A running trial's heartbeat: ``status`` and the xdist progress line see remote trials too."""
        key = wire.running("key", args["key"], self._running, self.worker)
        state = wire.beat_state(args["state"])
        beat = getattr(self._open_store(), "beat", None)  # optional: a plugin's store may keep none
        if beat is not None:
            beat("trial", key, self._session, state)

    def _staging(self, key: str) -> Path:
        """The staging folder of a trial this worker began (``key`` checked by :func:`wire.running`)."""
        return self._trials / STAGING / key

    def _op_chunk(self, args: dict[str, Any], data: bytes) -> None:
        key = wire.running("key", args["key"], self._running, self.worker)  # a refusal is kept, never answered
        if key in self._broken:
            return
        try:
            staging = self._staging(key)
            staging.mkdir(parents=True, exist_ok=True)
            with (staging / _TRANSFER).open("ab") as stream:
                stream.write(data)
        except OSError as err:
            self._broken[key] = str(err)

    def _op_finish(self, args: dict[str, Any], data: Any) -> list[str]:
        key = wire.running("key", args["key"], self._running, self.worker)
        wire.finish(args)
        store = self._open_store()
        status, message, folder = args["status"], args["message"], None
        problem = self._broken.pop(key, None)
        if args["folder"] is not None and problem is None:
            try:
                folder = str(self._unpack(key, str(args["folder"])))
            except wire.Refused as err:
                problem = f"the worker sent what is not this trial's folder: {err}"
                self.refusals.append(
                    f"mitosis: the controller refused the folder of trial {key} from worker {self.worker} on host "
                    f"{self.host}: {err}. Nothing of it was kept; the trial is recorded failed."
                )
            except (OSError, tarfile.TarError) as err:
                problem = str(err)
        if problem is not None or args["folder"] is None:  # the chunks of a folder that failed on the way, too
            shutil.rmtree(self._staging(key), ignore_errors=True)
        if problem is not None:
            status = "failed"
            message = (
                f"{message + '; ' if message else ''}ran on host {self.host} (worker {self.worker}), but its folder "
                f"could not be stored in {self._trials}: {problem}"
            )
        warnings = store.finish(
            key,
            status=status,
            main=args["main"],
            metrics=args["metrics"],
            folder=folder,
            message=message,
            verdict=args["verdict"],
            job=args["job"],
        )
        self._running.discard(key)
        self._folders.pop(key, None)
        if problem is not None:
            raise StoreError(f"its folder could not be stored in {self._trials}: {problem}")
        if folder is not None:
            self.shipped[key] = Path(folder)
        return warnings

    def _unpack(self, key: str, relative: str) -> Path:
        """Unpack the received tar in the staging folder, then rename it into place (as a local trial's).

        Every member is checked before the first is written (:func:`wire.members`), so a refused
        folder leaves nothing behind but its staging folder, which the caller removes.
        """
        leaf, debug = self._folders[key]
        parts = wire.folder(relative, leaf, debug)
        final = self._trials.joinpath(*parts)
        if os.path.lexists(final):
            raise wire.Refused("folder", "a trial folder that does not exist yet", relative)
        staging = self._staging(key)
        transfer = staging / _TRANSFER
        with tarfile.open(transfer) as tar:
            members = wire.members(tar)
            if hasattr(tarfile, "data_filter"):
                tar.extractall(staging, members=members, filter="data")
            else:  # pragma: no cover - Python before 3.10.12: wire.members let through plain files and folders only
                for member in members:
                    member.mode &= 0o755
                tar.extractall(staging, members=members)  # noqa: S202 - every member checked above
        transfer.unlink()
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(staging, final)
        return final

    def _gone(self) -> None:
        """The worker went away: its unfinished trials are recorded ``interrupted`` (while the session lasts)."""
        with self._lock:
            if self.closed or not self._running:
                return
            try:
                store = self._open_store()
                for key in sorted(self._running):
                    shutil.rmtree(self._trials / STAGING / key, ignore_errors=True)
                    store.finish(
                        key,
                        status="interrupted",
                        main=None,
                        metrics={},
                        folder=None,
                        message=f"worker {self.worker} on host {self.host} went away before the trial finished",
                    )
            except Exception:  # the next session marks them interrupted (their process, this controller, is gone)
                pass
            self._lost |= self._running
            self._running.clear()

    def crashed(self) -> list[str]:
        """pytest-xdist says this worker crashed: the keys of its trials that never finished (running, or
        recorded ``interrupted`` by :meth:`_gone` when its channel ended first), for the controller to record
        ``failed``; their staging folders here are removed. Called under the controller's lock."""
        keys = sorted(self._running | self._lost)
        for key in keys:
            shutil.rmtree(self._staging(key), ignore_errors=True)
            self._folders.pop(key, None)
            self._broken.pop(key, None)
        self._running.clear()
        self._lost.clear()
        return keys
