"""A static, self-contained site of every trial: an index, one page per experiment, one per trial.

Plain HTML with inline CSS, inline JavaScript (sorting and filtering) and inline SVG plots:
it opens from a file browser, needs no server and fetches nothing. Trial pages are written
once (a finished trial never changes); the index and the experiment pages are rewritten on
every refresh, so a refresh stays fast with thousands of trials.

A store is a file a colleague can hand you, so nothing recorded is trusted: a page is
written only for a key of the key format (8 hex digits), links point only at artifact
folders inside the trials folder, are relative and percent-encoded (no ``javascript:``),
and every text is HTML-escaped. Pages respect the umask. No pytest import here.
"""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ..core.rules import as_number, series_points
from ..store import Reader, StoreURL, TrialRecord, new_file, valid_key
from .records_text import diff_records, show_record

REPORT = "report"
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;font-size:.9em}th,td{padding:.25em .6em;border-bottom:1px solid #ddd;text-align:left}
th{cursor:pointer;background:#f4f4f4;position:sticky;top:0}tr.failed td{color:#b00}tr.debug td{font-style:italic;color:#666}
.filters{margin:.8em 0}.filters select,.filters input{margin-right:1em}pre{background:#f8f8f8;padding:1em;overflow:auto}
svg{background:#fff;border:1px solid #ddd;margin:.5em 1em .5em 0}
"""

_JS = """
function filterRows(){const f={};document.querySelectorAll('[data-filter]').forEach(e=>f[e.dataset.filter]=e.value);
document.querySelectorAll('#trials tbody tr').forEach(r=>{let show=true;for(const k in f){const v=f[k];
if(v&&!(k==='variants'?JSON.parse(r.dataset[k]).includes(v):r.dataset[k]===v))show=false}
r.style.display=show?'':'none'})}
function sortBy(i){const t=document.querySelector('#trials tbody');const rows=[...t.rows];const d=t.dataset.dir==='1'?-1:1;
t.dataset.dir=d===1?'1':'-1';rows.sort((a,b)=>{const x=a.cells[i].dataset.v??a.cells[i].textContent,y=b.cells[i].dataset.v??b.cells[i].textContent;
const nx=parseFloat(x),ny=parseFloat(y);return(!isNaN(nx)&&!isNaN(ny)?nx-ny:x.localeCompare(y))*d});rows.forEach(r=>t.appendChild(r))}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _page(title: str, body: str, script: bool = False) -> str:
    js = f"<script>{_JS}</script>" if script else ""
    return (
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{_e(title)}</title>"
        f"<style>{_CSS}</style>{js}</head><body>{body}</body></html>\n"
    )


def line_chart(
    title: str,
    series: dict[str, list[tuple[float, float]]],
    xlabel: str = "",
    labels: list[str] | None = None,
    lines: bool = True,
) -> str:
    """An inline SVG chart of named series of (x, y) points (joined by lines unless ``lines`` is false)."""
    points = [p for pts in series.values() for p in pts]
    if not points:
        return ""
    width, height, left, bottom, top, right = 560, 300, 60, 40, 30, 130
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    x0, x1 = min(xs), max(xs)
    y0, y1 = min(ys), max(ys)
    x1, y1 = (x1 if x1 > x0 else x0 + 1), (y1 if y1 > y0 else y0 + abs(y0) * 0.1 + 1)

    def sx(x: float) -> float:
        return left + (x - x0) / (x1 - x0) * (width - left - right)

    def sy(y: float) -> float:
        return height - bottom - (y - y0) / (y1 - y0) * (height - bottom - top)

    parts = [
        f"<svg xmlns='http://www.w3.org/2000/svg' width='{width}' height='{height}' role='img' aria-label='{_e(title)}'>",
        f"<text x='{left}' y='18' font-size='13'>{_e(title)}</text>",
        f"<line x1='{left}' y1='{height - bottom}' x2='{width - right}' y2='{height - bottom}' stroke='#999'/>",
        f"<line x1='{left}' y1='{top}' x2='{left}' y2='{height - bottom}' stroke='#999'/>",
        f"<text x='4' y='{top + 4}' font-size='10'>{y1:.4g}</text><text x='4' y='{height - bottom}' font-size='10'>{y0:.4g}</text>",
        f"<text x='{left}' y='{height - 8}' font-size='10'>{_e(xlabel)}</text>",
    ]
    for index, (name, pts) in enumerate(series.items()):
        color = _COLORS[index % len(_COLORS)]
        path = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        if lines and len(pts) > 1:
            parts.append(f"<polyline fill='none' stroke='{color}' stroke-width='1.5' points='{path}'/>")
        parts += [
            f"<circle cx='{sx(x):.1f}' cy='{sy(y):.1f}' r='3' fill='{color}'><title>{_e(name)}: {y:.6g}</title></circle>"
            for x, y in pts
        ]
        parts.append(
            f"<text x='{width - right + 8}' y='{top + 14 * index}' font-size='11' fill='{color}'>{_e(name[:20])}</text>"
        )
    if labels:
        for x, label in enumerate(labels):
            parts.append(
                f"<text x='{sx(x):.1f}' y='{height - bottom + 14}' font-size='9' text-anchor='middle'>{_e(label)}</text>"
            )
    parts.append("</svg>")
    return "".join(parts)


def _href(target: Path, start: Path) -> str:
    """A relative, percent-encoded link from the folder ``start`` to ``target`` (never a scheme)."""
    relative = quote(Path(os.path.relpath(target, start)).as_posix(), safe="/")
    return relative if relative.startswith("../") else f"./{relative}"


def _notebook(reader: Reader, record: TrialRecord) -> Path | None:
    """The trial's notebook HTML, only when it is a file inside its folder inside the trials folder."""
    folder = reader.artifacts(record)
    if folder is None or not isinstance(record.name, str) or Path(record.name).name != record.name:
        return None
    page = (folder / f"{record.name}.html").resolve()
    return page if page.parent == folder and page.is_file() else None


def _trial_href(record: TrialRecord, prefix: str) -> str | None:
    return f"{prefix}trials/{record.key}.html" if valid_key(record.key) else None


def build(
    trials_folder: Path, out: Path | None = None, debug: bool = False, store: str | StoreURL | None = None
) -> Path:
    """Write (or refresh) the site of the store ``store`` (a URL; ``None``: the trials folder's); return the index."""
    with Reader(trials_folder, store) as reader:
        out = (out or trials_folder / REPORT).resolve()
        (out / "trials").mkdir(parents=True, exist_ok=True)
        (out / "experiments").mkdir(exist_ok=True)
        records = list(reader.trials(debug=debug))
        by_identity: dict[tuple[str, str], list[TrialRecord]] = defaultdict(list)
        for record in reversed(records):  # oldest first
            by_identity[(record.experiment, record.identity)].append(record)
        for record in records:
            if valid_key(record.key):  # a crafted key never becomes a file name
                _trial_page(reader, record, by_identity, out)
        experiments = sorted({r.experiment for r in records})
        for experiment in experiments:
            _experiment_page(experiment, [r for r in records if r.experiment == experiment], out)
        index = out / "index.html"
        _write(index, _index(reader, records, experiments, out))
    return index


def _write(path: Path, text: str) -> None:
    """Write atomically through a temporary file of our own (two sessions may refresh at once)."""
    handle, tmp = new_file(path.parent, f".{path.name}.")  # mode 0666 less the umask, like every other file
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _page_name(experiment: str) -> str:
    """A file name for an experiment's page that stays inside the report folder."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment).lstrip(".") or "_"


def _variant_names(record: TrialRecord) -> list[str]:
    """The trial's variant names and eval parts, exactly (names may contain '-')."""
    return [
        p["text"] if p["kind"] == "lookup" else f"{p['name']}={p['text']}" for p in record.params if p["kind"] != "seed"
    ]


def _index(reader: Reader, records: list[TrialRecord], experiments: list[str], out: Path) -> str:
    def options(name: str, values: list[str]) -> str:
        choices = "".join(f"<option value='{_e(v)}'>{_e(v)}</option>" for v in values)
        return f"<label>{name} <select data-filter='{name}' onchange='filterRows()'><option value=''>all</option>{choices}</select></label>"

    variants = sorted({v for r in records for v in _variant_names(r)})
    filters = "".join(
        [
            options("experiment", experiments),
            options("variants", variants),
            options("status", sorted({r.status for r in records})),
            options("commit", sorted({(r.commit or "-")[:8] for r in records})),
        ]
    )
    head = [
        "experiment",
        "variants",
        "iteration",
        "status",
        "main",
        "seed",
        "commit",
        "host",
        "date",
        "notebook",
        "trial",
        "reproduces",
    ]
    keys = {r.key for r in records}
    rows = []
    for r in records:
        found = _notebook(reader, r)
        notebook = _href(found, out) if found else None
        page = _trial_href(r, "")
        trial = f"<a href='{_e(page)}'>{_e(r.key)}</a>" if page else f"{_e(r.key)} (not a key: no page)"
        if r.reproduces:
            original = f"trials/{r.reproduces}.html" if valid_key(r.reproduces) and r.reproduces in keys else None
            verdict = _e(r.verdict or r.status)
            reproduces = (
                f"<a href='{_e(original)}'>{_e(r.reproduces)}</a> ({verdict})"
                if original
                else f"{_e(r.reproduces)} ({verdict})"
            )
        else:
            reproduces = "-"
        classes = " ".join(
            c
            for c in (
                r.status if r.status != "passed" else "",
                "debug" if r.debug else "",
                "reproduction" if r.reproduces else "",
            )
            if c
        )
        main = as_number(r.main)
        rows.append(
            f"<tr class='{classes}' data-experiment='{_e(r.experiment)}' data-variants='{_e(json.dumps(_variant_names(r)))}' "
            f"data-status='{_e(r.status)}' data-commit='{_e((r.commit or '-')[:8])}'>"
            f"<td><a href='experiments/{_e(_page_name(r.experiment))}.html'>{_e(r.experiment)}</a></td><td>{_e(r.variants or '-')}</td>"
            f"<td>{'debug' if r.debug else _e(r.iteration)}</td><td>{_e(r.status)}</td>"
            f"<td data-v='{'' if main is None else main}'>{_e('-' if r.main is None else r.main)}</td><td>{_e(r.seed)}</td>"
            f"<td>{_e((r.commit or '-')[:8])}</td><td>{_e(reader.environment(r).get('hostname') or '-')}</td>"
            f"<td data-v='{r.started.timestamp()}'>{r.started:%Y-%m-%d %H:%M}</td>"
            f"<td>{f'<a href={chr(39)}{_e(notebook)}{chr(39)}>notebook</a>' if notebook else '-'}</td>"
            f"<td>{trial}</td><td>{reproduces}</td></tr>"
        )
    table = (
        "<table id='trials'><thead><tr>"
        + "".join(f"<th onclick='sortBy({i})'>{h}</th>" for i, h in enumerate(head))
        + f"</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    )
    body = (
        f"<h1>Trials</h1><p>{len(records)} trials of {len(experiments)} experiments. "
        "Click a column to sort it.</p>"
        f"<div class='filters'>{filters}</div>{table}"
    )
    return _page("Trials", body, script=True)


def _experiment_page(experiment: str, records: list[TrialRecord], out: Path) -> None:
    ordered = sorted(records, key=lambda r: r.started)
    by_variant: dict[str, list[tuple[float, float]]] = defaultdict(list)
    for index, r in enumerate(ordered):
        value = as_number(r.main)
        if value is not None and r.status == "passed":
            by_variant[r.variants or experiment].append((float(index), value))
    labels = [(r.commit or "-")[:7] for r in ordered]
    over_time = line_chart(
        f"{experiment}: main over trials (x: trials in order, labelled by commit)",
        dict(by_variant),
        labels=labels if len(labels) <= 30 else None,
    )
    latest: dict[str, float] = {}
    for r in ordered:
        value = as_number(r.main)
        if value is not None and r.status == "passed":
            latest[r.variants or experiment] = value
    bars = line_chart(
        f"{experiment}: latest main by variant",
        {"main": [(float(i), v) for i, v in enumerate(latest.values())]},
        labels=list(latest),
        lines=False,
    )
    rows = "".join(
        f"<li>{_linked(_trial_href(r, '../'), r.name)} ({_e(r.status)}, main {_e(r.main)}"
        f"{', reproduction of ' + _e(r.reproduces) if r.reproduces else ''})</li>"
        for r in reversed(ordered)
    )
    body = f"<p><a href='../index.html'>all trials</a></p><h1>Experiment {_e(experiment)}</h1>{bars}{over_time}<ul>{rows}</ul>"
    _write(out / "experiments" / f"{_page_name(experiment)}.html", _page(f"Experiment {experiment}", body))


def _linked(href: str | None, text: str) -> str:
    return f"<a href='{_e(href)}'>{_e(text)}</a>" if href else _e(text)


def _trial_page(
    reader: Reader, record: TrialRecord, by_identity: dict[tuple[str, str], list[TrialRecord]], out: Path
) -> None:
    path = out / "trials" / f"{record.key}.html"
    if path.exists() or record.status == "running":
        return  # a finished trial never changes: its page is written once
    plots = "".join(
        line_chart(f"{name}", {name: pts}, xlabel="step")
        for name, value in record.metrics.items()
        if (pts := series_points(value))
    )
    history = by_identity[(record.experiment, record.identity)]
    earlier = [r for r in history if r.started < record.started]  # history is oldest first
    difference = (
        f"<h2>Since the previous trial of this identity</h2><pre>{_e(diff_records(reader, earlier[-1], record, files=False))}</pre>"
        if earlier
        else "<p>No earlier trial of this identity.</p>"
    )
    found = _notebook(reader, record)
    link = f"<p><a href='{_e(_href(found, out / 'trials'))}'>the executed notebook</a></p>" if found else ""
    if record.reproduces:
        original = _linked(f"{record.reproduces}.html" if valid_key(record.reproduces) else None, record.reproduces)
        link += f"<p>A reproduction of trial {original}: {_e(record.verdict or record.status)}.</p>"
    body = (
        f"<p><a href='../index.html'>all trials</a> · <a href='../experiments/{_e(_page_name(record.experiment))}.html'>"
        f"experiment {_e(record.experiment)}</a></p><h1>{_e(record.name)}{' (debug)' if record.debug else ''}"
        f"{' (reproduction)' if record.reproduces else ''}</h1>"
        f"{link}{plots}<pre>{_e(show_record(reader, record))}</pre>{difference}"
    )
    _write(path, _page(record.name, body))
