"""The defaults the options' help texts name: constants only, since pytest imports them in every run.

:mod:`pytest_mitosis.pytest_layer.options` declares the options when pytest starts, whether or not
``--mitosis`` is given; it reads these here rather than from :mod:`.settings`, whose
dataclasses and parsers are imported only when a session uses them.
"""

from __future__ import annotations

#: environment variables recorded with every trial (see identity/environment.py)
DEFAULT_ENV_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "PYTHONHASHSEED",
    "MPLBACKEND",
    "VIRTUAL_ENV",
    "CONDA_DEFAULT_ENV",
)

#: files that cannot change a result and that tools create on their own (see checks/clean_tree.py)
DEFAULT_DIRTY_IGNORE = ("__pycache__/", "*.pyc", ".pytest_cache/", "*.egg-info/")

#: a plain `pytest --mitosis` runs at most this many trials without an explicit selection
DEFAULT_MAX_TRIALS = 100

#: what one cell of a trial's notebook shows at most (--mitosis-max-cell-output): the rest goes to a log
DEFAULT_MAX_CELL_OUTPUT = "4MB"

#: seconds a session waits for a store that went away (--mitosis-store-patience): a server restart, a
#: failover, a network blip are shorter; a store gone for longer fails the trial that needs it
DEFAULT_STORE_PATIENCE = 60.0
