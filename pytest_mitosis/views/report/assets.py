"""The report's shared files in ``<report>/assets/``: plotly.js, the stylesheet, the script.

Charts are drawn by plotly.js (MIT licence), the bundle that the ``plotly`` package ships as
package data (``plotly/package_data/plotly.min.js``). It is copied once into the report
folder and every page loads it by a relative ``<script src>``: the report opens from a file
browser, offline, and makes no network request. plotly.js rather than Vega-Lite: one file
holds every chart the report needs (scatter with hover and click, WebGL lines for long
series, parallel coordinates, zoom, legend toggles) and a Python package that is easy to
install ships it; no PyPI package ships the three Vega bundles together. The price is its
size (about 4.8 MB), paid once per report folder, not per page.

The plotly package is located without importing it (its import pulls in narwhals and more,
and the pytest session refreshes the report at its end).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from ...store import RecordsError
from .html import write

_HERE = Path(__file__).parent


def plotly_bundle() -> Path:
    """The installed plotly.min.js; a clear error when the plotly package is missing."""
    spec = importlib.util.find_spec("plotly")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        bundle = Path(folder) / "package_data" / "plotly.min.js"
        if bundle.is_file():
            return bundle
    raise RecordsError(
        "the report's charts need plotly.js, which the 'plotly' package ships, and it is not installed "
        "(or has no package_data/plotly.min.js): pip install plotly"
    )


def write_assets(out: Path) -> None:
    """Copy the bundle and write the stylesheet and script into ``out/assets`` when they differ.

    A refresh compares sizes (and the small files' contents) before writing, so it costs a
    few ``stat`` calls; an upgraded plotly or pytest-mitosis replaces them.
    """
    folder = out / "assets"
    folder.mkdir(exist_ok=True)
    bundle = plotly_bundle()
    target = folder / "plotly.min.js"
    if not target.is_file() or target.stat().st_size != bundle.stat().st_size:
        write(target, bundle.read_bytes())
    for name in ("report.css", "report.js"):
        text = (_HERE / name).read_bytes()
        target = folder / name
        if not target.is_file() or target.read_bytes() != text:
            write(target, text)
