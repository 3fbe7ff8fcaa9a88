"""Min/max-preserving down-sampling of a metric series: which points a long series keeps.

One rule serves every layer that shows or records a series: the kernel's runtime (what
``outcome.json``, ``trial.yaml`` and the store keep of a metric series; the full series stays
in the step's result pickle) and the report's charts. A series of 10^7 points recorded whole
made a 149 MB ``outcome.json``, a 139 MB ``trial.yaml`` and 89 MB in the store.

Min/max decimation keeps the first and last points and, in each of ``(limit - 2) // 2`` buckets,
the smallest and the largest value (in their order): the envelope of a noisy series and every
spike survive, unlike taking every n-th point. Standard library only: the kernel imports this.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

#: points a recorded or plotted series keeps at most
POINTS = 2000


def keep(values: Sequence[Any], limit: int = POINTS) -> list[int]:
    """The indices of ``values`` to keep, ascending: all of them up to ``limit``, else first, last,
    and each bucket's min and max (non-finite values are never a bucket's min or max).

    ``values`` may be a list or a one-dimensional array (anything with ``len`` and slicing; an
    array's slices are turned into lists one bucket at a time, so a 10^7-point array is never
    copied whole). At most ``limit`` indices come back (``limit`` even), fewer when a bucket's
    min and max are one point.
    """
    n = len(values)
    if n <= limit:
        return list(range(n))
    buckets = max(1, (limit - 2) // 2)
    size = (n - 2) / buckets
    kept = [0]
    for b in range(buckets):
        start, stop = 1 + int(b * size), 1 + int((b + 1) * size)
        chunk = _listed(values[start:stop])
        extremes = _extremes(chunk)
        if extremes is not None:
            kept += [start + i for i in sorted(set(extremes))]
    kept.append(n - 1)
    return kept


def _listed(chunk: Any) -> list[Any]:
    tolist = getattr(chunk, "tolist", None)
    listed = tolist() if callable(tolist) else chunk
    return listed if isinstance(listed, list) else list(listed)


def _extremes(chunk: list[Any]) -> tuple[int, int] | None:
    """The positions of the first min and the first max of ``chunk``'s finite values (``None``: none)."""
    try:
        if chunk and all(map(math.isfinite, chunk)):  # the usual case, at C speed
            return chunk.index(min(chunk)), chunk.index(max(chunk))
    except (TypeError, ValueError, OverflowError):
        pass
    finite = [i for i, v in enumerate(chunk) if _finite(v)]
    if not finite:
        return None
    return min(finite, key=chunk.__getitem__), max(finite, key=chunk.__getitem__)


def _finite(value: Any) -> bool:
    try:
        return math.isfinite(value)
    except (TypeError, ValueError, OverflowError):
        return False
