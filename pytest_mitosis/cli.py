"""``python -m pytest_mitosis`` (also ``pytest-mitosis``): history, show, diff, report and backup.

Answers *why did this result change?* from the store alone: it never unpickles anything and
never runs user code. ``git diff --name-status`` is the only command it runs, to list the files
changed between two commits: in the current directory's repository (never in a directory the
store names), with commits checked as hex object names and passed after ``--end-of-options``,
and with repository settings that run commands (fsmonitor, external diff, textconv) switched
off. Everything printed passes through :func:`records.printable`. No pytest import here.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .environment import package_changes
from .gates import series_points
from .records import Reader, RecordsError, TrialRecord, default_trials_folder, printable, valid_commit


def _short(value: Any, limit: int = 60) -> str:
    points = series_points(value)
    if points is not None:
        last = value[-1] if isinstance(value, list) else value["value"][-1]
        at = "" if isinstance(value, list) else f" at step {value['step'][-1]!r}"
        return f"series of {len(points)} points, last {last!r}{at}"
    text = "-" if value is None else repr(value) if not isinstance(value, str) else value
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
                    "reproduces": r.reproduces, "verdict": r.verdict,
                }
                for r in records
            ],
            indent=2,
        )
    if not records:
        hidden = "" if debug else f" (debug trials are listed with --debug)" if reader.trials(experiment, debug=True) else ""
        return f"no trials{' of experiment ' + repr(experiment) if experiment else ''} in {reader.path}{hidden}"
    reproductions = any(r.reproduces for r in records)
    rows = [["key", "experiment", "variants", "iteration", "status", "main", "seed", "commit", "date"]
            + (["reproduces"] if reproductions else [])]
    for r in records:
        rows.append([
            r.key, r.experiment, r.variants or "-", "debug" if r.debug else str(r.iteration), r.status,
            _short(r.main, 24), str(r.seed), (r.commit or "-")[:8], r.started.strftime("%Y-%m-%d %H:%M"),
        ] + ([f"{r.reproduces} ({r.verdict or r.status})" if r.reproduces else "-"] if reproductions else []))
    return _table(rows)


def _param_lines(record: TrialRecord) -> list[str]:
    lines = []
    for p in record.params:
        if p["kind"] == "lookup":
            how = f"variant {p['text']!r}"
        elif p["kind"] == "eval":
            how = f"eval {p['text']!r}"
        else:
            how = "trial seed"
        tracked = "" if p["tracked"] or p["kind"] == "seed" else "  (untracked)"
        lines.append(f"  {p['step']}.{p['name']} = {p.get('repr', p.get('value'))}   [{how}]{tracked}")
    return lines or ["  (every parameter at its default)"]


def show(reader: Reader, key: str) -> str:
    """Everything recorded about the trial with this key (or unique prefix)."""
    return show_record(reader, reader.get(key))


def show_record(reader: Reader, r: TrialRecord) -> str:
    env = reader.environment(r)
    python = env.get("python", {})
    platform = env.get("platform", {})
    lines = [
        f"trial {r.name} (key {r.key}){'  DEBUG' if r.debug else ''}",
        f"experiment: {r.experiment}   steps: {', '.join(s['name'] + ' = ' + s['function'] for s in r.steps)}",
        f"status: {r.status}   main: {_short(r.main)}",
        f"started: {r.started.isoformat(timespec='seconds')}   ended: {r.ended.isoformat(timespec='seconds') if r.ended else '-'}",
        f"seed: {r.seed}",
        *([f"reproduces: trial {r.reproduces} ({r.verdict or 'not judged: ' + r.status})"] if r.reproduces else []),
        f"commit: {r.commit or '-'}   branch: {r.git.get('branch') or '-'}   remote: {r.git.get('remote') or '-'}",
        "parameters:",
        *_param_lines(r),
        "metrics:" if r.metrics else "metrics: none",
        *[f"  {k} = {_short(v)}" for k, v in r.metrics.items()],
        "environment:",
        f"  python {python.get('version', '?')} ({python.get('implementation', '?')}) {python.get('executable', '')}",
        f"  platform {platform.get('platform', '?')}   cpu {env.get('cpu', {}).get('model', '?')} "
        f"x{env.get('cpu', {}).get('count', '?')}   host {env.get('hostname', '?')}",
        f"  gpus: {', '.join(env.get('gpus') or []) or 'none'}",
        f"  env: {', '.join(f'{k}={v}' for k, v in (env.get('env') or {}).items()) or 'none recorded'}",
        *[f"  {k}: {json.dumps(v)}" for k, v in env.items()
          if k not in ("python", "platform", "cpu", "hostname", "packages", "env", "gpus", "git")],
        f"  packages ({len(env.get('packages', {}))}):",
        *[f"    {n} {v}" for n, v in (env.get("packages") or {}).items()],
        "artifacts:",
    ]
    if r.folder:
        folder = reader.artifacts(r)  # only ever inside the trials folder
        if folder is not None:
            lines += [f"  {folder}", *[f"    {p.name}" for p in sorted(folder.iterdir())]]
        else:
            lines.append(f"  {r.folder} (not found inside {reader.folder})")
    else:
        lines.append("  none (the trial did not finish)")
    if r.message:
        lines += ["message:", *[f"  {line}" for line in r.message.splitlines()]]
    if r.warnings:
        lines += ["warnings:", *[f"  {w}" for w in r.warnings]]
    return "\n".join(lines)


def _changed_files(old: str, new: str) -> str:
    """The files changed between two recorded commits, from the current directory's repository."""
    for commit in (old, new):
        if not valid_commit(commit):
            return f"    (the recorded commit {printable(repr(commit))} is not a git object name: not passed to git)"
    try:
        done = subprocess.run(
            ["git", "-c", "core.fsmonitor=false", "--no-pager", "diff", "--no-ext-diff", "--no-textconv",
             "--name-status", "--end-of-options", old, new],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError) as err:
        return f"    (git could not list the files: {err})"
    if done.returncode != 0:
        return f"    (git could not list the files: {done.stderr.strip()}; run diff inside the repository)"
    return "\n".join(f"    {line}" for line in done.stdout.splitlines()) or "    (no file differs)"


