"""One page per trial: figures, parameters, main and metrics, the failure, the environment, the neighbours.

Written once (a finished trial never changes), together with the trial's compare data
(:mod:`.facts`) and its figures (:mod:`.figures`). The difference to the previous trial of
the same identity is ``diff``'s own text (:func:`~pytest_mitosis.views.records_text.diff_records`,
without running git), and the page links to the compare page with that trial.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ...store import Reader, TrialRecord, valid_key
from ..records_text import diff_records, short
from .charts import series_figure
from .figures import Figure, notebook_file
from .html import chart, e, href, linked, page, page_name


def _badges(record: TrialRecord) -> str:
    parts = []
    if record.status != "passed":
        parts.append(f"<span class='badge {e(record.status)}'>{e(record.status)}</span>")
    if record.verdict in ("holds", "refuted"):
        parts.append(f"<span class='badge {record.verdict}'>hypothesis {record.verdict}</span>")
    if record.debug:
        parts.append(" (debug)")
    if record.reproduces:
        parts.append(" (reproduction)")
    return "".join(parts)


def _params(record: TrialRecord) -> str:
    rows = []
    for p in record.params:
        how = {"lookup": "variant", "eval": "eval", "seed": "trial seed"}.get(str(p.get("kind")), str(p.get("kind")))
        tracked = "" if p.get("tracked") or p.get("kind") == "seed" else " (untracked)"
        value = p.get("repr", p.get("value"))
        rows.append(
            f"<tr><td>{e(p.get('step'))}</td><td>{e(p.get('name'))}</td><td>{e(short(value, 200))}</td>"
            f"<td>{e(how)} {e(p.get('text') if p.get('kind') != 'seed' else '')}{e(tracked)}</td></tr>"
        )
    if not rows:
        return "<p>Every parameter at its default.</p>"
    return (
        "<table><thead><tr><th>step</th><th>parameter</th><th>value</th><th>how</th></tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table>"
    )


def _results(record: TrialRecord) -> str:
    rows = [f"<tr><td>main</td><td class='num'>{e(short(record.main, 200))}</td></tr>"]
    rows += [
        f"<tr><td>{e(name)}</td><td class='num'>{e(short(value, 200))}</td></tr>"
        for name, value in record.metrics.items()
        if name != "main"
    ]
    return "<table><tbody>" + "".join(rows) + "</tbody></table>"


def _environment(env: dict[str, Any]) -> str:
    python, platform, cpu = env.get("python") or {}, env.get("platform") or {}, env.get("cpu") or {}
    packages = env.get("packages") or {}
    summary = (
        f"Python {python.get('version', '?')} ({python.get('implementation', '?')}) on {platform.get('platform', '?')}, "
        f"host {env.get('hostname', '?')}, cpu {cpu.get('model', '?')} ×{cpu.get('count', '?')}, "
        f"gpus: {', '.join(map(str, env.get('gpus') or [])) or 'none'}"
    )
    variables = (
        ", ".join(f"{k}={v}" for k, v in (env.get("env") or {}).items()) if isinstance(env.get("env"), dict) else ""
    )
    extra = {
        k: v
        for k, v in env.items()
        if k not in ("python", "platform", "cpu", "hostname", "packages", "env", "gpus", "git")
    }
    listing = (
        "".join(f"<tr><td>{e(n)}</td><td>{e(v)}</td></tr>" for n, v in packages.items())
        if isinstance(packages, dict)
        else ""
    )
    return (
        f"<p>{e(summary)}</p>"
        + (f"<p>Environment variables: {e(variables)}</p>" if variables else "")
        + "".join(f"<p>{e(k)}: <code>{e(json.dumps(v))}</code></p>" for k, v in extra.items())
        + f"<details><summary>{len(packages)} packages</summary><table><tbody>{listing}</tbody></table></details>"
    )


def _figures(figures: list[Figure]) -> str:
    if not figures:
        return ""
    items = "".join(
        f"<figure><img src='../{e(f.src)}' alt='{e(f.caption)}' loading='lazy'><figcaption>{e(f.caption)}</figcaption></figure>"
        for f in figures
    )
    return f"<h2>Figures</h2><div class='figures'>{items}</div>"


def trial_page(
    reader: Reader,
    record: TrialRecord,
    previous: TrialRecord | None,
    figures: list[Figure],
    out: Path,
    environments: dict[str, str],
) -> str:
    """The page's HTML (written by the caller to ``trials/<key>.html``); ``environments`` caches their HTML by digest."""
    links = [
        "<a href='../index.html'>all trials</a>",
        f"<a href='../experiments/{e(page_name(record.experiment))}.html'>experiment {e(record.experiment)}</a>",
    ]
    notebook = notebook_file(reader, record, ".html")
    if notebook is not None:
        links.append(f"<a href='{e(href(notebook, out / 'trials'))}'>the executed notebook</a>")
    if previous is not None and valid_key(previous.key):
        links.append(f"<a href='{previous.key}.html'>previous trial of this identity ({e(previous.key)})</a>")
        links.append(f"<a href='../compare.html#{previous.key},{record.key}'>compare with it</a>")
    parts = [f"<nav>{' · '.join(links)}</nav>", f"<h1>{e(record.name)}{_badges(record)}</h1>"]
    facts = [
        f"experiment <b>{e(record.experiment)}</b>",
        f"variants <b>{e(record.variants or '-')}</b>",
        f"key {e(record.key)}",
        f"iteration {e(record.iteration if not record.debug else 'debug')}",
        f"commit {e((record.commit or '-')[:12])}",
        f"seed {e(record.seed)}",
        f"started {record.started:%Y-%m-%d %H:%M:%S}",
        *(
            [f"session <a href='../index.html#session={e(record.session)}'>{e(record.session)}</a>"]
            if record.session
            else []
        ),
    ]
    parts.append(f"<p>{' · '.join(facts)}</p>")
    if record.reproduces:
        original = linked(f"{record.reproduces}.html" if valid_key(record.reproduces) else None, record.reproduces)
        parts.append(f"<p>A reproduction of trial {original}: {e(record.verdict or record.status)}.</p>")
    if record.message:
        parts.append(f"<h2>Failure</h2><pre class='wrap'>{e(record.message)}</pre>")
    parts.append(_figures(figures))
    charts = [
        chart(f"series-{i}", figure)
        for i, (name, value) in enumerate(record.metrics.items())
        if (figure := series_figure(name, value)) is not None
    ]
    parts.append(f"<h2>Main and metrics</h2>{_results(record)}<div class='charts'>{''.join(charts)}</div>")
    parts.append(f"<h2>Parameters</h2>{_params(record)}")
    if record.warnings:
        parts.append("<h2>Warnings</h2><pre class='wrap'>" + e("\n".join(map(str, record.warnings))) + "</pre>")
    digest = record.environment_digest
    if digest not in environments:
        environments[digest] = _environment(reader.environment(record))
    parts.append(f"<h2>Environment</h2>{environments[digest]}")
    if previous is not None:
        parts.append(
            f"<h2>Since the previous trial of this identity</h2><pre>{e(diff_records(reader, previous, record, files=False))}</pre>"
        )
    else:
        parts.append("<p>No earlier trial of this identity.</p>")
    return page(record.name, "".join(parts), "../", charts=bool(charts))
