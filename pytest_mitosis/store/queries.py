"""The SQL both built-in backends share, and the rows they write: one text of each query for SQLite and
PostgreSQL.

Written in SQLite's dialect (``?``, ``IS ?``); :mod:`.postgres` translates them (see :mod:`.dialect`).
Each function that runs queries takes the backend's ``fetchone``/``fetchall``/``execute`` and runs in
the caller's transaction. The column lists derive from the schema (:mod:`.tables`). No pytest import.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from ..core.processes import process_mark
from ..core.rules import GATE_FAILED
from ..identity.environment import package_changes
from .protocol import DIED, Acceptance, NewSession, NewTrial, NotAcceptable, Previous, dead
from .tables import column_list, names

#: the trials the drift gate compares with: passed, or accepted after failing the gate (``python -m
#: pytest_mitosis accept KEY``); never a debug trial or a reproduction. Both backends select with it.
BASELINE_SQL = (
    'SELECT t.key, t.name, t.main, t.metrics, t.seed, t."commit", e.environment, t.params, '
    "(SELECT COUNT(*) FROM acceptances a WHERE a.trial = t.key) AS accepted "
    "FROM trials t LEFT JOIN environments e ON e.digest = t.environment "
    "WHERE t.experiment=? AND t.identity=? AND t.debug=0 AND t.reproduces IS NULL AND t.key <> COALESCE(?, '') "
    "AND (t.status='passed' OR EXISTS (SELECT 1 FROM acceptances a WHERE a.trial = t.key)) "
    "ORDER BY t.started DESC LIMIT 1"
)


def baseline(row: Sequence[Any] | None) -> Previous | None:
    """A :data:`BASELINE_SQL` row as a :class:`Previous`."""
    if row is None:
        return None
    environment = json.loads(row[6]) if row[6] else None
    return Previous(
        row[0], row[1], json.loads(row[2]), json.loads(row[3] or "{}"), row[4], row[5], environment,
        json.loads(row[7] or "[]"), bool(row[8]),
    )  # fmt: skip


def package_warning(name: str, key: str, before: str, now: str) -> str | None:
    """The warning for the packages that changed between two environment records (JSON texts), if any."""
    changes = package_changes(json.loads(before).get("packages", {}), json.loads(now).get("packages", {}))
    listed = changes["changed"] + [f"+{p}" for p in changes["added"]] + [f"-{p}" for p in changes["removed"]]
    if not listed:
        return None
    shown = ", ".join(listed[:8]) + (f" and {len(listed) - 8} more" if len(listed) > 8 else "")
    return f"installed packages changed since {name} (key {key}): {shown}"


#: the columns of a new trial's row, in the order of :func:`trial_row` (every backend inserts the same row)
TRIAL_COLUMNS = column_list("trials", at_end=False)


#: the columns of a new session's row, in the order of :func:`session_row`
SESSION_COLUMNS = column_list("sessions", at_end=False)


#: pytest's exit code for a session stopped by Ctrl-C or SIGTERM
INTERRUPTED = 2


def marks(columns: str, mark: str) -> str:
    """``mark, mark, ...``: one placeholder per column of ``columns``."""
    return ", ".join([mark] * (columns.count(",") + 1))


def session_row(session: NewSession, host: str) -> tuple[Any, ...]:
    """The values of a running session's row, in the order of :data:`SESSION_COLUMNS`."""
    row = {
        "key": session.key,
        "started": session.started if session.started is not None else time.time(),
        "command": session.command,
        "host": host,
        "pid": os.getpid(),
        "commit": session.commit,
        "dirty": int(session.dirty),
        "debug": int(session.debug),
        "status": "running",
    }
    return tuple(row[name] for name in names("sessions", at_end=False))


def session_end(exitstatus: int) -> tuple[str, int]:
    """``(status, exit status)`` of a session that ended: ``interrupted`` for Ctrl-C and SIGTERM, else ``ended``."""
    return ("interrupted" if int(exitstatus) == INTERRUPTED else "ended"), int(exitstatus)


