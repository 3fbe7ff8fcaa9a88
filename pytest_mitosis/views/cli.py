"""``python -m pytest_mitosis`` (also ``pytest-mitosis``): history, best, status, show, diff, report, compare,
backup, accept, migrate.

Answers *why did this result change?* from the store alone: it never unpickles anything and
never runs user code. Only ``accept`` (one row: a trial made the drift gate's baseline), ``backup``
and ``migrate`` write, each into the store named. The texts of ``show`` and ``diff`` (and the one command run, ``git diff
--name-status``, with its safeguards) are in :mod:`.records_text`, which the report shares.
Every table cell passes through :func:`pytest_mitosis.store.cell` (one line, escapes visible), and
everything printed through :func:`pytest_mitosis.store.printable`. No pytest import here.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ..core.rules import Directions
from ..store import (
    FILENAME,
    NoMatch,
    NotAcceptable,
    Reader,
    RecordsError,
    StoreError,
    StoreURL,
    TrialRecord,
    cell,
    default_store,
    default_trials_folder,
    job_short,
    make_store,
    printable,
)
from .best_text import AGGREGATES, best
from .records_text import diff_records, short, show_record


def _table(rows: list[list[str]]) -> str:
    """Columns padded to their widest cell; every cell through :func:`cell`, so that a row is always one line."""
    rows = [[cell(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def host(reader: Reader, record: TrialRecord) -> str:
    """The host the trial ran on (its environment record's ``hostname``; xdist workers on other hosts included)."""
    return str(reader.environment(record).get("hostname") or "-")


def _as_json(reader: Reader, records: list[TrialRecord]) -> list[dict[str, object]]:
    return [
        {
            "key": r.key,
            "experiment": r.experiment,
            "variants": r.variants,
            "iteration": r.iteration,
            "status": r.status,
            "main": r.main,
            "seed": r.seed,
            "commit": r.commit,
            "host": host(reader, r),
            "debug": r.debug,
            "name": r.name,
            "started": r.started.isoformat(timespec="seconds"),
            "reproduces": r.reproduces,
            "directions": r.directions,
            "verdict": r.verdict,
            "session": r.session,
            "accepted": r.to_dict()["accepted"],
            "job": r.job,
        }
        for r in records
    ]


def _better(record: TrialRecord) -> str:
    """The directions the trial recorded, in a word or a few (``-``: recorded before directions were)."""
    directions = Directions.from_json(record.directions)
    return directions.short() if directions is not None else "-"


def _trial_table(reader: Reader, records: list[TrialRecord]) -> str:
    reproductions = any(r.reproduces for r in records)
    # the "better" column only when a trial was judged other than by the default (lower is better, every metric)
    better = any(_better(r) not in ("-", "lower") for r in records)
    jobs = any(r.job for r in records)  # the "job" column only when a listed trial ran as a batch job
    rows = [
        ["key", "experiment", "variants", "iteration", "status", "main", "seed", "commit", "host"]
        + (["job"] if jobs else [])
        + ["date"]
        + (["reproduces"] if reproductions else [])
        + (["better"] if better else [])
    ]
    for r in records:
        rows.append(
            [
                r.key,
                r.experiment,
                r.variants or "-",
                "debug" if r.debug else str(r.iteration),
                f"{r.status} (accepted)" if r.accepted else r.status,
                short(r.main, 24),
                str(r.seed),
                (r.commit or "-")[:8],
                host(reader, r),
                *([job_short(r.job) or "-"] if jobs else []),
                r.started.strftime("%Y-%m-%d %H:%M"),
            ]
            + ([f"{r.reproduces} ({r.verdict or r.status})" if r.reproduces else "-"] if reproductions else [])
            + ([_better(r)] if better else [])
        )
    return _table(rows)


def history(reader: Reader, experiment: str | None, as_json: bool, debug: bool, below: Path | None = None) -> str:
    """One row per trial; for an empty store read by default, the stores one level ``below`` that hold trials."""
    records = reader.trials(experiment, debug=debug)
    if as_json:
        return json.dumps(_as_json(reader, records), indent=2)
    if not records:
        everything = reader.trials(experiment, debug=True)
        hidden = "" if debug else " (debug trials are listed with --debug)" if everything else ""
        elsewhere = stores_below(below) if below is not None and not everything and experiment is None else ""
        return (
            f"no trials{' of experiment ' + repr(experiment) if experiment else ''} in {reader.location}{hidden}"
            f"{elsewhere}"
        )
    return _trial_table(reader, records)


def stores_below(folder: Path) -> str:
    """Lines naming the stores one level down (in a subfolder of the trials folder or of the current directory,
    such as ``trials/debug`` of a run with ``--mitosis-trials-folder trials/debug``) that hold trials, with
    the command that reads each: a store found empty or missing is often just the wrong folder."""
    here = Path.cwd()
    own = folder / FILENAME
    candidates = sorted({*folder.glob(f"*/{FILENAME}"), *here.glob(f"*/{FILENAME}")} - {own})
    lines = []
    for path in candidates:
        try:
            with Reader(path.parent) as reader:
                count = len(reader.trials(debug=True))
        except (RecordsError, OSError):
            continue  # not a store we can read: not worth pointing to
        if count:
            relative = os.path.relpath(path.parent, here)
            shown = relative if not relative.startswith("..") else str(path.parent)
            lines.append(
                f"{path} holds {count} trial{'s' if count > 1 else ''}: "
                f"python -m pytest_mitosis --trials-folder {shlex.quote(shown)} history"
            )
    return "".join(f"\n{line}" for line in lines)


def sessions(reader: Reader, key: str, as_json: bool) -> str:
    """``history --session``: every session (``key`` empty), or the session ``key`` and its trials."""
    from .sessions_text import session_list, session_trials

    if not key:
        return session_list(reader, as_json, _table)
    render = (lambda r: _as_json(reader, r)) if as_json else (lambda r: _trial_table(reader, r))
    return session_trials(reader, key, as_json, render)


def show(reader: Reader, key: str, packages: bool = False, as_json: bool = False) -> str:
    """Everything recorded about the trial with this key (or unique prefix); else the session with it.
    ``packages`` lists the installed packages (else only their count); ``as_json``: the record as
    ``load_trials`` gives it (``TrialRecord.to_dict``), with its host."""
    try:
        record = reader.get(key)
    except NoMatch as err:
        try:
            return sessions(reader, key, as_json=as_json)
        except RecordsError:
            raise err from None
    if as_json:
        return json.dumps({**record.to_dict(), "host": host(reader, record)}, indent=2, default=str)
    return show_record(reader, record, packages)


def diff(reader: Reader, key1: str, key2: str, files: bool = True) -> str:
    """Why two trials differ; ``files`` lists the files changed between their commits (runs git)."""
    return diff_records(reader, reader.get(key1), reader.get(key2), files)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_mitosis", description="Browse the trials that pytest --mitosis recorded."
    )
    folder_help = "trials folder (default: that of ./pyproject.toml, else ./trials)"
    store_help = (
        "store URL: sqlite:///PATH or postgresql://USER@HOST/DB (default: store of [tool.mitosis] in "
        "./pyproject.toml, else the trials folder's mitosis.sqlite)"
    )
    parser.add_argument("--trials-folder", type=Path, default=None, metavar="DIR", help=folder_help)
    parser.add_argument("--store", default=None, metavar="URL", help=store_help)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        # accepted after the subcommand too; SUPPRESS keeps a value given before it
        sub.add_argument("--trials-folder", type=Path, default=argparse.SUPPRESS, metavar="DIR", help=folder_help)
        sub.add_argument("--store", default=argparse.SUPPRESS, metavar="URL", help=store_help)
        return sub

    p_history = command("history", "one row per trial, newest first")
    p_history.add_argument("experiment", nargs="?")
    p_history.add_argument("--json", action="store_true", help="print a JSON list")
    p_history.add_argument("--debug", action="store_true", help="include debug trials")
    p_history.add_argument(
        "--session",
        nargs="?",
        const="",
        default=None,
        metavar="KEY",
        help="list the pytest sessions, newest first; with KEY (or a unique prefix), that session's trials",
    )
    p_best = command("best", "the best passed trial per identity at one commit, or main grouped by one parameter")
    p_best.add_argument("experiment", nargs="?", help="the experiment (optional when the store holds only one)")
    p_best.add_argument(
        "--by", default=None, metavar="PARAM", help="one row per value of this parameter (param or step.param)"
    )
    p_best.add_argument(
        "--agg", choices=sorted(AGGREGATES), default="mean", help="main over the other parameters (with --by; mean)"
    )
    p_best.add_argument("--commit", default=None, metavar="REV", help="the trials of this commit (or a prefix of it)")
    p_best.add_argument("--all", dest="every", action="store_true", help="the trials of every commit")
    p_best.add_argument("--json", action="store_true", help="print JSON")
    p_status = command("status", "the trials running now, across sessions and hosts, with their progress")
    p_status.add_argument("--json", action="store_true", help="print JSON")
    p_status.add_argument(
        "--watch", nargs="?", const=2.0, type=float, default=None, metavar="SECONDS", help="refresh (every 2 s)"
    )
    p_show = command("show", "everything recorded about one trial")
    p_show.add_argument("key", help="a trial key (or a session key), or a unique prefix of one")
    p_show.add_argument("--packages", action="store_true", help="list the installed packages (else their count)")
    p_show.add_argument("--json", action="store_true", help="print the trial's record as JSON")
    p_accept = command("accept", "make a trial that failed the drift gate the baseline of its identity (recorded)")
    p_accept.add_argument("key", help="the trial's key, or a unique prefix of it")
    p_accept.add_argument("-m", "--reason", default="", help="why its value is right (recorded, shown by show)")
    p_diff = command("diff", "why two trials differ: code, parameters, environment, seed")
    p_diff.add_argument("key1")
    p_diff.add_argument("key2")
    p_report = command("report", "write a static site of every trial (no server needed)")
    p_report.add_argument("-o", "--output", type=Path, default=None, help="folder (default: <trials folder>/report)")
    p_report.add_argument("--debug", action="store_true", help="include debug trials")
    p_compare = command("compare", "write the report's page comparing two or more trials; print its path")
    p_compare.add_argument("keys", nargs="+", metavar="KEY", help="trial keys, or unique prefixes of them")
    p_compare.add_argument(
        "-o", "--output", type=Path, default=None, help="report folder (default: <trials folder>/report)"
    )
    p_backup = command("backup", "copy the store into DEST with SQLite's online backup (safe while sessions run)")
    p_backup.add_argument("dest", type=Path, help="a new file, or an existing folder (the copy is DEST/mitosis.sqlite)")
    p_migrate = commands.add_parser(
        "migrate", help="copy a store into another (e.g. SQLite to PostgreSQL): keys, iterations, locks kept"
    )
    p_migrate.add_argument("--from", dest="source", required=True, metavar="URL", help="the store to copy (read only)")
    p_migrate.add_argument("--to", dest="dest", required=True, metavar="URL", help="the store to copy into")
    return parser


