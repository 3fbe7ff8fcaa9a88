"""What pytest-xdist adds: a sweep over workers, local or on other hosts, with one controller and one store.

Owns the xdist hooks (:mod:`.hooks`: the controller's seed and session, crashed workers, the
local workers' shared warm parent), remote workers (:mod:`.remote`: a worker on another host
records through the controller), what crosses the wire between them (:mod:`.shipping`: files,
store calls; :mod:`.wire`: every message validated before use).

Rule: may import pytest, :mod:`pytest_mitosis.pytest_layer` and every stage; nothing imports it
but the entry point (:mod:`pytest_mitosis.plugin`).
"""
