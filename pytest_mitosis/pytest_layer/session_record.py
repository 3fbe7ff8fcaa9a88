"""The session's own record in the store: "the official run of 23 November", named by a key and found again.

The controller writes one ``sessions`` row when it starts running trials (its key, the
command line as typed with any store password replaced by ``***``, host, commit, dirty and
debug flags) and completes it when the session ends (pytest's exit status; ``interrupted``
for Ctrl-C and SIGTERM). Every trial carries the key: an xdist worker gets the controller's
in ``workerinput`` (see ``MitosisSession.session_key``), a remote worker's trial reaches the
controller's store with it through the ``RemoteStore`` proxy. A store from a plugin that
cannot record sessions (no ``begin_session``) still gets the key on every trial.
"""

from __future__ import annotations

import os
import shlex
import sys
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from .session import MitosisSession


def command_line(config: pytest.Config) -> str:
    """The command as typed: ``pytest ARGS`` (``python -m pytest ARGS`` when run so), store passwords as ``***``."""
    from ..store import redact

    args = [str(a) for a in config.invocation_params.args]
    program = "pytest"
    if args == sys.argv[1:]:  # this process's own command line (not pytest.main() from another program)
        first = os.path.basename(sys.argv[0])
        program = "python -m pytest" if first == "__main__.py" else first or "pytest"
    return " ".join([program, shlex.join(redact(a) for a in args)]).strip()


def open_session(mitosis: MitosisSession, distributed: bool) -> None:
    """Record the session as running (once, on the controller, once the store is open).

    The key was drawn at configure time; under xdist it is already in every worker's
    ``workerinput``, so a key another session holds (32 random bits: rare) stops this session
    with a usage error instead of being replaced behind the workers' backs.
    """
    from ..store import KeyTaken, NewSession, StoreError, new_key

    if mitosis.state.session_recorded or hasattr(mitosis.context.config, "workerinput"):
        return
    store = mitosis.context.store()
    begin = getattr(store, "begin_session", None)
    if begin is None:
        return
    repo = mitosis.context.repo()
    for _ in range(1 if distributed else 20):
        record = NewSession(
            key=mitosis.context.session_key,
            command=command_line(mitosis.context.config),
            commit=repo.commit,
            dirty=bool(repo.dirty),
            debug=mitosis.context.settings.debug,
            started=mitosis.context.started,
        )
        try:
            begin(record)
        except KeyTaken:
            mitosis.context.session_key = new_key()
            continue
        except StoreError as err:
            raise pytest.UsageError(str(err)) from None
        mitosis.state.session_recorded = True
        return
    raise pytest.UsageError(
        f"mitosis: the session key {record.key} is already taken in {store.location} (a coincidence of 32 random "
        "bits); run the session again."
    )


def end_session(mitosis: MitosisSession, exitstatus: int) -> None:
    """Record the end of the session (again when the exit status changes late: a CI file not written),
    with the files that were edited while it ran, when it started clean."""
    from ..recording.pending import drop_session_end, keep_session_end
    from ..store import StoreError

    if not mitosis.state.session_recorded:
        return
    changed = mitosis.trials.changed_since_start()
    try:
        end = mitosis.context.store().end_session  # type: ignore[attr-defined]
        end(mitosis.context.session_key, int(exitstatus), changed) if changed else end(
            mitosis.context.session_key, int(exitstatus)
        )
    except StoreError as err:  # away past its patience: the end waits in the trials folder for the next session
        trials = mitosis.context.project().trials_folder
        kept = keep_session_end(trials, mitosis.context.session_key, int(exitstatus), changed or None)
        mitosis.state.store_notes.append(
            f"mitosis: the end of this session could not be recorded ({err}); it is kept in {kept} and "
            "recorded by the next session that uses this trials folder."
        )
    else:  # recorded: an end kept by an earlier call (the exit status changed since) is no longer true
        drop_session_end(mitosis.context.project().trials_folder, mitosis.context.session_key)
