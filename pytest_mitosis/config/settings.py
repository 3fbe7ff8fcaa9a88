"""The session's settings, frozen once resolved, and the argparse validators of their values.

Pure: the options are declared and resolved in the pytest layer (:mod:`pytest_mitosis.pytest_layer.options`,
precedence command line > ini > ``[tool.mitosis]`` > default); what they resolve to, and the
``type=`` callables that turn bad values into argparse usage errors, live here so that every
stage can read a ``Settings`` without importing pytest.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path

from ..core.rules import Limit
from .assignments import Assignment, parse_assignment
from .defaults import (
    DEFAULT_DIRTY_IGNORE,
    DEFAULT_ENV_VARS,
    DEFAULT_MAX_CELL_OUTPUT,
    DEFAULT_MAX_TRIALS,
    DEFAULT_STORE_PATIENCE,
)


def param_value(text: str) -> Assignment:
    return parse_assignment(text, "--mitosis-param", "VARIANT")


def eval_value(text: str) -> Assignment:
    return parse_assignment(text, "--mitosis-eval", "EXPR")


def absolute_store(url: str, base: Path) -> str:
    """``url`` with a relative ``sqlite:///PATH`` made absolute against ``base`` (other URLs as given).

    The store checks the whole URL when it opens it; here only the path is anchored, as the
    trials folder is: the command line's against the invocation directory, the ini key's against
    the rootdir, ``[tool.mitosis]``'s against its pyproject.toml.
    """
    prefix = "sqlite:///"
    if url.startswith(prefix) and not url.startswith(prefix + "/") and len(url) > len(prefix):
        return prefix + str((base / url[len(prefix) :]).resolve())
    return url


def parse_positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def parse_nonnegative_seconds(text: str) -> float:
    """A number of seconds, 0 allowed (``--mitosis-store-patience 0``: never wait)."""
    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds (0 or more), got {text!r}")
    return value


def parse_chain(text: str) -> tuple[str, ...]:
    """``data,odes`` (or ``data+odes``, the experiment's name): a chain of registered steps."""
    steps = tuple(part.strip() for part in text.replace("+", ",").split(","))
    if not all(steps):
        raise argparse.ArgumentTypeError(
            f"expected registered step names separated by commas, e.g. data,odes, got {text!r}"
        )
    return steps


def parse_count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number of trials (0: no limit), got {text!r}")
    return value


#: the units of a size (``--mitosis-max-cell-output``): decimal, and the binary ones
_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "kib": 2**10, "mib": 2**20, "gib": 2**30}


def parse_size(text: str) -> int:
    """``4MB``, ``500kB``, ``1.5MiB`` or a number of bytes (``0``: no limit) as bytes."""
    import re

    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if match is None or unit not in _UNITS:
        raise argparse.ArgumentTypeError(
            f"expected a size such as 4MB, 500kB or 1MiB (or a number of bytes; 0: no limit), got {text!r}"
        )
    return int(float(match.group(1)) * _UNITS[str(unit)])


_METRIC_NAME = re.compile(r"^[A-Za-z_][\w.-]*\Z")


def parse_metric_names(text: str) -> tuple[str, ...]:
    """``main,f1`` (after ``=``): the metrics whose direction ``--mitosis-higher-is-better=`` or
    ``--mitosis-lower-is-better=`` sets; anything else is an ``ArgumentTypeError``."""
    names = tuple(dict.fromkeys(n.strip() for n in text.split(",")))
    if not names or not all(_METRIC_NAME.match(n) for n in names):
        raise argparse.ArgumentTypeError(
            f"expected metric names separated by commas after '=', such as =main,f1, got {text!r}"
        )
    return names


MAX_SEED = 2**32 - 1  # numpy's legacy global generator takes seeds below 2**32


def parse_seed(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected an integer from 0 to {MAX_SEED}, got {text!r}")
    return value


@dataclass(frozen=True)
class Settings:
    """Options resolved once per session (``config.stash[settings_key]``)."""

    pyproject: Path
    trials_folder: Path | None
    params: tuple[Assignment, ...]
    evals: tuple[Assignment, ...]
    timeout: float | None
    debug: bool
    invocation_dir: Path
    dirty_ignore: tuple[str, ...] = DEFAULT_DIRTY_IGNORE
    env_vars: tuple[str, ...] = DEFAULT_ENV_VARS
    #: from --mitosis-seed or mitosis_seed; ``None``: drawn once per session (see session.py)
    seed: int | None = None
    check: bool = False
    compare: bool = False
    compare_fail: tuple[Limit, ...] = ()
    #: --mitosis-higher-is-better: ``True`` bare (main and every metric), else the names given (None: not given)
    higher_is_better: bool | tuple[str, ...] | None = None
    #: --mitosis-lower-is-better: the same, the other way (``True``: every metric lower-is-better)
    lower_is_better: bool | tuple[str, ...] | None = None
    reproduce: tuple[str, ...] = ()
    rtol: float = 0.0
    atol: float = 0.0
    report: bool = True
    #: files pytest writes for this session (--junitxml): never part of a dirty tree
    outputs: tuple[Path, ...] = ()
    #: a new trials folder gets a .gitignore holding ``*`` (ini mitosis_gitignore)
    gitignore: bool = True
    #: the SQLite store may live on a network filesystem (ini mitosis_allow_network_store)
    allow_network_store: bool = False
    #: --mitosis-store / ini mitosis_store (a relative sqlite:/// path already made absolute); None: the
    #: ``store`` of [tool.mitosis], else <trials folder>/mitosis.sqlite
    store: str | None = None
    #: chains of steps named with --mitosis-steps (then only these are collected)
    chains: tuple[tuple[str, ...], ...] = ()
    #: the sweep size guard: most trials run without an explicit selection (0: no limit)
    max_trials: int = DEFAULT_MAX_TRIALS
    #: --mitosis-summary / ini mitosis_summary: the Markdown summary is appended here
    summary: Path | None = None
    #: --mitosis-benchmark-json: github-action-benchmark's custom JSON is written here
    benchmark_json: Path | None = None
    #: --mitosis-kernel: "fork" or "spawn"; ``None``: fork where the platform allows it
    kernel: str | None = None
    #: ini mitosis_preload: modules the fork server imports as well (``-name``: never)
    preload: tuple[str, ...] = ()
    #: --mitosis-resume: trials whose identity passed at the current commit are skipped
    resume: bool = False
    #: --mitosis-progress-every / ini mitosis_progress_every: seconds between "still running" lines off a terminal
    progress_every: float = 60.0
    #: ini mitosis_heartbeat_every: seconds between a running trial's heartbeats in the store (0: none)
    heartbeat_every: float = 5.0
    #: --mitosis-store-patience / ini mitosis_store_patience: seconds a session waits for a store that went
    #: away (reconnecting with a growing pause) before the trial that needs it fails
    store_patience: float = DEFAULT_STORE_PATIENCE
    #: --mitosis-max-cell-output / ini mitosis_max_cell_output: characters one cell shows in the notebook
    #: at most, the rest going to a log in the trial folder (0: no limit)
    max_cell_output: int = parse_size(DEFAULT_MAX_CELL_OUTPUT)
    #: --mitosis-executor / ini mitosis_executor: where trials run: "local" (kernels of this process) or
    #: "slurm" (each experiment's trials as one Slurm job array; see pytest_mitosis.execution.slurm)
    executor: str = "local"
    #: --mitosis-slurm KEY=VALUE: the jobs' resources over the ``slurm`` tables of pyproject.toml
    slurm: tuple[tuple[str, str], ...] = ()
