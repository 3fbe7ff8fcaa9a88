"""What CI reads: a Markdown summary of the session and github-action-benchmark's JSON.

Both are built from the summary rows (:class:`.summary.SummaryRow`), which the controller
builds from ``report.user_properties``: under pytest-xdist that is all it has. The Markdown
is meant for ``$GITHUB_STEP_SUMMARY`` or a merge-request comment, so cells are escaped to
stay text (a ``|`` in a message must not split the table). The JSON is the list of
``{"name", "unit", "value", "extra"}`` that github-action-benchmark's ``customSmallerIsBetter``
and ``customBiggerIsBetter`` tools read; names are stable across runs (the node id's display
part, never a key or an iteration), so a metric is one line in the action's chart.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .summary import (
    SummaryRow,
    best_row,
    by_experiment,
    change_text,
    counts_text,
    distinct_digits,
    experiment_of,
    is_failure,
    number_text,
    parse_change,
    regressions,
    seed_note,
    sort_key,
    trial_id,
    without_seed,
)

#: a failure's first line is cut after this many characters in the summary
MESSAGE_WIDTH = 300

_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>|~&])")


def escape(text: str) -> str:
    """``text`` as literal Markdown table-cell text: punctuation escaped, newlines as ``<br>``."""
    lines = str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    return "<br>".join(_MARKDOWN_SPECIAL.sub(r"\\\1", line) for line in lines)


def code(text: str) -> str:
    """``text`` as a code span that survives a table cell (``|`` escaped, newlines as spaces)."""
    flat = " ".join(str(text).splitlines()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", flat)), default=0) + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def first_line(message: str | None) -> str:
    """The first non-empty line of a failure, cut to :data:`MESSAGE_WIDTH` characters."""
    for line in (message or "").splitlines():
        if line.strip():
            line = line.strip()
            return line if len(line) <= MESSAGE_WIDTH else line[: MESSAGE_WIDTH - 1] + "…"
    return ""


def _value(value: Any, digits: int = 17) -> str:
    return "–" if value is None else escape(number_text(value, digits))


def _change(row: SummaryRow) -> str:
    return escape(change_text(row)) or "–"


def _regression_line(row: SummaryRow, text: str, digits: int) -> str:
    """``- `sweep[a]`: main 0.0098 -> 0.337 (+245%): higher by more than the allowed 5% (since trial_x-1, key K)``."""
    change = parse_change(text)
    if change is None or change.gate is None:
        return f"- {code(trial_id(row.nodeid))}: {escape(first_line(text))}"
    return f"- {code(trial_id(row.nodeid))}: {escape(change.text(digits))}: {escape(change.gate)} (since {escape(change.where)})"


def _details(summary: str, lines: list[str]) -> list[str]:
    """Folded: GitHub renders Markdown inside ``<details>`` when blank lines surround it."""
    return [f"<details><summary>{summary}</summary>", "", *lines, "", "</details>", ""]


def markdown_summary(
    rows: Sequence[SummaryRow],
    *,
    compare: bool,
    report: str | None,
    seed: int | None = None,
    exitstatus: int | None = None,
    session: str | None = None,
    higher_is_better: Callable[[str], bool] = lambda trial: False,
) -> str:
    """The session as Markdown, short enough to read at 120 trials: what went wrong first, the rest folded.

    Visible: a title with the counts; the regressions (trials the drift gate failed, each with
    the change that failed it) and the other failures (the first line of each message); one
    line per experiment (counts, best main and its trial); the seed note, said once; the report. Folded in
    ``<details>``: one line per trial (outcome, main, change since the previous trial, key), the
    failures first, then by experiment and id; then each trial's metrics, comparisons and
    warnings. A reader of 120 trials needs the three that regressed, not 117 that did not.

    Mains show the significant digits that tell the experiment's values apart. The "change"
    column appears when the session compared (``--mitosis-compare``), the "hypothesis" column
    when a trial declared one: an empty column would only be noise. ``session`` is the
    session's key, which ``history --session KEY`` finds again; ``higher_is_better`` says for a
    trial id which main is the best.
    """
    total = len(rows)
    title = f"{counts_text(rows)} ({total} trial{'s' if total != 1 else ''})" if rows else "no trial ran"
    lines = [f"## mitosis: {title}", ""]
    lines += _session_line(rows, seed, session, exitstatus)
    ordered = sorted(rows, key=sort_key)
    groups = by_experiment(rows)
    digits = {name: distinct_digits(row.main for row in group) for name, group in groups.items()}
    lines += _regression_section(ordered, digits)
    lines += _failure_section(ordered)
    lines += _experiment_table(groups, digits, higher_is_better)
    note = seed_note(rows)
    if note:
        lines += [f"Note: {escape(note)}.", ""]
    if report:
        lines += [f"Report: {code(report)}", ""]
    if rows:
        lines += _details(f"All {total} trial{'s' if total != 1 else ''}", _trial_table(ordered, digits, compare))
        detailed = [row for row in ordered if row.metrics or row.comparisons or row.warnings]
        if detailed:
            lines += _details("Metrics, comparisons and warnings of each trial", _metrics_table(detailed))
    return "\n".join(lines)


def _session_line(
    rows: Sequence[SummaryRow], seed: int | None, session: str | None, exitstatus: int | None
) -> list[str]:
    """What the session was, on one line: its commit (when all trials share one), seed, key, and pytest's exit
    status when not 0; nothing when none is known."""
    said = []
    commits = sorted({row.commit for row in rows if row.commit})
    if len(commits) == 1:
        said.append(f"commit {code(commits[0])}")
    if seed is not None:
        said.append(f"seed {seed}")
    if session is not None:
        said.append(f"session {code(session)}")
    if exitstatus is not None and exitstatus != 0:
        said.append(f"pytest exit status {exitstatus}")
    return [", ".join(said), ""] if said else []


def _regression_section(ordered: list[SummaryRow], digits: dict[str, int]) -> list[str]:
    """The trials the drift gate failed, each with the change that failed it."""
    regressed = [(row, text) for row in ordered for text in regressions(row)]
    if not regressed:
        return []
    lines = [f"### Regressions ({len({id(row) for row, _ in regressed})})", ""]
    lines += [_regression_line(row, text, digits[experiment_of(row.nodeid)]) for row, text in regressed]
    return [*lines, ""]


def _failure_section(ordered: list[SummaryRow]) -> list[str]:
    """The other failures, with the first line of each message."""
    failed = [row for row in ordered if is_failure(row) and not regressions(row)]
    if not failed:
        return []
    lines = [f"### Failures ({len(failed)})", ""]
    lines += [f"- {code(trial_id(row.nodeid))}: {escape(first_line(row.message)) or row.outcome}" for row in failed]
    return [*lines, ""]


def _experiment_table(
    groups: dict[str, list[SummaryRow]], digits: dict[str, int], higher_is_better: Callable[[str], bool]
) -> list[str]:
    """One line per experiment: its counts, and its best main with the trial that reached it."""
    if not groups:
        return []
    lines = ["| experiment | trials | passed | failed | best main |", "|---|---|---|---|---|"]
    for name, group in groups.items():
        best = best_row(group, higher_is_better(trial_id(group[0].nodeid)))
        shown = f"{_value(best.main, digits[name])} {code(trial_id(best.nodeid))}" if best else "–"
        passed = sum(row.outcome == "passed" for row in group)
        bad = sum(is_failure(row) for row in group)
        lines.append(f"| {code(name)} | {len(group)} | {passed} | {bad} | {shown} |")
    return [*lines, ""]


def _trial_table(ordered: list[SummaryRow], digits: dict[str, int], compare: bool) -> list[str]:
    """One line per trial: outcome, main, change (when the session compared), iteration and key, hypothesis
    (when a trial declared one)."""
    hypothesis = any(row.verdict for row in ordered)
    head = ["trial", "outcome", "main", *(["change"] if compare else []), "iteration / key"]
    head += ["hypothesis"] if hypothesis else []
    table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in ordered:
        trial = f"#{row.iteration}" if row.iteration is not None else "debug" if row.key else ""
        trial = f"{trial} {code(row.key)}".strip() if row.key else "not run"
        cells = [code(trial_id(row.nodeid)), row.outcome, _value(row.main, digits[experiment_of(row.nodeid)])]
        cells += [_change(row)] if compare else []
        cells.append(trial)
        if hypothesis:
            cells.append(escape(row.verdict) if row.verdict else "–")
        table.append("| " + " | ".join(cells) + " |")
    return table


def _metrics_table(detailed: list[SummaryRow]) -> list[str]:
    """Each trial's metrics (digits per metric, as main's), comparisons and warnings."""
    table = ["| trial | metrics | comparisons | warnings |", "|---|---|---|---|"]
    values: dict[str, list[Any]] = {}
    for row in detailed:
        for name, value in row.metrics:
            values.setdefault(name, []).append(value)
    places = {name: distinct_digits(found) for name, found in values.items()}
    for row in detailed:
        metrics = "<br>".join(f"{escape(name)} = {_value(value, places[name])}" for name, value in row.metrics)
        metrics = metrics or "–"
        comparisons = "<br>".join(escape(without_seed(text)[0]) for text in row.comparisons) or "–"
        warnings = "<br>".join(escape(text) for text in row.warnings) or "–"
        table.append(f"| {code(trial_id(row.nodeid))} | {metrics} | {comparisons} | {warnings} |")
    return table


def path_problem(option: str, path: Path) -> str | None:
    """Why ``path`` cannot take a file, found before any trial runs (a typo costs no kernel hour), or ``None``.

    What only writing can tell (no space left, a folder removed meanwhile) is reported at the
    end of the session instead, without losing the trials.
    """
    if path.is_dir():
        return f"mitosis: {option}={path} is a folder: give the path of a file in it (e.g. {path / 'summary.md'})."
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent  # missing folders are created when the file is written, as --junitxml does
    if not ancestor.is_dir():
        return f"mitosis: {option}={path}: {ancestor} is a file, not a folder: move it aside, or choose another path."
    return None


def append_summary(path: Path, text: str) -> None:
    """Append ``text`` to ``path`` (GitHub gives each step an existing, empty summary file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = path.stat().st_size if path.is_file() else 0
    with path.open("a", encoding="utf-8") as out:
        out.write(("\n" if existing else "") + text)


def _number(value: Any) -> float | int | None:
    """A finite number for the JSON (JSON has no NaN), or ``None``: text, booleans, NaN are left out."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                return None
        else:
            return None
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Benchmark:
    """One file for github-action-benchmark: its path, the tool to configure, its entries."""

    path: Path
    tool: str
    entries: list[dict[str, Any]]


def benchmark_entries(rows: Sequence[SummaryRow]) -> dict[str, list[dict[str, Any]]]:
    """Main and every numeric metric of each passed trial (reproductions and debug trials left out), by trial id.

    A series metric counts by its last value, as in junit XML. A reproduction runs an old
    commit, and a debug trial may run code no commit holds: charted over commits, either
    would put a result at a commit that did not produce it.
    """
    found: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        if row.outcome != "passed" or row.reproduces or row.iteration is None:  # no iteration: a debug trial
            continue
        name = trial_id(row.nodeid)
        extra = ", ".join(
            part for part in (f"key {row.key}" if row.key else "", f"commit {row.commit}" if row.commit else "") if part
        )
        values = [("main", row.main), *row.metrics]
        for metric, value in values:
            number = _number(value)
            if number is None:
                continue
            entry: dict[str, Any] = {"name": f"{name} {metric}", "unit": "", "value": number}
            if extra:
                entry["extra"] = extra
            found.setdefault(name, []).append(entry)
    return found


def benchmarks(rows: Sequence[SummaryRow], path: Path, higher_is_better: Callable[[str, str], bool]) -> list[Benchmark]:
    """The files to write: ``path``, and when both directions occur, ``<stem>.bigger<suffix>`` too.

    ``higher_is_better(trial id, metric)`` says it per metric (the directions the trial was
    judged by: the pyproject's ``higher-is-better`` and the command line's). With one direction, ``path`` holds
    everything and names its tool; with both, ``path`` keeps the lower-is-better entries
    (``customSmallerIsBetter``) and the other file the higher-is-better ones
    (``customBiggerIsBetter``): github-action-benchmark reads one direction per file.
    """
    smaller: list[dict[str, Any]] = []
    bigger: list[dict[str, Any]] = []
    directions: set[bool] = set()
    for name, entries in benchmark_entries(rows).items():
        for entry in entries:
            higher = higher_is_better(name, entry["name"][len(name) + 1 :])
            directions.add(higher)
            (bigger if higher else smaller).append(entry)
    if directions == {True}:
        return [Benchmark(path, "customBiggerIsBetter", bigger)]
    files = [Benchmark(path, "customSmallerIsBetter", smaller)]
    if bigger:
        files.append(Benchmark(bigger_path(path), "customBiggerIsBetter", bigger))
    return files


def bigger_path(path: Path) -> Path:
    """``bench.json`` → ``bench.bigger.json``: the higher-is-better half of a mixed session."""
    return path.with_name(f"{path.stem}.bigger{path.suffix}")


def write_benchmark(benchmark: Benchmark) -> None:
    """Write one file whole (a fresh file per session: the action keeps the history itself)."""
    benchmark.path.parent.mkdir(parents=True, exist_ok=True)
    benchmark.path.write_text(json.dumps(benchmark.entries, indent=2) + "\n", encoding="utf-8")