def _run(args: argparse.Namespace) -> str | None:
    """The command's output for the terminal, or ``None`` when the command failed (said on stderr)."""
    if args.command == "migrate":
        from ..store.migrate import copy_store

        return copy_store(args.source, args.dest)
    folder = args.trials_folder.resolve() if args.trials_folder else default_trials_folder()
    # a folder named on the command line is read with its own mitosis.sqlite unless --store says otherwise
    store = args.store if args.store is not None else None if args.trials_folder else default_store()
    try:
        opened = Reader(folder, store)
    except RecordsError as err:
        missing = store is None and args.command == "history" and not (folder / FILENAME).exists()
        raise RecordsError(f"{err}{stores_below(folder) if missing else ''}") from None
    with opened as reader:
        if args.command == "history":
            if args.session is not None:
                if args.experiment is not None:
                    raise RecordsError(
                        f"history --session lists sessions, not the trials of an experiment; drop {args.experiment!r}."
                    )
                return sessions(reader, args.session, args.json)
            if args.experiment is not None and args.experiment not in reader.experiments():
                known = ", ".join(reader.experiments()) or "(none yet)"
                print(
                    printable(
                        f"pytest-mitosis: no experiment {args.experiment!r} in {reader.location}; its experiments: {known}"
                    ),
                    file=sys.stderr,
                )
                return None
            return history(reader, args.experiment, args.json, args.debug, folder if store is None else None)
        if args.command == "best":
            from .report.build import directions

            return best(
                reader, args.experiment, args.by, args.agg, args.commit, args.every, args.json,
                directions(folder), _table,
            )  # fmt: skip
        if args.command == "status":
            from .status_text import status

            if args.watch is None:
                return status(reader, args.json, _table)
            while True:  # until Ctrl-C
                text = printable(status(reader, args.json, _table))
                print(f"\x1b[H\x1b[2J{text}" if sys.stdout.isatty() else text, flush=True)
                time.sleep(max(0.5, args.watch))
        if args.command == "show":
            return show(reader, args.key, args.packages, args.json)
        if args.command == "diff":
            return diff(reader, args.key1, args.key2)
        if args.command == "backup":
            return f"backup: {reader.backup(args.dest.resolve())}"
        if args.command == "accept":
            key = reader.get(args.key).key  # a prefix resolved, or the candidates listed, before anything is written
    if args.command == "accept":
        return accept(folder, store, key, args.reason)
    if args.command == "compare":
        return compare(folder, args.keys, args.output, store)
    from .report import build

    return f"report: {build(folder, args.output, debug=args.debug, store=store)}"


