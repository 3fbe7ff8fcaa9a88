"""pytest's own ``-k``, ``-m`` and ``--deselect``, applied to items nobody collected: the xdist controller's count.

pytest-xdist's controller does not collect; its workers do, and only then did the sweep size
guard see what a session would run (17 s into a session whose answer was "no"). The controller
now builds the trials' items itself (:mod:`..distributed.sweep_count`) and needs to know which of
them pytest would keep. The selection must be exactly pytest's, or the guard would refuse a
session that pytest would have let through (or the reverse).

There is no public way to ask pytest whether an item matches an expression:
``pytest_collection_modifyitems`` of ``_pytest.mark`` deselects in place and announces it with
``pytest_deselected`` (the controller's terminal would then count the trials deselected twice).
So the matchers pytest uses themselves are called here, from its private
``_pytest.mark`` (``KeywordMatcher.from_item``, ``MarkMatcher.from_markers``,
``expression.Expression``), all of it in :func:`_matchers` and checked by
:func:`private_api_problem` (a test checks it against the installed pytest; pyproject.toml pins
pytest below its next major version). Where the API is not the one checked, nothing is
answered (``None``) and the guard waits for the workers' collection as before.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import pytest

#: the pytest versions whose ``_pytest.mark`` was read for this module (the last one tested)
CHECKED_PYTEST = "9.0.0 and 9.2.0"


def private_api_problem() -> str | None:
    """What of ``_pytest.mark`` this module needs is missing here, or ``None``."""
    try:
        from _pytest.mark import KeywordMatcher, MarkMatcher
        from _pytest.mark.expression import Expression
    except ImportError as err:
        return f"_pytest.mark has changed ({err})"
    for owner, name in (
        (KeywordMatcher, "from_item"),
        (MarkMatcher, "from_markers"),
        (Expression, "compile"),
        (Expression, "evaluate"),
    ):
        if not callable(getattr(owner, name, None)):
            return f"_pytest.mark has no {owner.__name__}.{name}"
    return None


def _matchers() -> tuple[Callable[[str], Any], Callable[[pytest.Item], Any], Callable[[pytest.Item], Any]]:
    """pytest's expression compiler and its matchers for ``-k`` and ``-m`` (the one place of private API)."""
    from _pytest.mark import KeywordMatcher, MarkMatcher
    from _pytest.mark.expression import Expression

    return Expression.compile, KeywordMatcher.from_item, lambda item: MarkMatcher.from_markers(item.iter_markers())


def kept(items: Sequence[pytest.Item], config: pytest.Config) -> list[pytest.Item] | None:
    """The ``items`` pytest keeps after ``-k``, ``-m`` and ``--deselect`` (as ``_pytest.mark`` and
    ``_pytest.main`` select them), or ``None`` when that cannot be told here: the private API
    differs, or an expression is malformed or not what a matcher takes (the workers report it
    then, in pytest's words)."""
    if private_api_problem() is not None:
        return None
    compile_expression, keywords, marks = _matchers()
    remaining = list(items)
    deselect = tuple(config.getoption("deselect") or ())
    if deselect:
        remaining = [item for item in remaining if not item.nodeid.startswith(deselect)]
    try:
        keyword = (config.option.keyword or "").lstrip()
        if keyword:
            expression = compile_expression(keyword)
            remaining = [item for item in remaining if expression.evaluate(keywords(item))]
        markexpr = config.option.markexpr or ""
        if markexpr:
            expression = compile_expression(markexpr)
            remaining = [item for item in remaining if expression.evaluate(marks(item))]
    except (SyntaxError, pytest.UsageError):
        return None
    return remaining
