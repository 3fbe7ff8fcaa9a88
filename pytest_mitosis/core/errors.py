"""The exceptions pytest-mitosis raises for its users, one class per phase.

Each message names the file, key or variant, what was expected, what was found and what to
do; the pytest layer turns them into ``ERROR collecting``, ``ERROR at setup`` or a failure
without a traceback from our code. No pytest import here.
"""

from __future__ import annotations


def shorten(value: object, limit: int = 80) -> str:
    """``repr(value)`` on one line, cut to ``limit`` characters, for messages and headers.

    A value whose ``repr`` raises still gets a text (its type), so a message is never lost.
    """
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


class MitosisError(Exception):
    """Base class: ``str(err)`` is the complete message shown to the user."""


class ConfigError(MitosisError):
    """``[tool.mitosis]`` or a command-line parameter cannot be turned into trials."""


class TrialFailed(MitosisError):
    """A trial ran and failed; the message names the step and the saved notebook."""
