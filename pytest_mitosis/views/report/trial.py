"""One page per trial: figures, parameters, main and metrics, the failure, the environment, the neighbours.

Written once (a finished trial never changes), together with the trial's compare data
(:mod:`.compare_data`) and its figures (:mod:`.figures`), from ``templates/trial.html.j2``. The difference to the previous trial of
the same identity is ``diff``'s own text (:func:`~pytest_mitosis.views.records_text.diff_records`,
without running git), and the page links to the compare page with that trial.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from jinja2 import Environment
from markupsafe import Markup

from ...store import Reader, TrialRecord, job_text, valid_key
from ..records_text import diff_records, short
from .charts import series_figure
from .figures import Figure, notebook_file
from .html import href


def _params(record: TrialRecord) -> list[dict[str, Any]]:
    """Each parameter's step, name, value (shortened), how it was chosen and whether it is tracked."""
    rows = []
    for p in record.params:
        how = {"lookup": "variant", "eval": "eval", "seed": "trial seed"}.get(str(p.get("kind")), str(p.get("kind")))
        rows.append(
            {
                "step": p.get("step"),
                "name": p.get("name"),
                "value": short(p.get("repr", p.get("value")), 200),
                "how": how,
                "text": p.get("text") if p.get("kind") != "seed" else "",
                "tracked": "" if p.get("tracked") or p.get("kind") == "seed" else " (untracked)",
            }
        )
    return rows


def _results(record: TrialRecord) -> list[tuple[str, str]]:
    """Main, then every metric, each shortened to 200 characters."""
    rows = [("main", short(record.main, 200))]
    rows += [(name, short(value, 200)) for name, value in record.metrics.items() if name != "main"]
    return rows


def environment_html(env: Environment, recorded: dict[str, Any]) -> Markup:
    """An environment's section of the trial pages (``templates/environment.html.j2``), shared by its trials."""
    python, platform, cpu = recorded.get("python") or {}, recorded.get("platform") or {}, recorded.get("cpu") or {}
    packages = recorded.get("packages") or {}
    summary = (
        f"Python {python.get('version', '?')} ({python.get('implementation', '?')}) on {platform.get('platform', '?')}, "
        f"host {recorded.get('hostname', '?')}, cpu {cpu.get('model', '?')} ×{cpu.get('count', '?')}, "
        f"gpus: {', '.join(map(str, recorded.get('gpus') or [])) or 'none'}"
    )
    variables = recorded.get("env")
    extra = [
        (k, json.dumps(v))
        for k, v in recorded.items()
        if k not in ("python", "platform", "cpu", "hostname", "packages", "env", "gpus", "git")
    ]
    html = env.get_template("environment.html.j2").render(
        summary=summary,
        variables=", ".join(f"{k}={v}" for k, v in variables.items()) if isinstance(variables, dict) else "",
        extra=extra,
        count=len(packages),
        packages=list(packages.items()) if isinstance(packages, dict) else [],
    )
    return Markup(html)  # rendered by our own template, escaped there


def trial_page(
    env: Environment,
    reader: Reader,
    record: TrialRecord,
    previous: TrialRecord | None,
    figures: list[Figure],
    out: Path,
    environments: dict[str, Markup],
) -> str:
    """The page's HTML (written by the caller to ``trials/<key>.html``); ``environments`` caches their HTML by digest."""
    notebook = notebook_file(reader, record, ".html")
    series = [
        (f"series-{i}", figure)
        for i, (name, value) in enumerate(record.metrics.items())
        if (figure := series_figure(name, value)) is not None
    ]
    digest = record.environment_digest
    if digest not in environments:
        environments[digest] = environment_html(env, reader.environment(record))
    return env.get_template("trial.html.j2").render(
        title=record.name,
        prefix="../",
        charts=bool(series),
        record=record,
        job=job_text(record.job),
        notebook=href(notebook, out / "trials") if notebook is not None else None,
        previous_key=previous.key if previous is not None and valid_key(previous.key) else None,
        original=f"{record.reproduces}.html" if record.reproduces and valid_key(record.reproduces) else None,
        figures=figures,
        results=_results(record),
        series=series,
        params=_params(record),
        environment=environments[digest],
        difference=diff_records(reader, previous, record, files=False) if previous is not None else None,
    )
