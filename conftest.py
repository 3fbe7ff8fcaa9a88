"""Repository-wide test set-up: pytester for every test, nothing else.

Fixtures that build investigation repositories live in ``tests/conftest.py``.
"""

pytest_plugins = ["pytester"]
