"""What every part of the report shares: links, file names, JSON for scripts, chart texts, atomic writes.

A store is a file a colleague can hand you, so nothing recorded is trusted: every link goes
through :func:`href` or :func:`trial_href` (relative, percent-encoded, never a scheme), a file
name through :func:`page_name`, and data handed to JavaScript through :func:`script_json`
(which cannot close the ``<script>`` element it sits in; the templates' ``|tojson`` uses it).
Every text of a page is HTML-escaped by the templates (:mod:`.render`). Files are written
through a temporary file of our own and renamed into place, with the permissions the umask
gives.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from ...store import new_file, valid_key


def plot_text(value: Any) -> str:
    """``value`` as a text of a plotly chart (a title, a legend entry, an axis tick, hover text).

    plotly.js reads these texts as a small subset of HTML (``<br>``, ``<b>``, ``<a href>``) and
    decodes ``&amp;``, ``&lt;`` and ``&gt;`` but no other named entity: so only ``&``, ``<`` and
    ``>`` are escaped, and a recorded ``"lorenz"`` shows as written, never as ``&quot;lorenz&quot;``
    (what HTML escaping gives). The figure then goes through :func:`script_json`.
    """
    return str(value).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def script_json(value: Any) -> str:
    """``value`` as JSON that is safe inside ``<script>``: ``<``, ``>``, ``&`` and U+2028/9 escaped."""
    try:
        text = json.dumps(value, separators=(",", ":"), allow_nan=False, default=str)
    except ValueError:  # a NaN or an infinity somewhere: walk the value only then
        text = json.dumps(finite(value), separators=(",", ":"), allow_nan=False, default=str)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def finite(value: Any) -> Any:
    """``value`` with NaN and infinities as ``None`` (JSON has neither), containers walked."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    if isinstance(value, dict):
        return {str(k): finite(v) for k, v in value.items()}
    return value


def href(target: Path, start: Path) -> str:
    """A relative, percent-encoded link from the folder ``start`` to ``target`` (never a scheme)."""
    relative = quote(Path(os.path.relpath(target, start)).as_posix(), safe="/")
    return relative if relative.startswith("../") else f"./{relative}"


def trial_href(key: str, prefix: str) -> str | None:
    """The trial page's link from a folder ``prefix`` (``""`` from the index), for a valid key only."""
    return f"{prefix}trials/{key}.html" if valid_key(key) else None


def page_name(experiment: str) -> str:
    """A file name for an experiment's page that stays inside the report folder."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", experiment).lstrip(".") or "_"


def variant_names(params: Sequence[Mapping[str, Any]]) -> list[str]:
    """A trial's variant names and eval parts (from its ``params``), exactly (names may contain '-')."""
    return [p["text"] if p["kind"] == "lookup" else f"{p['name']}={p['text']}" for p in params if p["kind"] != "seed"]


def write(path: Path, text: str | bytes) -> None:
    """Write atomically through a temporary file of our own (two sessions may refresh at once)."""
    handle, tmp = new_file(path.parent, f".{path.name}.")  # mode 0666 less the umask, like every other file
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(text.encode("utf-8") if isinstance(text, str) else text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
