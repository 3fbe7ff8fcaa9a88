"""A variant lock: once recorded, a variant name (or eval expression) of a step means one value for good.

A trial's identity (:mod:`.trial`) makes one lock per tracked parameter; the store checks them
against what earlier trials recorded, and takes them in the transaction that records the
trial. This value object is all the two share. No pytest import here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Lock:
    """``step.param``'s variant (or eval expression) ``name`` means the value with ``fingerprint``."""

    experiment: str
    step: str
    param: str
    kind: str  # "lookup" or "eval"
    name: str
    fingerprint: str
    value: Any  # canonical tree
    where: str  # the lookup dict, for the message
