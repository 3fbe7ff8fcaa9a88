"""Identity and provenance: what a trial *is* (fingerprints of its tracked values, its variant
locks) and where it ran (the machine, the interpreter, the installed packages).

Owns :mod:`.trial` (``identify``: identity, locks, parameter record), :mod:`.locks` (the
variant-lock value object the store checks) and :mod:`.environment` (the environment record).

May import: :mod:`pytest_mitosis.core`, :mod:`pytest_mitosis.config`. Never pytest, the store,
execution, checks or views.
"""
