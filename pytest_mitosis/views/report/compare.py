"""The compare page: any two or more trials, only what differs, grouped as ``diff`` groups it.

``compare.html#KEY,KEY,...`` is what the index's checkboxes open: the page loads each
trial's facts (:mod:`.facts`) and shows, per group (code, parameters, environment, seed),
the labels whose values differ, then main and metrics side by side, the series overlaid,
and the figures side by side. ``python -m pytest_mitosis compare KEY KEY ...``
(:func:`write_compare`) writes ``compare/<key>-<key>....html`` with the keys fixed and, since
it may run git, the files changed between consecutive commits, as ``diff`` lists them.
"""

from __future__ import annotations

from pathlib import Path

from ...store import Reader, TrialRecord, valid_key
from ..records_text import _changed_files
from .html import page, script_json, write

_BODY = (
    "<nav><a href='{root}index.html'>all trials</a></nav><h1>Compare trials</h1>"
    "<p>Only what differs is listed, grouped as <code>python -m pytest_mitosis diff</code> groups it; "
    "main and metrics are shown for every trial (differing values highlighted).</p><div id='comparison'></div>"
)


def compare_html(root: str, preset: dict[str, object] | None = None) -> str:
    """The compare page; ``root`` leads from its folder to the report's (``""`` or ``"../"``)."""
    call = f"comparePage({script_json(root)},{script_json(preset)})"
    script = f"<script>document.addEventListener('DOMContentLoaded',()=>{call});window.addEventListener('hashchange',()=>location.reload())</script>"
    return page("Compare trials", _BODY.format(root=root) + script, root, charts=True)


def write_compare(reader: Reader, records: list[TrialRecord], out: Path, files: bool = True) -> Path:
    """Write the compare page of ``records`` (two or more, in this order) into ``out/compare``; return its path.

    ``files`` lists the files changed between consecutive distinct commits (runs ``git diff
    --name-status`` in the current directory's repository, as ``diff`` does).
    """
    keys = [r.key for r in records if valid_key(r.key)]
    changed: dict[str, str] = {}
    if files:
        for a, b in zip(records, records[1:]):
            if a.commit and b.commit and a.commit != b.commit:
                label = f"files changed {a.commit[:8]} → {b.commit[:8]}"
                if label not in changed:
                    changed[label] = "\n".join(line.strip() for line in _changed_files(a.commit, b.commit).splitlines())
    (out / "compare").mkdir(parents=True, exist_ok=True)
    path = out / "compare" / f"{'-'.join(keys)}.html"
    write(path, compare_html("../", {"keys": keys, "groups": {"code": changed}}))
    return path
