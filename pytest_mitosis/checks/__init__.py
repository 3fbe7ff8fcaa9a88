"""Checks: the rules that refuse, plan or judge trials, before and after their kernel runs.

Owns the clean-tree guard (:mod:`.clean_tree`: git state, what makes a commit a lie), the
whole-sweep plan and ``--mitosis-check`` (:mod:`.sweep_plan`) and the verdict on a finished
trial (:mod:`.verdict`: drift gate and hypothesis). The sweep size guard reads pytest's
command line, so it is in the pytest layer (:mod:`pytest_mitosis.pytest_layer.selection`); reproductions
run and record a trial, so they are in :mod:`pytest_mitosis.recording`.

May import: :mod:`pytest_mitosis.core`, :mod:`pytest_mitosis.config`,
:mod:`pytest_mitosis.identity`, :mod:`pytest_mitosis.store` (and the execution's
``TrialOutcome`` for type hints only). Never pytest, recording or views.
"""
