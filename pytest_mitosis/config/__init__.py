"""Configuration: what the user asked for, from ``[tool.mitosis]`` and the command line, as trials.

Owns the ``[+]STEP.PARAM=VALUE`` syntax (:mod:`.assignments`), the pyproject tables
(:mod:`.project`), the session's frozen settings (:mod:`.settings`), importing the user's step
functions and lookup dicts (:mod:`.steps`), expanding experiments into trial specs
(:mod:`.variants`) and selecting the experiments of a session, each isolated from the
others' problems (:mod:`.experiments`).

May import: :mod:`pytest_mitosis.core`. Never pytest (options are declared in the pytest
layer, :mod:`pytest_mitosis.pytest_layer.options`), never the store, execution, checks or views.
"""