def left_running(fetchall: Callable[[str, tuple[Any, ...]], Any], host: str) -> list[tuple[str, list[tuple[Any, ...]]]]:
    """The updates (``(sql, rows)`` for ``executemany``) that close what dead processes left running:
    their trials become ``interrupted``, their sessions ``died`` (see :func:`dead`), their beats go.

    For every backend, in SQLite's dialect like :func:`finish_warnings`; ``fetchall(sql, args)``
    runs one query. Empty when nothing was left running.
    """
    trials = fetchall(
        "SELECT t.key, t.pid, t.host, b.machine, b.beat FROM trials t "
        "LEFT JOIN beats b ON b.kind='trial' AND b.key=t.key WHERE t.status='running'",
        (),
    )
    sessions = fetchall(
        "SELECT s.key, s.pid, s.host, b.machine, b.beat FROM sessions s "
        "LEFT JOIN beats b ON b.kind='session' AND b.key=s.key WHERE s.status='running'",
        (),
    )
    # a session is alive while its own heartbeat or one of its trials' is (the xdist controller beats at each
    # trial's start and end; its workers' trials beat every few seconds in between)
    latest = dict(fetchall("SELECT session, MAX(beat) FROM beats WHERE kind='trial' GROUP BY session", ()))
    now, why = time.time(), "the session running this trial ended before it finished"
    gone_trials = [key for key, pid, where, mine, beat in trials if dead(pid, where, host, mine, beat, now)]
    gone_sessions = [
        key
        for key, pid, where, mine, beat in sessions
        if dead(pid, where, host, mine, max(beat or 0.0, latest.get(key) or 0.0) if mine is not None else None, now)
    ]
    updates: list[tuple[str, list[tuple[Any, ...]]]] = [
        (
            "UPDATE trials SET status='interrupted', ended=?, message=? WHERE key=? AND status='running'",
            [(now, why, key) for key in gone_trials],
        ),
        ("DELETE FROM beats WHERE kind='trial' AND key=?", [(key,) for key in gone_trials]),
        ("UPDATE sessions SET status=? WHERE key=? AND status='running'", [(DIED, key) for key in gone_sessions]),
        ("DELETE FROM beats WHERE kind='session' AND key=?", [(key,) for key in gone_sessions]),
    ]
    return [(sql, rows) for sql, rows in updates if rows]


#: a heartbeat: one row per running trial or session, replaced at every beat (SQLite's and PostgreSQL's upsert)
BEAT = (
    "INSERT INTO beats (kind, key, session, host, machine, pid, beat, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (kind, key) DO UPDATE SET beat=excluded.beat, state=excluded.state, pid=excluded.pid"
)


def beat_row(kind: str, key: str, session: str | None, host: str, state: dict[str, Any]) -> tuple[Any, ...]:
    """The values of :data:`BEAT` for a trial (``kind="trial"``) or a session, with its progress ``state``."""
    return (kind, key, session, host, process_mark(), os.getpid(), time.time(), json.dumps(state, default=str))


