"""The exceptions pytest-mitosis raises for its users, one class per phase.

Each message names the file, key or variant, what was expected, what was found and what to
do; the pytest layer turns them into ``ERROR collecting``, ``ERROR at setup`` or a failure
without a traceback from our code. No pytest import here.
"""

from __future__ import annotations


class MitosisError(Exception):
    """Base class: ``str(err)`` is the complete message shown to the user."""


class ConfigError(MitosisError):
    """``[tool.mitosis]`` or a command-line parameter cannot be turned into trials."""


class TrialFailed(MitosisError):
    """A trial ran and failed; the message names the step and the saved notebook."""
