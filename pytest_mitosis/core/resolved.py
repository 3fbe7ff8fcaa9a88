"""A parameter value resolved in another process: what pytest's process needs of it, without the value.

Collection may import the steps in a fork of the warm parent instead of in pytest's process
(:mod:`pytest_mitosis.execution.forkcollect`): the lookup dicts' and eval expressions' values
then live in that fork only, and each trial's ``ParamSpec.value`` is this stand-in, made there
from the real value: its fingerprint (or the reason it has none), its short text for the
record, and its cell in the notebook's header. Pure, standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Resolved:
    """What pytest's process uses of a value that stayed in the process that resolved it."""

    #: ``(digest, tree)`` as :func:`pytest_mitosis.core.fingerprint.fingerprint` gave it, or ``None``
    fingerprint: tuple[str, Any] | None
    #: why it has no fingerprint, in the words of the refusal (when ``fingerprint`` is ``None``)
    unfingerprintable: str | None
    #: the value's text for the record when it has no fingerprint (``shorten(value, 120)``)
    short: str
    #: the value's cell in the notebook's header (``value_cell(value)``)
    cell: str