def accept(folder: Path, store: str | StoreURL | None, key: str, reason: str) -> str:
    """``accept KEY``: record the trial (which failed the drift gate) as its identity's baseline."""
    try:
        writer = make_store(store, folder)
    except StoreError as err:
        raise RecordsError(str(err).removeprefix("mitosis: ")) from None
    try:
        done = writer.accept(key, _user(), socket.gethostname(), reason)  # type: ignore[attr-defined]
    except (NotAcceptable, StoreError) as err:
        raise RecordsError(str(err).removeprefix("mitosis: ")) from None
    except AttributeError:
        raise RecordsError(f"the store {store} does not record acceptances (a plugin's backend).") from None
    finally:
        writer.close()
    when = datetime.fromtimestamp(done.accepted).strftime("%Y-%m-%d %H:%M")
    why = f": {done.reason}" if done.reason else ""
    if done.already:
        return (
            f"accept: trial {done.name} (key {key}) was accepted on {when} by {done.accepted_by}{why}; nothing changed."
        )
    replaced = f", in place of {done.baseline}" if done.baseline else ""
    return (
        f"accept: trial {done.name} (key {key}) is now the drift gate's baseline for its identity{replaced}; "
        f"recorded on {when} by {done.accepted_by}@{done.accepted_host}{why}. The next trial of this identity is "
        "compared with it."
    )


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no passwd entry for this uid (a container)
        return str(os.getuid())


def compare(folder: Path, keys: list[str], output: Path | None, store: str | StoreURL | None = None) -> str:
    """``compare KEY KEY ...``: refresh the report, write the compare page, say where it is."""
    if len(set(keys)) < 2:
        raise RecordsError(f"compare needs two or more different trial keys; got {' '.join(keys) or 'none'}.")
    from .report import compare as write_compare

    return f"compare: {write_compare(folder, keys, output, store)}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        text = _run(args)
        if text is None:
            return 1
        print(printable(text))
        sys.stdout.flush()
    except BrokenPipeError:
        # the reader stopped reading (``| head -1``): quiet, like any Unix tool, and no second
        # error when Python flushes stdout at exit
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141  # 128 + SIGPIPE, what a shell reports for a tool killed by a closed pipe
    except RecordsError as err:
        print(printable(f"pytest-mitosis: {err}"), file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # status --watch ends with Ctrl-C
        return 130
    except OSError as err:  # an unwritable report folder, a full disk
        print(printable(f"pytest-mitosis: {err.strerror or err}: {err.filename or ''}"), file=sys.stderr)
        return 2
    return 0