def _named(p: dict[str, Any]) -> str:
    """A variant as ``name = value``; an eval param whose expression is its value, once."""
    text, value = str(p.get("text")), p.get("repr")
    return text if value is None or str(value) == text else f"{text} = {value}"


def diff(reader: Reader, key1: str, key2: str, files: bool = True) -> str:
    """Why two trials differ; ``files`` lists the files changed between their commits (runs git)."""
    return diff_records(reader, reader.get(key1), reader.get(key2), files)


def diff_records(reader: Reader, a: TrialRecord, b: TrialRecord, files: bool = True) -> str:
    lines = [f"{a.name} (key {a.key})  vs  {b.name} (key {b.key})", ""]
    # code
    if a.commit == b.commit:
        lines.append(f"code: identical (commit {(a.commit or '-')[:12]})")
    else:
        lines.append(f"code: commit {(a.commit or '-')[:12]} -> {(b.commit or '-')[:12]}")
        if files:
            lines.append("  files changed:")
            lines.append(_changed_files(a.commit, b.commit) if a.commit and b.commit else "    (a trial has no commit)")
    sub_a, sub_b = a.git.get("submodules") or {}, b.git.get("submodules") or {}
    for path in sorted(set(sub_a) | set(sub_b)):
        if sub_a.get(path) != sub_b.get(path):
            lines.append(f"  submodule {path}: {(sub_a.get(path) or '-')[:12]} -> {(sub_b.get(path) or '-')[:12]}")
    # parameters
    pa = {(p["step"], p["name"]): p for p in a.params if p["kind"] != "seed"}
    pb = {(p["step"], p["name"]): p for p in b.params if p["kind"] != "seed"}
    changes = []
    for k in sorted(set(pa) | set(pb)):
        x, y = pa.get(k), pb.get(k)
        if x is None or y is None:
            changes.append(f"  {k[0]}.{k[1]}: {'only in ' + (a.key if y is None else b.key)}")
        elif x.get("fingerprint") != y.get("fingerprint") or x["text"] != y["text"] or x.get("repr") != y.get("repr"):
            changes.append(f"  {k[0]}.{k[1]}: {_named(x)}  ->  {_named(y)}")
    lines += ["", "parameters: identical" if not changes else "parameters:", *changes]
    if a.experiment != b.experiment:
        lines.append(f"  experiment: {a.experiment} -> {b.experiment}")
    # environment
    ea, eb = reader.environment(a), reader.environment(b)
    env_changes = []
    for part in ("python", "platform", "cpu", "gpus", "env", "hostname"):
        if ea.get(part) != eb.get(part):
            env_changes.append(f"  {part}: {json.dumps(ea.get(part))} -> {json.dumps(eb.get(part))}")
    packages = package_changes(ea.get("packages", {}), eb.get("packages", {}))
    for kind in ("added", "removed", "changed"):
        env_changes += [f"  package {kind}: {p}" for p in packages[kind]]
    extra = sorted((set(ea) | set(eb)) - {"python", "platform", "cpu", "gpus", "env", "hostname", "packages", "git"})
    env_changes += [f"  {k}: {json.dumps(ea.get(k))} -> {json.dumps(eb.get(k))}" for k in extra if ea.get(k) != eb.get(k)]
    lines += ["", "environment: identical" if not env_changes else "environment:", *env_changes]
    # seed
    lines += ["", f"seed: identical ({a.seed})" if a.seed == b.seed else f"seed: {a.seed} -> {b.seed}"]
    # results
    lines += ["", "results:", f"  main: {_short(a.main)} -> {_short(b.main)}" + (" (identical)" if a.main == b.main else "")]
    for k in sorted((set(a.metrics) | set(b.metrics)) - {"main"}):  # main is shown once, above
        same = a.metrics.get(k) == b.metrics.get(k)
        lines.append(f"  {k}: {_short(a.metrics.get(k))} -> {_short(b.metrics.get(k))}" + (" (identical)" if same else ""))
    if a.status != b.status:
        lines.append(f"  status: {a.status} -> {b.status}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pytest_mitosis", description="Browse the trials that pytest --mitosis recorded."
    )
    folder_help = "trials folder (default: that of ./pyproject.toml, else ./trials)"
    parser.add_argument("--trials-folder", type=Path, default=None, metavar="DIR", help=folder_help)
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help)
        # accepted after the subcommand too; SUPPRESS keeps a value given before it
        sub.add_argument("--trials-folder", type=Path, default=argparse.SUPPRESS, metavar="DIR", help=folder_help)
        return sub

    p_history = command("history", "one row per trial, newest first")
    p_history.add_argument("experiment", nargs="?")
    p_history.add_argument("--json", action="store_true", help="print a JSON list")
    p_history.add_argument("--debug", action="store_true", help="include debug trials")
    p_show = command("show", "everything recorded about one trial")
    p_show.add_argument("key", help="a trial key, or a unique prefix of one")
    p_diff = command("diff", "why two trials differ: code, parameters, environment, seed")
    p_diff.add_argument("key1")
    p_diff.add_argument("key2")
    p_report = command("report", "write a static site of every trial (no server needed)")
    p_report.add_argument("-o", "--output", type=Path, default=None, help="folder (default: <trials folder>/report)")
    p_report.add_argument("--debug", action="store_true", help="include debug trials")
    p_backup = command("backup", "copy the store into DEST with SQLite's online backup (safe while sessions run)")
    p_backup.add_argument("dest", type=Path, help="a new file, or an existing folder (the copy is DEST/mitosis.sqlite)")
    return parser


def _run(args: argparse.Namespace) -> str | None:
    """The command's output for the terminal, or ``None`` when the command failed (said on stderr)."""
    folder = args.trials_folder.resolve() if args.trials_folder else default_trials_folder()
    with Reader(folder) as reader:
        if args.command == "history":
            if args.experiment is not None and args.experiment not in reader.experiments():
                known = ", ".join(reader.experiments()) or "(none yet)"
                print(printable(f"pytest-mitosis: no experiment {args.experiment!r} in {reader.path}; its experiments: "
                                f"{known}"), file=sys.stderr)
                return None
            return history(reader, args.experiment, args.json, args.debug)
        if args.command == "show":
            return show(reader, args.key)
        if args.command == "diff":
            return diff(reader, args.key1, args.key2)
        if args.command == "backup":
            return f"backup: {reader.backup(args.dest.resolve())}"
    from .report import build

    return f"report: {build(folder, args.output, debug=args.debug)}"


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
    except OSError as err:  # an unwritable report folder, a full disk
        print(printable(f"pytest-mitosis: {err.strerror or err}: {err.filename or ''}"), file=sys.stderr)
        return 2
    return 0