def environment_row(environment: dict[str, Any]) -> tuple[str, str]:
    """``(digest, json)`` of an environment: stored once, however many trials share it."""
    text = json.dumps(environment, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest(), text


def trial_row(trial: NewTrial, iteration: int | None, name: str, digest: str, host: str) -> tuple[Any, ...]:
    """The values of a running trial's row, in the order of :data:`TRIAL_COLUMNS`."""
    row = {
        "key": trial.key,
        "experiment": trial.experiment,
        "identity": trial.identity,
        "variants": trial.variants,
        "iteration": iteration,
        "name": name,
        "nodeid": trial.nodeid,
        "debug": int(trial.debug),
        "status": "running",
        "git": json.dumps(trial.git),
        "commit": trial.git.get("commit"),
        "seed": trial.seed,
        "environment": digest,
        "steps": json.dumps(trial.steps),
        "params": json.dumps(trial.params),
        "started": time.time(),
        "host": host,
        "pid": os.getpid(),
        "reproduces": trial.reproduces,
        "session": trial.session,
        "directions": json.dumps(trial.directions) if trial.directions is not None else None,
    }
    return tuple(row[column] for column in names("trials", at_end=False))


#: the experiment's trial before a finished one (its packages are compared): one lookup in the trials'
#: (experiment, started) index, whatever the number of trials (schema 6; before, a sort of them all)
PREVIOUS_IN_EXPERIMENT = (
    "SELECT t.name, t.key, e.environment, t.environment FROM trials t JOIN environments e ON e.digest = t.environment "
    "WHERE t.experiment=? AND t.debug=0 AND t.key<>? AND t.started<? ORDER BY t.started DESC LIMIT 1"
)

#: the identity's last passed trial before a finished one with the same commit and seed (non-determinism)
SAME_INPUTS_BEFORE = (
    'SELECT name, key, main FROM trials WHERE experiment=? AND identity=? AND "commit" IS ? AND seed IS ? '
    "AND status='passed' AND debug=0 AND key<>? AND started<? ORDER BY started DESC LIMIT 1"
)


def finish_warnings(fetchone: Callable[[str, tuple[Any, ...]], Any], key: str, status: str, main: Any) -> list[str]:
    """What a finished trial tells a researcher beyond its outcome, for every backend: the packages
    that changed since the experiment's previous trial, and a different main for the same
    parameters, commit and seed (non-determinism).

    ``fetchone(sql, args)`` runs one query and returns its first row. The queries are written
    with SQLite's ``?`` and ``IS ?`` (equal, NULL included); a backend with another dialect
    translates them (PostgreSQL: ``%s``, ``IS NOT DISTINCT FROM``).
    """
    this = fetchone(
        'SELECT experiment, identity, "commit", seed, environment, started, debug FROM trials WHERE key=?', (key,)
    )
    if this is None or this[6]:
        return []
    experiment, identity, commit, seed, digest, started, _ = this
    found: list[str] = []
    previous = fetchone(PREVIOUS_IN_EXPERIMENT, (experiment, key, started))
    if previous is not None and previous[3] != digest:
        (current,) = fetchone("SELECT environment FROM environments WHERE digest=?", (digest,))
        changed = package_warning(previous[0], previous[1], previous[2], current)
        if changed:
            found.append(changed)
    if status == "passed":
        same = fetchone(SAME_INPUTS_BEFORE, (experiment, identity, commit, seed, key, started))
        if same is not None and json.loads(same[2]) != main:
            found.append(
                f"non-determinism: {same[0]} (key {same[1]}) had the same parameters, commit and seed "
                f"but main = {json.loads(same[2])!r}; this trial's main = {main!r}"
            )
    return found


def _refusal(status: str, debug: int, reproduces: str | None, main: Any, verdict: str | None, message: str) -> str:
    """Why a trial cannot become a baseline; empty when it can (it failed the drift gate, and only that)."""
    if status == "running":
        return "it is still running (python -m pytest_mitosis status shows whether its session lives)."
    if status == "interrupted":
        return "it was interrupted, so its results are incomplete; run it again."
    if debug:
        return "it is a debug trial (--mitosis-debug), and the drift gate never compares with debug trials."
    if reproduces:
        return f"it reproduces trial {reproduces}; a reproduction is compared with its record, never a baseline."
    if status == "passed":
        return (
            "it passed, so the drift gate already compares the next trial of its identity with it (or with a "
            "newer passed trial); there is nothing to accept."
        )
    if main is None:
        return "it has no main (it failed before its steps returned), so there is no result to accept."
    first = message.strip().splitlines()[0] if message.strip() else ""
    if verdict == "refuted" or GATE_FAILED not in first:
        return (
            f"it failed for another reason than the drift gate ({first or 'no message'}). Only a trial that ran "
            "to its end and failed only the drift gate can become the baseline: fix the cause and run it again."
        )
    return ""


def accept_trial(
    fetchone: Callable[[str, tuple[Any, ...]], Any],
    execute: Callable[[str, tuple[Any, ...]], Any],
    key: str,
    by: str,
    host: str,
    reason: str,
) -> Acceptance:
    """Make the trial ``key`` (full key) the drift gate's baseline for its identity, in the caller's
    transaction (queries in SQLite's dialect, as :func:`finish_warnings`). Idempotent: a trial
    accepted before is returned with ``already=True``. ``NotAcceptable`` says why a trial cannot be
    (a newer baseline of the identity, too: the gate compares with the newest)."""
    row = fetchone(
        "SELECT name, experiment, identity, status, debug, reproduces, main, verdict, message, started "
        "FROM trials WHERE key=?",
        (key,),
    )
    if row is None:
        raise NotAcceptable(f"mitosis: no trial has the key {key!r}.")
    name, experiment, identity, status, debug, reproduces, main, verdict, message, started = row
    done = fetchone(
        "SELECT accepted, accepted_by, accepted_host, reason, baseline FROM acceptances WHERE trial=?", (key,)
    )
    if done is not None:
        return Acceptance(key, name, float(done[0]), done[1], done[2], done[3], done[4], already=True)
    why = _refusal(status, debug, reproduces, json.loads(main) if main is not None else None, verdict, message or "")
    if why:
        raise NotAcceptable(f"mitosis: trial {name} (key {key}) cannot be accepted: {why}")
    where = (
        "FROM trials t WHERE t.experiment=? AND t.identity=? AND t.debug=0 AND t.reproduces IS NULL "
        "AND (t.status='passed' OR EXISTS (SELECT 1 FROM acceptances a WHERE a.trial = t.key)) "
    )
    newer = fetchone(
        f"SELECT t.name, t.key {where} AND t.started > ? ORDER BY t.started LIMIT 1", (experiment, identity, started)
    )
    if newer is not None:
        raise NotAcceptable(
            f"mitosis: trial {name} (key {key}) cannot be accepted: a newer trial of its identity, {newer[0]} "
            f"(key {newer[1]}), is the drift gate's baseline (the gate compares with the newest passed or accepted "
            "trial). Accept a trial newer than it, or run the identity again."
        )
    older = fetchone(
        f"SELECT t.key {where} AND t.started < ? ORDER BY t.started DESC LIMIT 1", (experiment, identity, started)
    )
    when = time.time()
    baseline_key = older[0] if older is not None else None
    execute(
        "INSERT INTO acceptances (trial, accepted, accepted_by, accepted_host, reason, baseline) VALUES (?, ?, ?, ?, ?, ?)",
        (key, when, by, host, reason, baseline_key),
    )
    return Acceptance(key, name, when, by, host, reason, baseline_key)
