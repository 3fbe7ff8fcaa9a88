"""pytest-html integration: a trial's row links to its notebook's HTML and shows its first figure.

Registered only when pytest-html is installed and active, so nothing here runs otherwise.
"""

from __future__ import annotations

import json
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest


def first_figure(notebook: Path) -> str | None:
    """The base64 PNG of the first figure in an executed notebook, if any."""
    try:
        nb = json.loads(notebook.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    for cell in nb.get("cells", []):
        for output in cell.get("outputs", []):
            png = output.get("data", {}).get("image/png")
            if png:
                return str(png).replace("\n", "")
    return None


class HtmlReportExtras:
    """Adds pytest-html extras to the call report of every trial and reproduction."""

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
        report = yield
        html = dict(item.user_properties).get("mitosis.html") if report.when == "call" else None
        if html:
            from pytest_html import extras

            found = list(getattr(report, "extras", []))
            found.append(extras.url(str(html), name="notebook"))
            png = first_figure(Path(str(html)).with_suffix(".ipynb"))
            if png:
                found.append(extras.png(png, name="first figure"))
            report.extras = found
        return report
