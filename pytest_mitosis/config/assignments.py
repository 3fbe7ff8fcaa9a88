"""``[+]STEP.PARAM=VALUE``: how parameters are written on the command line and in experiment tables.

Pure (no pytest import): ``options.py`` uses it as an argparse ``type=``, ``config/project.py`` for
the ``params``/``eval`` tables of ``[tool.mitosis.experiments]``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass

#: STEP.PARAM=VALUE, with an optional leading "+" marking the parameter untracked.
_ASSIGNMENT = re.compile(r"^(?P<plus>\+)?(?P<step>[^=\s]+)\.(?P<param>[A-Za-z_]\w*)=(?P<value>.*)$", re.S)


@dataclass(frozen=True)
class Assignment:
    """One ``STEP.PARAM=VALUE`` from the command line or an experiment table."""

    step: str
    param: str
    value: str
    untracked: bool
    #: "param" (narrows a lookup param to a variant) or "eval" (a Python expression)
    kind: str
    #: where it was written: the option name, or the file and table key
    source: str

    @property
    def target(self) -> str:
        return f"{self.step}.{self.param}"


def parse_assignment(text: str, option: str, what: str) -> Assignment:
    """Parse ``[+]STEP.PARAM=VALUE``; raise ``ArgumentTypeError`` naming the option otherwise."""
    match = _ASSIGNMENT.match(text)
    if match is None or not match.group("value").strip():
        raise argparse.ArgumentTypeError(
            f"expected [+]STEP.PARAM={what}, for example "
            f"{'sine.frequency=slow' if what == 'VARIANT' else 'sine.amplitude=4'}, got {text!r}"
        )
    return Assignment(
        step=match.group("step"),
        param=match.group("param"),
        value=match.group("value").strip(),
        untracked=bool(match.group("plus")),
        kind="eval" if what == "EXPR" else "param",
        source=option,
    )
