"""The index: one row per trial, sortable, filtered by experiment, variant, status, commit, host and session.

The count at the top follows the filters. Reproductions and debug trials are marked; a
checkbox per row picks trials for the compare page. Rewritten on every refresh, so it is
built as one string in one pass over the records.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence

from ...core.rules import as_number
from ...store import SessionRecord, valid_key
from .html import e, page, page_name, variant_names
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


def _select(name: str, values: Sequence[str], labels: Mapping[str, str] | None = None) -> str:
    """A filter over the rows' ``data-NAME``; ``labels`` names an option otherwise shown by its value."""
    labels = labels or {}
    choices = "".join(f"<option value='{e(v)}'>{e(labels.get(v, v))}</option>" for v in values)
    return (
        f"<label>{name}<select data-filter='{name}' onchange='filterRows()'>"
        f"<option value=''>all</option>{choices}</select></label>"
    )


@functools.lru_cache(maxsize=8192)
def _text(value: str) -> str:
    """``e`` for the values that repeat from row to row (experiment, variants, status, commit, host)."""
    return e(value)


def _row(r: TrialSummary, keys: set[str], variants: str) -> str:
    """One row; ``variants`` is the identity's escaped JSON list of variant names (built once per identity)."""
    notebook = f"<a href='{e(r.notebook)}'>notebook</a>" if r.notebook else "-"
    good = valid_key(r.key)
    key = r.key if good else e(r.key)  # a valid key is 8 hex digits: nothing to escape
    trial = f"<a href='trials/{key}.html'>{key}</a>" if good else f"{key} (not a key: no page)"
    marks = "<span class='badge debug'>debug</span>" if r.debug else ""
    reproduces = "-"
    if r.reproduces:
        marks += "<span class='badge repro'>reproduction</span>"
        verdict = e(r.verdict or r.status)
        original = valid_key(r.reproduces) and r.reproduces in keys
        reproduces = (
            f"<a href='trials/{r.reproduces}.html'>{r.reproduces}</a> ({verdict})"
            if original
            else f"{e(r.reproduces)} ({verdict})"
        )
    status = _text(r.status)
    classes = " ".join(
        c
        for c in (
            status if r.status != "passed" else "",
            "debug" if r.debug else "",
            "reproduction" if r.reproduces else "",
        )
        if c
    )
    kind = "debug" if r.debug else "reproduction" if r.reproduces else "trial"
    main = as_number(r.main)
    commit = _text((r.commit or "-")[:8])
    host = _text(r.host)
    experiment = _text(r.experiment)
    box = f"<input type='checkbox' value='{key}' onchange='selectionChanged()'>" if good else ""
    if main is not None and not isinstance(r.main, int):
        main_text = f"{main:.6g}"  # full precision stays in data-v, for sorting
    else:
        main_text = "-" if r.main is None else repr(r.main) if not isinstance(r.main, str) else r.main
    return (
        f"<tr class='{classes}' data-experiment='{experiment}' data-variants='{variants}' "
        f"data-status='{status}' data-commit='{commit}' data-host='{host}' data-kind='{kind}' "
        f"data-session='{_text(r.session or '-')}'>"
        f"<td>{box}</td><td><a href='experiments/{_text(page_name(r.experiment))}.html'>{experiment}</a></td>"
        f"<td>{_text(r.variants or '-')}{marks}</td><td>{'debug' if r.debug else e(r.iteration)}</td><td>{status}</td>"
        f"<td class='num' data-v='{'' if main is None else main}'>{e(main_text[:40])}</td><td>{e(r.seed)}</td>"
        f"<td>{commit}</td><td>{host}</td><td data-v='{r.started.timestamp()}'>{r.started:%Y-%m-%d %H:%M}</td>"
        f"<td>{notebook}</td><td>{trial}</td><td>{reproduces}</td></tr>"
    )


def _session_select(records: Sequence[TrialSummary], sessions: Sequence[SessionRecord]) -> str:
    present = {r.session or "-" for r in records}
    named = {s.key: f"{s.key} {s.started:%Y-%m-%d %H:%M}" for s in sessions}
    order = [s.key for s in sessions if s.key in present]  # newest first
    order += sorted(present - set(order) - {"-"}) + (["-"] if "-" in present else [])
    return _select("session", order, {**named, "-": "- (none recorded)"})


def index_page(
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
    filters = "".join(
        [
            _select("experiment", experiments),
            _select("variants", sorted({v for r in records for v in variant_names(r.params)})),
            _select("status", sorted({r.status for r in records})),
            _select("commit", sorted({(r.commit or "-")[:8] for r in records})),
            _select("host", sorted({r.host for r in records})),
            _session_select(records, sessions),
            _select(
                "kind", sorted({"debug" if r.debug else "reproduction" if r.reproduces else "trial" for r in records})
            ),
            "<label>text<input id='search' type='search' oninput='filterRows()' placeholder='any cell'></label>",
        ]
    )
    keys = {r.key for r in records}
    variants: dict[tuple[str, str], str] = {}
    for r in records:
        if (r.experiment, r.identity) not in variants:
            variants[(r.experiment, r.identity)] = e(json.dumps(variant_names(r.params)))
    built = []
    for r in records:
        depends = f"{r.status}:{r.verdict}:{r.folder}:{r.reproduces in keys if r.reproduces else ''}"
        cached = cache.get(r.key)
        if cached is not None and cached[0] == depends:
            built.append(cached[1])
            continue
        row = _row(r, keys, variants[(r.experiment, r.identity)])
        if valid_key(r.key) and r.status != "running":
            cache[r.key] = [depends, row]
        built.append(row)
    rows = "".join(built)
    table = (
        "<table id='trials' class='sortable'><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in HEAD)
        + f"</tr></thead><tbody>{rows}</tbody></table>"
    )
    links = " · ".join(f"<a href='experiments/{e(page_name(x))}.html'>{e(x)}</a>" for x in experiments)
    body = (
        f"<h1>Trials</h1><p><span class='count' id='count'>{len(records)}</span> of {len(records)} trials shown, "
        f"{len(experiments)} experiment{'s' if len(experiments) != 1 else ''}: {links}. Click a column to sort it.</p>"
        f"<div class='filters'>{filters}<button id='compare' disabled onclick='openCompare()'>"
        f"compare: tick two or more trials</button></div>{table}"
    )
    return page("Trials", body, "")
