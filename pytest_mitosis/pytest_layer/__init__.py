"""The pytest layer: what pytest sees of pytest-mitosis (options, collection, the hooks, the session's context).

Owns the options (:mod:`.options`), rootdir handling (:mod:`.rootdir`), collecting
``pyproject.toml`` (:mod:`.collection`), the sweep size guard (:mod:`.selection`), the hooks
of a run (:mod:`.hooks`, :mod:`.session_end`), the per-session context and its services
(:mod:`.session`), the progress line (:mod:`.progress`), the session's record
(:mod:`.session_record`) and the pytest-html extras (:mod:`.html_extras`).

Rule: may import pytest and every stage (views, recording, checks, execution, store, identity,
config, core); never :mod:`pytest_mitosis.distributed`, which builds on it.
"""
