"""One trial, or why two trials differ, as plain text: ``show`` and ``diff`` of the command line.

Shared by the command line (:mod:`.cli`) and the report's trial pages (:mod:`.report`). Reads
records through the store's :class:`~pytest_mitosis.store.Reader` only. ``git diff
--name-status`` is the only command it runs, to list the files changed between two commits: in
the current directory's repository (never in a directory the store names), with commits
checked as hex object names and passed after ``--end-of-options``, and with repository
settings that run commands (fsmonitor, external diff, textconv) switched off. Every recorded
value shown passes through :func:`pytest_mitosis.store.cell` (one line, escapes visible: a
crafted name cannot add a line), everything printed through :func:`pytest_mitosis.store.printable`.
No pytest import here.
"""

from __future__ import annotations

import json
from typing import Any

from ..checks.what_changed import changed_files
from ..core.rules import Directions, series_length
from ..identity.environment import package_changes
from ..store import Reader, TrialRecord, cell, job_text


def short(value: Any, limit: int = 60) -> str:
    points = series_length(value)
    if points:
        last = value[-1] if isinstance(value, list) else value["value"][-1]
        at = "" if isinstance(value, list) else f" at step {value['step'][-1]!r}"
        return f"series of {points} points, last {last!r}{at}"
    text = "-" if value is None else repr(value) if not isinstance(value, str) else cell(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
        lines.append(
            f"  {cell(p['step'])}.{cell(p['name'])} = {cell(p.get('repr', p.get('value')))}   [{how}]{tracked}"
        )
    return lines or ["  (every parameter at its default)"]


def _accepted_line(r: TrialRecord) -> str:
    """``accepted: when, by whom, why``: the trial failed the drift gate and became its baseline."""
    a, c = r.accepted, cell
    assert a is not None
    replaced = f" in place of {c(a.baseline)}" if a.baseline else ""
    why = f": {c(a.reason)}" if a.reason else ""
    return f"accepted as the drift gate's baseline{replaced} on {a.at:%Y-%m-%d %H:%M} by {c(a.by)}@{c(a.host)}{why}"


def show_record(reader: Reader, r: TrialRecord, packages: bool = False) -> str:
    """Everything recorded about one trial, in the order a reader asks: how it ended and why (the
    failure's message, its warnings), then what it was (experiment, parameters, results,
    provenance), then where it ran; the installed packages last, as a count unless ``packages``
    (a list of dozens of them would push the failure out of sight; ``show KEY --packages`` lists
    them, ``diff`` says which changed)."""
    env = reader.environment(r)
    lines = [*_outcome_lines(r), *_what_lines(r), "artifacts:", *_artifact_lines(reader, r)]
    lines += ["environment:", *_environment_lines(env), *_package_lines(r, env, packages)]
    return "\n".join(lines)


def _outcome_lines(r: TrialRecord) -> list[str]:
    """How the trial ended and why: its name, status, acceptance, failure message and warnings."""
    c = cell
    lines = [
        f"trial {c(r.name)} (key {c(r.key)}){'  DEBUG' if r.debug else ''}",
        f"status: {c(r.status)}   main: {c(short(r.main))}",
        *([_accepted_line(r)] if r.accepted else []),
    ]
    if r.message:  # a traceback keeps its lines, each one indented: none can pass for a line of its own
        lines += ["message:", *[f"  {c(line)}" for line in r.message.splitlines()]]
    if r.warnings:
        lines += ["warnings:", *[f"  {c(w)}" for w in r.warnings]]
    return lines


def _what_lines(r: TrialRecord) -> list[str]:
    """What the trial was: experiment, times, seed, the batch job that ran it, directions, what it reproduces,
    commit, parameters, metrics."""
    c = cell
    directions = Directions.from_json(r.directions)
    reproduces = f"reproduces: trial {c(r.reproduces)} ({c(r.verdict or 'not judged: ' + r.status)})"
    return [
        f"experiment: {c(r.experiment)}   steps: {', '.join(c(s['name']) + ' = ' + c(s['function']) for s in r.steps)}",
        f"started: {r.started.isoformat(timespec='seconds')}   ended: {r.ended.isoformat(timespec='seconds') if r.ended else '-'}",
        f"seed: {c(r.seed)}" + (f"   session: {c(r.session)}" if r.session else ""),
        *([f"job:      {c(job_text(r.job))}"] if r.job else []),
        *([f"better: {c(directions.describe())}"] if directions is not None else []),
        *([reproduces] if r.reproduces else []),
        f"commit: {c(r.commit or '-')}   branch: {c(r.git.get('branch') or '-')}   remote: {c(r.git.get('remote') or '-')}",
        "parameters:",
        *_param_lines(r),
        "metrics:" if r.metrics else "metrics: none",
        *[f"  {c(k)} = {c(short(v))}" for k, v in r.metrics.items()],
    ]


def _artifact_lines(reader: Reader, r: TrialRecord) -> list[str]:
    """The trial's folder and its files (only ever inside the trials folder)."""
    c = cell
    if not r.folder:
        return ["  none (the trial did not finish)"]
    folder = reader.artifacts(r)
    if folder is None:
        return [f"  {c(r.folder)} (not found inside {c(reader.folder)})"]
    return [f"  {c(folder)}", *[f"    {c(p.name)}" for p in sorted(folder.iterdir())]]


#: environment parts :func:`_environment_lines` shows on lines of their own (``packages`` last, ``git`` never)
_ENVIRONMENT_SHOWN = ("python", "platform", "cpu", "hostname", "packages", "env", "gpus", "git")


def _environment_lines(env: dict[str, Any]) -> list[str]:
    """Where the trial ran: Python, platform, CPU, host, GPUs, recorded variables, and any other part."""
    c = cell
    python, platform, cpu = env.get("python", {}), env.get("platform", {}), env.get("cpu", {})
    return [
        f"  python {c(python.get('version', '?'))} ({c(python.get('implementation', '?'))}) "
        f"{c(python.get('executable', ''))}",
        f"  platform {c(platform.get('platform', '?'))}   cpu {c(cpu.get('model', '?'))} x{c(cpu.get('count', '?'))}   "
        f"host {c(env.get('hostname', '?'))}",
        f"  gpus: {', '.join(c(g) for g in env.get('gpus') or []) or 'none'}",
        f"  env: {', '.join(f'{c(k)}={c(v)}' for k, v in (env.get('env') or {}).items()) or 'none recorded'}",
        *[f"  {c(k)}: {c(json.dumps(v))}" for k, v in env.items() if k not in _ENVIRONMENT_SHOWN],
    ]


def _package_lines(r: TrialRecord, env: dict[str, Any], listed: bool) -> list[str]:
    """The installed packages: each one when ``listed``, else their count."""
    c = cell
    installed = env.get("packages") or {}
    if listed:
        return [f"  packages ({len(installed)}):", *[f"    {c(n)} {c(v)}" for n, v in installed.items()]]
    return [f"  packages: {len(installed)} installed (show {c(r.key)} --packages lists them)"]


def _changed_files(old: str, new: str) -> str:
    """The files changed between two recorded commits, from the current directory's repository."""
    lines, why = changed_files(old, new)
    if why is not None:
        return f"    ({why}{'; run diff inside the repository' if why.startswith('git could not') else ''})"
    return "\n".join(f"    {line}" for line in lines) or "    (no file differs)"


def _named(p: dict[str, Any]) -> str:
    """A variant as ``name = value``; an eval param whose expression is its value, once."""
    text, value = str(p.get("text")), p.get("repr")
    return text if value is None or str(value) == text else f"{text} = {value}"


def diff_records(reader: Reader, a: TrialRecord, b: TrialRecord, files: bool = True) -> str:
    """Why two trials differ, part by part: code, parameters, environment, seed, results (``files``: list the
    files changed between their commits)."""
    lines = [f"{cell(a.name)} (key {cell(a.key)})  vs  {cell(b.name)} (key {cell(b.key)})", ""]
    lines += _code_difference(a, b, files)
    lines += ["", *_parameter_difference(a, b)]
    lines += ["", *_environment_difference(reader, a, b)]
    lines += ["", _seed_difference(a, b)]
    lines += ["", *_result_difference(a, b)]
    return "\n".join(lines)


def _code_difference(a: TrialRecord, b: TrialRecord, files: bool) -> list[str]:
    """The commits (and the files changed between them, when ``files``), then the submodules that moved."""
    c = cell
    if a.commit == b.commit:
        lines = [f"code: identical (commit {c((a.commit or '-')[:12])})"]
    else:
        lines = [f"code: commit {c((a.commit or '-')[:12])} -> {c((b.commit or '-')[:12])}"]
        if files:
            lines.append("  files changed:")
            lines.append(_changed_files(a.commit, b.commit) if a.commit and b.commit else "    (a trial has no commit)")
    sub_a, sub_b = a.git.get("submodules") or {}, b.git.get("submodules") or {}
    for path in sorted(set(sub_a) | set(sub_b)):
        if sub_a.get(path) != sub_b.get(path):
            lines.append(
                f"  submodule {c(path)}: {c((sub_a.get(path) or '-')[:12])} -> {c((sub_b.get(path) or '-')[:12])}"
            )
    return lines


def _parameter_difference(a: TrialRecord, b: TrialRecord) -> list[str]:
    """The parameters set in only one trial or to different values (the seed is shown apart), and the
    experiment when it differs."""
    c = cell
    pa = {(p["step"], p["name"]): p for p in a.params if p["kind"] != "seed"}
    pb = {(p["step"], p["name"]): p for p in b.params if p["kind"] != "seed"}
    changes = []
    for k in sorted(set(pa) | set(pb)):
        x, y = pa.get(k), pb.get(k)
        if x is None or y is None:
            changes.append(f"  {c(k[0])}.{c(k[1])}: {'only in ' + c(a.key if y is None else b.key)}")
        elif x.get("fingerprint") != y.get("fingerprint") or x["text"] != y["text"] or x.get("repr") != y.get("repr"):
            changes.append(f"  {c(k[0])}.{c(k[1])}: {c(_named(x))}  ->  {c(_named(y))}")
    lines = ["parameters: identical" if not changes else "parameters:", *changes]
    if a.experiment != b.experiment:
        lines.append(f"  experiment: {c(a.experiment)} -> {c(b.experiment)}")
    return lines


#: environment parts compared one by one (``packages`` by package, ``git`` is the code's)
_ENVIRONMENT_COMPARED = ("python", "platform", "cpu", "gpus", "env", "hostname")


def _environment_difference(reader: Reader, a: TrialRecord, b: TrialRecord) -> list[str]:
    """The environment parts and packages that differ; nothing to compare when both trials share one
    environment record (one digest: a sweep's trials mostly share one)."""
    c = cell
    same = a.environment_digest == b.environment_digest and bool(a.environment_digest)
    ea, eb = (reader.environment(a), reader.environment(b)) if not same else ({}, {})
    changes = [
        f"  {part}: {c(json.dumps(ea.get(part)))} -> {c(json.dumps(eb.get(part)))}"
        for part in _ENVIRONMENT_COMPARED
        if ea.get(part) != eb.get(part)
    ]
    packages = package_changes(ea.get("packages", {}), eb.get("packages", {}))
    for kind in ("added", "removed", "changed"):
        changes += [f"  package {kind}: {c(p)}" for p in packages[kind]]
    extra = sorted((set(ea) | set(eb)) - {*_ENVIRONMENT_COMPARED, "packages", "git"})
    changes += [
        f"  {c(k)}: {c(json.dumps(ea.get(k)))} -> {c(json.dumps(eb.get(k)))}" for k in extra if ea.get(k) != eb.get(k)
    ]
    return ["environment: identical" if not changes else "environment:", *changes]


def _seed_difference(a: TrialRecord, b: TrialRecord) -> str:
    return f"seed: identical ({cell(a.seed)})" if a.seed == b.seed else f"seed: {cell(a.seed)} -> {cell(b.seed)}"


def _result_difference(a: TrialRecord, b: TrialRecord) -> list[str]:
    """Main result, then every other metric (``(identical)`` when equal), then the status when it differs."""
    c = cell
    lines = [
        "results:",
        f"  main: {c(short(a.main))} -> {c(short(b.main))}" + (" (identical)" if a.main == b.main else ""),
    ]
    for metric in sorted((set(a.metrics) | set(b.metrics)) - {"main"}):  # main is shown once, above
        same = a.metrics.get(metric) == b.metrics.get(metric)
        before, after = c(short(a.metrics.get(metric))), c(short(b.metrics.get(metric)))
        lines.append(f"  {c(metric)}: {before} -> {after}" + (" (identical)" if same else ""))
    if a.status != b.status:
        lines.append(f"  status: {c(a.status)} -> {c(b.status)}")
    return lines
