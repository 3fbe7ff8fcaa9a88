"""``python -m pytest_mitosis`` (also ``pytest-mitosis``): history, show and diff of trials.

Answers *why did this result change?* from the store alone: it never unpickles anything and
never runs user code (``git diff --name-only`` is the only command it runs, to list the files
changed between two commits). No pytest import here.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from ..store import Reader, RecordsError, default_trials_folder
from .records_text import diff_records, short, show_record


def _table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def history(reader: Reader, experiment: str | None, as_json: bool, debug: bool) -> str:
    records = reader.trials(experiment, debug=debug)
    if as_json:
        return json.dumps(
            [
                {
                    "key": r.key, "experiment": r.experiment, "variants": r.variants, "iteration": r.iteration,
                    "status": r.status, "main": r.main, "seed": r.seed, "commit": r.commit, "debug": r.debug,
                    "name": r.name, "started": r.started.isoformat(timespec="seconds"),
                }
                for r in records
            ],
            indent=2,
        )
    if not records:
        return f"no trials{' of experiment ' + repr(experiment) if experiment else ''} in {reader.path}"
    rows = [["key", "experiment", "variants", "iteration", "status", "main", "seed", "commit", "date"]]
    for r in records:
        rows.append([
            r.key, r.experiment, r.variants or "-", "debug" if r.debug else str(r.iteration), r.status,
            short(r.main, 24), str(r.seed), (r.commit or "-")[:8], r.started.strftime("%Y-%m-%d %H:%M"),
        ])
    return _table(rows)


def show(reader: Reader, key: str) -> str:
    """Everything recorded about the trial with this key (or unique prefix)."""
    return show_record(reader, reader.get(key))


def diff(reader: Reader, key1: str, key2: str, files: bool = True) -> str:
    """Why two trials differ; ``files`` lists the files changed between their commits (runs git)."""
    return diff_records(reader, reader.get(key1), reader.get(key2), files)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_mitosis", description="Browse the trials that pytest --mitosis recorded."
    )
    parser.add_argument("--trials-folder", type=Path, default=None,
                        help="trials folder (default: that of ./pyproject.toml, else ./trials)")
    commands = parser.add_subparsers(dest="command", required=True)
    p_history = commands.add_parser("history", help="one row per trial, newest first")
    p_history.add_argument("experiment", nargs="?")
    p_history.add_argument("--json", action="store_true", help="print a JSON list")
    p_history.add_argument("--debug", action="store_true", help="include debug trials")
    p_show = commands.add_parser("show", help="everything recorded about one trial")
    p_show.add_argument("key", help="a trial key, or a unique prefix of one")
    p_diff = commands.add_parser("diff", help="why two trials differ: code, parameters, environment, seed")
    p_diff.add_argument("key1")
    p_diff.add_argument("key2")
    p_report = commands.add_parser("report", help="write a static site of every trial (no server needed)")
    p_report.add_argument("-o", "--output", type=Path, default=None, help="folder (default: <trials folder>/report)")
    p_report.add_argument("--debug", action="store_true", help="include debug trials")
    args = parser.parse_args(argv)
    try:
        folder = args.trials_folder.resolve() if args.trials_folder else default_trials_folder()
        reader = Reader(folder)
        if args.command == "history":
            print(history(reader, args.experiment, args.json, args.debug))
        elif args.command == "show":
            print(show(reader, args.key))
        elif args.command == "diff":
            print(diff(reader, args.key1, args.key2))
        else:
            from .report import build

            print(f"report: {build(folder, args.output, debug=args.debug)}")
    except RecordsError as err:
        print(f"pytest-mitosis: {err}", file=sys.stderr)
        return 2
    except OSError as err:  # an unwritable report folder, a full disk
        print(f"pytest-mitosis: {err.strerror or err}: {err.filename or ''}", file=sys.stderr)
        return 2
    return 0
