"""Execution: one trial's notebook, run in a fresh kernel, saved as artifacts, as a ``TrialOutcome``.

Owns writing the notebook (:mod:`.notebook`), a fresh kernel process for each trial
(:mod:`.launch`: forked from the warm parent of :mod:`.forkserver`/:mod:`.forkparent`, with
:mod:`.provisioner` and :mod:`.preload`, or spawned), running its cells (:mod:`.kernel`), the
helpers the notebook imports *inside the kernel* (:mod:`.runtime`, standard library only,
imported by module path from the notebook's set-up cell), the trial folder and its files
(:mod:`.artifacts`), the pipeline that ties them together (:mod:`.runner`), work started
before it is needed (:mod:`.warmup`: the next kernel, the git state and environment) and
silencing the Jupyter machinery's loggers (:mod:`.logs`).

This ``__init__`` imports nothing: the kernel imports ``pytest_mitosis.execution.runtime``,
and that must stay cheap and free of third-party packages.

May import: :mod:`pytest_mitosis.core`, :mod:`pytest_mitosis.config`,
:mod:`pytest_mitosis.store` (decoding recorded values into the trial's YAML). Never pytest,
checks or views.
"""
