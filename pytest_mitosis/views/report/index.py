"""The index: one row per trial, sortable, filtered by experiment, variant, status, commit, host and session.

The count at the top follows the filters. Reproductions and debug trials are marked; a
checkbox per row picks trials for the compare page (``templates/index.html.j2``). Rewritten on
every refresh, in one pass over the records; a finished trial's row (``templates/index_row.html.j2``)
never changes, so it is rendered once and kept for the next refresh.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from jinja2 import Environment, Template
from markupsafe import Markup

from ...core.rules import as_number
from ...store import SessionRecord, valid_key
from .html import variant_names
from .summaries import TrialSummary

HEAD = (
    "",
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
)


def _head(jobs: bool) -> tuple[str, ...]:
    """The columns: a ``job`` column after ``host`` only when a trial shown ran as a batch job (a Slurm task)."""
    at = HEAD.index("host") + 1
    return HEAD[:at] + ("job",) + HEAD[at:] if jobs else HEAD


def _row(row: Template, r: TrialSummary, keys: set[str], variants: str, jobs: bool = False) -> str:
    """One row; ``variants`` is the identity's JSON list of variant names (built once per identity); ``jobs``:
    the table has a ``job`` column."""
    main = as_number(r.main)
    if main is not None and not isinstance(r.main, int):
        main_text = f"{main:.6g}"  # full precision stays in data-v, for sorting
    else:
        main_text = "-" if r.main is None else repr(r.main) if not isinstance(r.main, str) else r.main
    classes = (
        r.status if r.status != "passed" else "",
        "debug" if r.debug else "",
        "reproduction" if r.reproduces else "",
    )
    return row.render(
        r=r,
        good=valid_key(r.key),
        original=bool(r.reproduces) and valid_key(r.reproduces) and r.reproduces in keys,
        classes=" ".join(c for c in classes if c),
        kind="debug" if r.debug else "reproduction" if r.reproduces else "trial",
        commit=(r.commit or "-")[:8],
        variants=variants,
        main=main,
        main_text=main_text[:40],
        jobs=jobs,
    )


def _session_choices(
    records: Sequence[TrialSummary], sessions: Sequence[SessionRecord]
) -> tuple[list[str], dict[str, str]]:
    present = {r.session or "-" for r in records}
    named = {s.key: f"{s.key} {s.started:%Y-%m-%d %H:%M}" for s in sessions}
    order = [s.key for s in sessions if s.key in present]  # newest first
    order += sorted(present - set(order) - {"-"}) + (["-"] if "-" in present else [])
    return order, {**named, "-": "- (none recorded)"}


def index_page(
    env: Environment,
    records: Sequence[TrialSummary],
    experiments: Sequence[str],
    rows_cache: dict[str, list[str]] | None = None,
    sessions: Sequence[SessionRecord] = (),
) -> str:
    """The index's HTML (written by the caller to ``index.html``).

    The session filter offers the sessions of the trials shown, newest first, each named by its
    key and start (``3f9a2b1c 2026-11-23 18:40``); trials recorded before sessions were, ``-``.

    ``rows_cache`` (key → [what the row depends on, its HTML]) is read and updated: a
    finished trial's row never changes, so a refresh builds only the new rows.
    """
    cache = rows_cache if rows_cache is not None else {}
    no_labels: dict[str, str] = {}
    filters = [
        ("experiment", experiments, no_labels),
        ("variants", sorted({v for r in records for v in variant_names(r.params)}), no_labels),
        ("status", sorted({r.status for r in records}), no_labels),
        ("commit", sorted({(r.commit or "-")[:8] for r in records}), no_labels),
        ("host", sorted({r.host for r in records}), no_labels),
        ("session", *_session_choices(records, sessions)),
        (
            "kind",
            sorted({"debug" if r.debug else "reproduction" if r.reproduces else "trial" for r in records}),
            no_labels,
        ),
    ]
    keys = {r.key for r in records}
    variants: dict[tuple[str, str], str] = {}
    for r in records:
        if (r.experiment, r.identity) not in variants:
            variants[(r.experiment, r.identity)] = json.dumps(variant_names(r.params))
    row = env.get_template("index_row.html.j2")
    jobs = any(r.job for r in records)
    built = []
    for r in records:
        # a kept row has the columns of its day: one without a job column is built again once there is one
        depends = f"{r.status}:{r.verdict}:{r.folder}:{r.reproduces in keys if r.reproduces else ''}:{jobs:d}"
        cached = cache.get(r.key)
        if cached is not None and cached[0] == depends:
            built.append(cached[1])
            continue
        html = _row(row, r, keys, variants[(r.experiment, r.identity)], jobs)
        if valid_key(r.key) and r.status != "running":
            cache[r.key] = [depends, html]
        built.append(html)
    return env.get_template("index.html.j2").render(
        title="Trials",
        prefix="",
        charts=False,
        total=len(records),
        experiments=experiments,
        filters=filters,
        head=_head(jobs),
        rows=Markup("".join(built)),  # rows that index_row.html.j2 rendered (now or at an earlier refresh)
    )
