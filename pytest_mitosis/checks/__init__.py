"""Checks: the rules that refuse, plan or judge trials, before and after their kernel runs.

Owns the clean-tree guard (:mod:`.clean_tree`: git state, what makes a commit a lie), the
sweep-size guard (:mod:`.sweep_size`), the whole-sweep plan shown by ``--mitosis-check``
(:mod:`.sweep_plan`), the verdict on a finished trial (:mod:`.verdict`: drift gate and
hypothesis) and reproductions (:mod:`.reproduction`).

May import: :mod:`pytest_mitosis.core`, :mod:`pytest_mitosis.config`,
:mod:`pytest_mitosis.identity`, :mod:`pytest_mitosis.store`, :mod:`pytest_mitosis.execution`.
Never pytest at run time (``pytest.Config`` appears in type hints only), never views.
"""
