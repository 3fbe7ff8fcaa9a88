"""``status``: the trials running now in the store, across sessions and hosts (like ``squeue``).

Every running trial writes a heartbeat with its phase, step, elapsed time and last printed line
every few seconds (:mod:`pytest_mitosis.recording`); each session alone writes its progress
(selected, done, passed, failed, estimated end). A trial whose process is gone, as the
next session will judge it (:func:`~pytest_mitosis.store.protocol.dead`: its pid on this machine,
the age of its heartbeat elsewhere), is shown ``dead``; it stays ``running`` in the store until a
session marks it ``interrupted``. No pytest import here;
everything printed passes through the CLI's ``printable``.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Callable
from typing import Any

from ..core.tree_text import span
from ..store import Reader, cell
from ..store.protocol import STALE, dead


def status(reader: Reader, as_json: bool, table: Callable[[list[list[str]]], str]) -> str:
    """Every running trial (one row each), then one line per running session with its progress."""
    now, here = time.time(), socket.gethostname()
    trials = reader.running()
    sessions = reader.session_beats()
    if as_json:
        return json.dumps(
            {
                "trials": [
                    {
                        "key": t.key,
                        "name": t.name,
                        "session": t.session,
                        "host": t.host,
                        "started": t.started,
                        "heartbeat": t.beat,
                        "alive": not dead(t.pid, t.host, here, t.machine, t.beat, now),
                        **t.state,
                    }
                    for t in trials
                ],
                "sessions": [{"key": s.key, "host": s.host, "heartbeat": s.beat, **s.state} for s in sessions.values()],
            },
            indent=2,
        )
    if not trials and not sessions:
        return f"no trial is running in {reader.location}"
    rows = [["session", "host", "trial", "key", "step", "elapsed", "heartbeat", "last line"]]
    for t in trials:
        state = t.state
        gone = dead(t.pid, t.host, here, t.machine, t.beat, now)  # as the next session will judge it
        if t.beat is None:  # a trial's first beat comes a second after it starts
            beat = "none: dead" if gone else "none yet" if now - t.started <= STALE else "none: dead?"
        else:
            beat = f"{span(now - t.beat)} ago" + (": dead" if gone else "")
        step = _where(state)
        rows.append(
            [
                t.session or "-",
                t.host,
                str(t.nodeid).rsplit("::", 1)[-1],
                t.key,
                step,
                span(now - t.started),
                beat,
                str(state.get("line") or "")[:60],
            ]
        )
    lines = [table(rows)] if trials else []
    for s in sessions.values():
        st = {k: cell(v) for k, v in s.state.items()}  # a crafted store's text stays on its line
        lines.append(
            f"session {cell(s.key)} on {cell(s.host)}: {st.get('done', '?')} of {st.get('selected', '?')} done "
            f"({st.get('passed', 0)} passed, {st.get('failed', 0)} failed"
            + "".join(f", {st[o]} {o}" for o in ("error", "skipped") if st.get(o, "0") != "0")
            + f"), {st.get('ends', 'end unknown')}; "
            f"heartbeat {span(now - (s.beat or now))} ago"
        )
    return "\n".join(lines)


def _where(state: dict[str, Any]) -> str:
    """The step (or phase) a heartbeat says; a batch job's trial the scheduler keeps waiting, ``pending
    (Priority)``; one running on a node of a cluster, its step ``on node01``."""
    if state.get("phase") == "pending":
        return f"pending ({state['reason']})" if state.get("reason") else "pending"
    where = str(state.get("step") or state.get("phase") or "-")
    return f"{where} on {state['node']}" if state.get("node") else where
