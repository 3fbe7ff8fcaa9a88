"""Recording: runs that leave a record in the store, a new trial and a reproduction of an old one.

Each ties the stages together in the same order: take the record (checking the variant
locks atomically), run the notebook in a fresh kernel, judge the outcome, finalise the
record. :mod:`.trial` records a new trial; :mod:`.reproduction` re-runs a recorded one at its
commit and compares, with the commit checked out by :mod:`.checkout` and the trial rebuilt from
that commit's pyproject.toml by :mod:`.rebuild`. What the store could not take when it happened
(it was away) waits in the trials folder, kept and recorded later by :mod:`.pending`. The pytest layer calls these and reports what they return.

May import: core, config, identity, store, execution, checks. Never pytest, never views.
"""
