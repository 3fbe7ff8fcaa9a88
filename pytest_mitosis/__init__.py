"""pytest-mitosis: reproducible computational experiments, run as parametrized pytest trials.

Importing this package must stay cheap: the trial notebook imports
:mod:`pytest_mitosis.runtime` inside every kernel, and ``plugin.py`` is loaded by every
pytest run of every project that has us installed. (PYTEST_DONT_REWRITE: our own asserts are not the user's tests, and an
already-imported package cannot be rewritten anyway.)
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
