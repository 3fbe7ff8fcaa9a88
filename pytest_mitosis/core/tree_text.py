"""Canonical trees (:mod:`.fingerprint`) read back for people: a short text, and where two differ.

The lock-conflict message says what a variant meant, what it means now, and where they first
differ; the CLI and reproductions show recorded values the same way. Kept apart from the
fingerprinting itself, which only turns values into trees. No pytest import.
"""

from __future__ import annotations

import json
from typing import Any

from .fingerprint import dumps


def render(tree: Any, limit: int = 120) -> str:
    """A short, Python-like text of a canonical tree, for messages."""
    text = _render(tree)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _render(tree: Any) -> str:
    if isinstance(tree, list):
        return "[" + ", ".join(_render(v) for v in tree) + "]"
    if not isinstance(tree, dict):
        return repr(tree)
    tag, payload = next(iter(tree.items()))
    if tag == "tuple":
        return "(" + ", ".join(_render(v) for v in payload) + ("," if len(payload) == 1 else "") + ")"
    if tag.startswith("dict"):
        return "{" + ", ".join(f"{_render(k)}: {_render(v)}" for k, v in payload) + "}"
    if tag in ("set", "frozenset"):
        return tag + "({" + ", ".join(_render(v) for v in payload) + "})"
    if tag == "ndarray":
        shape = "x".join(map(str, payload["shape"])) or "scalar"
        items = payload.get("items")
        shown = ", ".join(_render(v) for v in items[:6]) + (", ..." if len(items) > 6 else "") if items else "..."
        return f"array<{payload['dtype']}, {shape}>[{shown}]"
    if tag == "numpy":
        return _render(payload["value"]) if "value" in payload else str(payload["repr"])
    if tag in ("ref", "enum", "const"):
        return str(payload)
    if tag == "float":
        return str(payload)
    if tag in ("repr", "floatlike", "intlike", "path", "strlike"):
        return str(payload["value"])
    if tag in ("dataclass", "namedtuple", "object", "estimator"):
        fields = payload.get("fields") or payload.get("state") or payload.get("params") or {}
        if isinstance(fields, dict) and "dict" in fields:
            fields = {_render(k): v for k, v in fields["dict"]}
        inner = ", ".join(f"{k}={_render(v)}" for k, v in fields.items())
        return f"{payload['type'].split(':')[-1]}({inner})"
    return f"{tag}:{_render(payload)}"


def difference(old: Any, new: Any, where: str = "") -> str | None:
    """Where two canonical trees first differ (``None`` when equal), for the lock message."""
    if dumps(old) == dumps(new):
        return None
    found = None
    if isinstance(old, list) and isinstance(new, list):
        found = _list_difference(old, new, where)
    elif isinstance(old, dict) and isinstance(new, dict) and old.keys() == new.keys() and len(old) == 1:
        (tag,) = old.keys()
        found = _tagged_difference(tag, old[tag], new[tag], where)
    return found or f"{where or 'the value'}: {_render(old)} vs {_render(new)}"


def _list_difference(old: list[Any], new: list[Any], where: str) -> str | None:
    """Their lengths, or the first element that differs."""
    if len(old) != len(new):
        return f"{where or 'the value'}: length {len(old)} vs {len(new)}"
    for i, (a, b) in enumerate(zip(old, new)):
        found = difference(a, b, f"{where}[{i}]")
        if found:
            return found
    return None


def _tagged_difference(tag: str, a: Any, b: Any, where: str) -> str | None:
    """Inside two values of one kind (``tag``): an array's, a dict's pairs, the fields of a tagged object, the
    items of a tagged sequence; ``None`` when nothing inside tells where."""
    if tag == "ndarray":
        return _array_difference(a, b, where)
    if tag.startswith("dict"):
        found = _pairs_difference(a, b, where)
        if found:
            return found
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            found = difference(
                a.get(key), b.get(key), f"{where}.{key}" if key not in ("fields", "state", "params") else where
            )
            if found:
                return found
    if isinstance(a, list) and isinstance(b, list):
        return difference(a, b, where)
    return None


def _array_difference(a: dict[str, Any], b: dict[str, Any], where: str) -> str:
    """Dtype or shape, else the first element that differs (when both kept theirs), else the digests."""
    if a["dtype"] != b["dtype"] or a["shape"] != b["shape"]:
        return f"{where or 'the array'}: dtype/shape {a['dtype']} {a['shape']} vs {b['dtype']} {b['shape']}"
    if "items" in a and "items" in b:
        for i, (x, y) in enumerate(zip(a["items"], b["items"])):
            if dumps(x) != dumps(y):
                return f"{where}[flat index {i}]: {_render(x)} vs {_render(y)}"
    return f"{where or 'the array'}: elements differ (sha256 {a.get('sha256', '')[:12]} vs {b.get('sha256', '')[:12]})"


def _pairs_difference(a: list[Any], b: list[Any], where: str) -> str | None:
    """The first key (in the order of its JSON text) only one dict has, or whose values differ."""
    ka, kb = {dumps(k): v for k, v in a}, {dumps(k): v for k, v in b}
    for key in sorted(set(ka) | set(kb)):
        if key not in ka or key not in kb:
            return f"{where}[{_render(json.loads(key))}]: only in the {'attempted' if key in kb else 'stored'} value"
        found = difference(ka[key], kb[key], f"{where}[{_render(json.loads(key))}]")
        if found:
            return found
    return None


def span(seconds: float) -> str:
    """A duration as the terminal views write it: ``4.2s``, ``42s``, ``3m05s``, ``2h03m``."""
    if seconds < 9.95:
        return f"{max(0.0, seconds):.1f}s"
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
