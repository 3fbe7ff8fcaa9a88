"""The compare page: any two or more trials, only what differs, grouped as ``diff`` groups it.

``compare.html#KEY,KEY,...`` is what the index's checkboxes open: the page loads each
trial's compare data (:mod:`.compare_data`) and shows, per group (code, parameters, environment, seed),
the labels whose values differ, then main and metrics side by side, the series overlaid,
and the figures side by side. ``python -m pytest_mitosis compare KEY KEY ...``
(:func:`write_compare`) writes ``compare/<key>-<key>....html`` with the keys fixed and, since
it may run git, the files changed between consecutive commits, as ``diff`` lists them.
The page is ``templates/compare.html.j2``; report.js (``comparePage``) fills it in.
"""

from __future__ import annotations

from pathlib import Path

from jinja2 import Environment

from ...store import Reader, TrialRecord, valid_key
from ..records_text import _changed_files
from .html import write


def compare_html(env: Environment, root: str, preset: dict[str, object] | None = None) -> str:
    """The compare page (``templates/compare.html.j2``); ``root`` leads from its folder to the report's (``""`` or ``"../"``)."""
    return env.get_template("compare.html.j2").render(title="Compare trials", prefix=root, charts=True, preset=preset)


def write_compare(env: Environment, reader: Reader, records: list[TrialRecord], out: Path, files: bool = True) -> Path:
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
    write(path, compare_html(env, "../", {"keys": keys, "groups": {"code": changed}}))
    return path
