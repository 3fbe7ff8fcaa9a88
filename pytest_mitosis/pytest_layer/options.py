"""Every ``--mitosis*`` flag and ``mitosis_*`` ini key, and the frozen settings resolved from them.

This is the one place where options are declared. Precedence, documented in ``docs/guide.md``:
command line > ini (``mitosis_*`` keys) > ``[tool.mitosis]`` table > default. The last two
are applied in :mod:`pytest_mitosis.config.project`, which is the module that reads the table.

Must stay cheap to import: ``plugin.py`` imports it in every pytest run.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..config.defaults import (
    DEFAULT_DIRTY_IGNORE,
    DEFAULT_ENV_VARS,
    DEFAULT_MAX_CELL_OUTPUT,
    DEFAULT_MAX_TRIALS,
    DEFAULT_STORE_PATIENCE,
)

if TYPE_CHECKING:
    from ..config.settings import Settings


def _parser(module: str, name: str) -> Callable[[str], Any]:
    """``module.name``, a parser of option values, imported when an option that uses it is given.

    pytest imports this module in every run, with or without ``--mitosis``; the parsers'
    modules (dataclasses, regular expressions) are imported only when a value is parsed. The
    name stays the parser's, as argparse shows it in "invalid parse_seed value: ...".
    """

    def parse(text: str) -> Any:
        return getattr(importlib.import_module(module, __package__), name)(text)

    parse.__name__ = name
    return parse


param_value = _parser("..config.settings", "param_value")
eval_value = _parser("..config.settings", "eval_value")
parse_chain = _parser("..config.settings", "parse_chain")
parse_count = _parser("..config.settings", "parse_count")
parse_positive_seconds = _parser("..config.settings", "parse_positive_seconds")
parse_nonnegative_seconds = _parser("..config.settings", "parse_nonnegative_seconds")
parse_seed = _parser("..config.settings", "parse_seed")
parse_size = _parser("..config.settings", "parse_size")
parse_limit = _parser("..core.rules", "parse_limit")
parse_metric_names = _parser("..config.settings", "parse_metric_names")
parse_slurm = _parser("..config.slurm", "parse_override")


def add_options(parser: pytest.Parser) -> None:
    """Declare the ``mitosis`` option group and its ini keys (called from ``pytest_addoption``)."""
    group = parser.getgroup("mitosis", "pytest-mitosis: experiments as parametrized trials")
    group.addoption(
        "--mitosis",
        action="store_true",
        dest="mitosis",
        default=False,
        help="Collect the experiments of [tool.mitosis] in pyproject.toml and run them as trials",
    )
    group.addoption(
        "--mitosis-param",
        action="append",
        dest="mitosis_params",
        default=[],
        type=param_value,
        metavar="[+]STEP.PARAM=VARIANT",
        help="Narrow a lookup parameter to the named variant (repeatable; a leading + leaves it untracked)",
    )
    group.addoption(
        "--mitosis-eval",
        action="append",
        dest="mitosis_evals",
        default=[],
        type=eval_value,
        metavar="[+]STEP.PARAM=EXPR",
        help="Set an eval parameter to a Python expression (repeatable; repeating a parameter makes an axis)",
    )
    group.addoption(
        "--mitosis-steps",
        action="append",
        dest="mitosis_steps",
        default=[],
        type=parse_chain,
        metavar="STEP[,STEP...]",
        help="Run this chain of registered steps (as mitosis' 'mitosis data odes'), collected as the experiment "
        "STEP+STEP...; repeatable. Only these chains are collected",
    )
    group.addoption(
        "--mitosis-max-trials",
        dest="mitosis_max_trials",
        default=None,
        type=parse_count,
        metavar="N",
        help=f"Refuse to run more than N trials without a selection (-k, -m, node ids, --mitosis-param, --lf); "
        f"0: no limit (ini mitosis_max_trials, default {DEFAULT_MAX_TRIALS})",
    )
    group.addoption(
        "--mitosis-config",
        dest="mitosis_config",
        default=None,
        metavar="PATH",
        help="Read [tool.mitosis] from this pyproject.toml instead of the rootdir's",
    )
    group.addoption(
        "--mitosis-trials-folder",
        dest="mitosis_trials_folder",
        default=None,
        metavar="DIR",
        help="Folder for trial artifacts (default: trials-folder of [tool.mitosis], else 'trials')",
    )
    group.addoption(
        "--mitosis-store",
        dest="mitosis_store",
        default=None,
        metavar="URL",
        help="Trial store: sqlite:///PATH or postgresql://USER@HOST/DB (default: store of [tool.mitosis], "
        "else sqlite:///<trials folder>/mitosis.sqlite)",
    )
    group.addoption(
        "--mitosis-timeout",
        dest="mitosis_timeout",
        default=None,
        type=parse_positive_seconds,
        metavar="SECONDS",
        help="Fail a trial whose step, or the saving of its results, notebook and page, runs longer than this",
    )
    group.addoption(
        "--mitosis-max-cell-output",
        dest="mitosis_max_cell_output",
        default=None,
        type=parse_size,
        metavar="SIZE",
        help="What one cell of a trial's notebook shows at most (4MB, 500kB...; 0: no limit); the rest goes to "
        f"a log in the trial folder (ini mitosis_max_cell_output, default {DEFAULT_MAX_CELL_OUTPUT})",
    )
    group.addoption(
        "--mitosis-seed",
        dest="mitosis_seed",
        default=None,
        type=parse_seed,
        metavar="N",
        help="Seed of every trial (default: drawn once per session and printed in the header)",
    )
    group.addoption(
        "--mitosis-check",
        action="store_true",
        dest="mitosis_check",
        default=False,
        help="Check the selected trials against the guards and the store without running any: new, repeat or blocked",
    )
    group.addoption(
        "--mitosis-resume",
        action="store_true",
        dest="mitosis_resume",
        default=False,
        help="Skip the selected trials whose identity already passed at the current commit (continue a stopped sweep)",
    )
    group.addoption(
        "--mitosis-progress-every",
        dest="mitosis_progress_every",
        default=None,
        type=parse_positive_seconds,
        metavar="SECONDS",
        help="When the output is not a terminal: a line this often for a trial still running (default 60)",
    )
    group.addoption(
        "--mitosis-store-patience",
        dest="mitosis_store_patience",
        default=None,
        type=parse_nonnegative_seconds,
        metavar="SECONDS",
        help="How long to wait for a store that went away (a PostgreSQL restart) before a trial fails (default 60)",
    )
    group.addoption(
        "--mitosis-compare",
        dest="mitosis_compare",
        default=None,
        choices=["last"],
        help="Compare each trial's main and metrics with the previous trial of the same identity",
    )
    group.addoption(
        "--mitosis-compare-fail",
        action="append",
        dest="mitosis_compare_fail",
        default=[],
        type=parse_limit,
        metavar="NAME:LIMIT",
        help="Fail a trial whose metric got worse than the previous one by more than LIMIT (5%% or 0.01); repeatable",
    )
    group.addoption(
        "--mitosis-higher-is-better",
        nargs="?",
        const=True,
        type=parse_metric_names,
        dest="mitosis_higher_is_better",
        default=None,
        metavar="NAMES",
        help="Higher main and metrics are better (default: lower, or higher-is-better of [tool.mitosis]); "
        "=main,f1: only for these",
    )
    group.addoption(
        "--mitosis-lower-is-better",
        nargs="?",
        const=True,
        type=parse_metric_names,
        dest="mitosis_lower_is_better",
        default=None,
        metavar="NAMES",
        help="Lower main and metrics are better, over higher-is-better of [tool.mitosis]; =loss,fit_seconds: only for these",
    )
    group.addoption(
        "--mitosis-reproduce",
        action="extend",
        nargs="+",
        dest="mitosis_reproduce",
        default=[],
        metavar="KEY",
        help="Re-run recorded trials (keys, an experiment's latest trials, or 'all') at their commit and compare",
    )
    group.addoption(
        "--mitosis-rtol",
        dest="mitosis_rtol",
        default=0.0,
        type=float,
        metavar="R",
        help="Relative tolerance when comparing a reproduction with its record (default: exact)",
    )
    group.addoption(
        "--mitosis-atol",
        dest="mitosis_atol",
        default=0.0,
        type=float,
        metavar="A",
        help="Absolute tolerance when comparing a reproduction with its record (default: exact)",
    )
    group.addoption(
        "--mitosis-debug",
        action="store_true",
        dest="mitosis_debug",
        default=None,
        help="Debug mode: waive the reproducibility guards; trials are kept apart from clean ones",
    )
    group.addoption(
        "--mitosis-kernel",
        dest="mitosis_kernel",
        default=None,
        choices=["fork", "spawn"],
        help="How trial kernels start: forked from a warm parent that has imported the steps' libraries "
        "(default where the platform allows it: Linux), or spawned as a new interpreter each",
    )
    group.addoption(
        "--mitosis-executor",
        dest="mitosis_executor",
        default=None,
        choices=["local", "slurm"],
        help="Where trials run: 'local' (this process's kernels, the default) or 'slurm' (each experiment's "
        "selected trials submitted as one Slurm job array; pytest records them here) (ini mitosis_executor)",
    )
    group.addoption(
        "--mitosis-slurm",
        action="append",
        dest="mitosis_slurm",
        default=[],
        type=parse_slurm,
        metavar="KEY=VALUE",
        help="A Slurm job resource over [tool.mitosis.slurm] (repeatable): partition, time, cpus, mem, gpus, "
        "account, throttle (trials of an array at once), sbatch (an extra option), setup (a shell line)",
    )
    add_ci_options(group, parser)
    parser.addini("mitosis_executor", "Where trials run: local (default) or slurm", default="")
    parser.addini("mitosis_config", "pyproject.toml holding [tool.mitosis] (relative to the rootdir)", default="")
    parser.addini("mitosis_trials_folder", "Folder for trial artifacts (relative to the rootdir)", default="")
    parser.addini(
        "mitosis_store", "Trial store URL (sqlite:///PATH relative to the rootdir, postgresql://...)", default=""
    )
    parser.addini(
        "mitosis_max_trials",
        f"Most trials a session runs without an explicit selection (default {DEFAULT_MAX_TRIALS}; 0: no limit)",
        default=str(DEFAULT_MAX_TRIALS),
    )
    parser.addini("mitosis_timeout", "Seconds after which a trial fails (default: none)", default="")
    parser.addini(
        "mitosis_max_cell_output",
        f"What one cell of a trial's notebook shows at most; the rest goes to a log (default {DEFAULT_MAX_CELL_OUTPUT})",
        default=DEFAULT_MAX_CELL_OUTPUT,
    )
    parser.addini("mitosis_debug", "Run trials in debug mode", type="bool", default=False)
    parser.addini(
        "mitosis_heartbeat_every",
        "Seconds between two heartbeats a running trial writes to the store (status, xdist's progress; 0: none)",
        default="5",
    )
    parser.addini(
        "mitosis_progress_every",
        "When the output is not a terminal: seconds between lines for a trial still running (default 60)",
        default="",
    )
    parser.addini(
        "mitosis_store_patience",
        "Seconds to wait for a store that went away before a trial fails (default 60)",
        default="",
    )
    parser.addini("mitosis_report", "Refresh the trials report at the end of each session", type="bool", default=True)
    parser.addini("mitosis_seed", "Seed of every trial (default: drawn once per session)", default="")
    parser.addini(
        "mitosis_gitignore",
        "Write a .gitignore holding * into each trials folder the plugin creates (false: you track trials in git)",
        type="bool",
        default=True,
    )
    parser.addini(
        "mitosis_allow_network_store",
        "Let the SQLite store live on a network filesystem (NFS, SMB, sshfs...): only if its locking is known to work",
        type="bool",
        default=False,
    )
    parser.addini(
        "mitosis_env_vars",
        "Environment variables recorded with every trial",
        type="linelist",
        default=list(DEFAULT_ENV_VARS),
    )
    parser.addini(
        "mitosis_preload",
        "Modules the kernels' warm parent imports besides those found in the steps (-NAME: never preload NAME)",
        type="linelist",
        default=[],
    )
    parser.addini(
        "mitosis_dirty_ignore",
        "Path patterns that never make the git tree dirty (a trailing / matches a directory)",
        type="linelist",
        default=list(DEFAULT_DIRTY_IGNORE),
    )


settings_key = pytest.StashKey["Settings"]()


def _setting(config: pytest.Config, name: str, parse: Callable[[str], Any]) -> Any:
    """A value from its ``--mitosis-*`` option (already checked by its ``type=``; an ini-only key has none),
    else from the ini key ``name`` read by ``parse``; ``None`` when neither is given."""
    value = config.getoption(name, None)
    ini = str(config.getini(name) or "").strip()
    if value is None and ini:
        try:
            value = parse(ini)
        except argparse.ArgumentTypeError as err:
            raise pytest.UsageError(f"ini key {name}: {err}") from None
    return value


def resolve_settings(config: pytest.Config) -> Settings:
    """Apply CLI > ini precedence; raise ``pytest.UsageError`` with the fix for bad values."""
    from ..config.settings import Settings, absolute_store

    rootpath = config.rootpath
    invocation = config.invocation_params.dir
    pyproject: Path
    cli_config = config.getoption("mitosis_config")
    ini_config = str(config.getini("mitosis_config") or "")
    if cli_config:
        pyproject = (invocation / cli_config).resolve()
    elif ini_config:
        pyproject = (rootpath / ini_config).resolve()
    elif config.inipath is not None and config.inipath.name == "pyproject.toml":
        pyproject = config.inipath.resolve()
    else:
        pyproject = (rootpath / "pyproject.toml").resolve()
    if pyproject.is_dir():
        pyproject = pyproject / "pyproject.toml"
    if not pyproject.is_file():
        source = "--mitosis-config" if cli_config else "mitosis_config" if ini_config else "the rootdir"
        raise pytest.UsageError(
            f"--mitosis: no pyproject.toml at {pyproject} (from {source}). "
            "Run pytest from the investigation's directory, or pass --mitosis-config PATH/TO/pyproject.toml."
        )

    trials_folder: Path | None = None
    cli_trials = config.getoption("mitosis_trials_folder")
    ini_trials = str(config.getini("mitosis_trials_folder") or "")
    if cli_trials:
        trials_folder = (invocation / cli_trials).resolve()
    elif ini_trials:
        trials_folder = (rootpath / ini_trials).resolve()

    store: str | None = None
    cli_store = config.getoption("mitosis_store")
    ini_store = str(config.getini("mitosis_store") or "").strip()
    if cli_store:
        store = absolute_store(cli_store.strip(), invocation)
    elif ini_store:
        store = absolute_store(ini_store, rootpath)

    timeout: float | None = _setting(config, "mitosis_timeout", parse_positive_seconds)
    seed: int | None = _setting(config, "mitosis_seed", parse_seed)
    max_cell_output: int = _setting(config, "mitosis_max_cell_output", parse_size)  # the ini key has a default
    max_trials: int = _setting(config, "mitosis_max_trials", parse_count)

    debug = config.getoption("mitosis_debug")
    if debug is None:
        debug = bool(config.getini("mitosis_debug"))
    resume = bool(config.getoption("mitosis_resume"))
    if resume and debug:
        raise pytest.UsageError(
            "--mitosis-resume skips trials that passed at the current commit, and debug trials never count as "
            "passed: drop --mitosis-debug (commit the investigation first), or drop --mitosis-resume."
        )
    heartbeat_every: float = _setting(config, "mitosis_heartbeat_every", parse_nonnegative_seconds)
    progress_every: float | None = _setting(config, "mitosis_progress_every", parse_positive_seconds)
    patience: float | None = _setting(config, "mitosis_store_patience", parse_nonnegative_seconds)
    executor = executor_option(config)
    if config.getoption("mitosis_check") and getattr(config.option, "numprocesses", None):
        raise pytest.UsageError("--mitosis-check runs no trial, so it has nothing to distribute: drop -n.")

    higher, lower = direction_options(config)
    ci = ci_settings(config)
    return Settings(
        pyproject=pyproject,
        trials_folder=trials_folder,
        params=tuple(config.getoption("mitosis_params")),
        evals=tuple(config.getoption("mitosis_evals")),
        timeout=timeout,
        debug=bool(debug),
        invocation_dir=invocation,
        dirty_ignore=tuple(config.getini("mitosis_dirty_ignore")),
        env_vars=tuple(config.getini("mitosis_env_vars")),
        seed=seed,
        check=bool(config.getoption("mitosis_check")),
        compare=bool(config.getoption("mitosis_compare")) or bool(config.getoption("mitosis_compare_fail")),
        compare_fail=tuple(config.getoption("mitosis_compare_fail")),
        higher_is_better=higher,
        lower_is_better=lower,
        reproduce=tuple(config.getoption("mitosis_reproduce")),
        rtol=float(config.getoption("mitosis_rtol")),
        atol=float(config.getoption("mitosis_atol")),
        report=bool(config.getini("mitosis_report")),
        outputs=tuple((invocation / p).resolve() for p in [config.getoption("xmlpath", None)] if p) + ci.outputs,
        gitignore=bool(config.getini("mitosis_gitignore")),
        allow_network_store=bool(config.getini("mitosis_allow_network_store")),
        store=store,
        chains=tuple(dict.fromkeys(config.getoption("mitosis_steps"))),
        max_trials=max_trials,
        summary=ci.summary,
        benchmark_json=ci.benchmark_json,
        kernel=config.getoption("mitosis_kernel"),
        preload=tuple(str(m) for m in config.getini("mitosis_preload")),
        resume=resume,
        progress_every=progress_every if progress_every is not None else 60.0,
        heartbeat_every=heartbeat_every,
        store_patience=patience if patience is not None else DEFAULT_STORE_PATIENCE,
        max_cell_output=max_cell_output,
        executor=executor,
        slurm=tuple(config.getoption("mitosis_slurm")),
    )


def executor_option(config: pytest.Config) -> str:
    """``--mitosis-executor`` (or ini ``mitosis_executor``), refused where it cannot work."""
    executor = config.getoption("mitosis_executor") or str(config.getini("mitosis_executor") or "").strip() or "local"
    if executor not in ("local", "slurm"):
        raise pytest.UsageError(f"ini mitosis_executor: expected local or slurm, found {executor!r}.")
    if executor != "slurm" and config.getoption("mitosis_slurm"):
        raise pytest.UsageError(
            "--mitosis-slurm sets the resources of Slurm jobs: add --mitosis-executor=slurm (or drop --mitosis-slurm)."
        )
    if executor == "slurm":
        if getattr(config.option, "numprocesses", None) or getattr(config.option, "tx", None):
            raise pytest.UsageError(
                "--mitosis-executor=slurm runs every trial as a Slurm job already, submitted by one pytest "
                "session: drop -n/--tx (the array's throttle sets how many run at once: --mitosis-slurm throttle=N)."
            )
        if config.getoption("mitosis_reproduce"):
            raise pytest.UsageError(
                "--mitosis-reproduce runs a recorded trial again here, at its commit: drop --mitosis-executor=slurm."
            )
    return executor


def direction_options(config: pytest.Config) -> tuple[bool | tuple[str, ...] | None, bool | tuple[str, ...] | None]:
    """``--mitosis-higher-is-better[=NAMES]`` and ``--mitosis-lower-is-better[=NAMES]``, checked together.

    Their value is optional, so argparse would take the next word typed after a bare flag as the
    names (``--mitosis-higher-is-better pyproject.toml::sine``): names go after ``=`` only.
    """
    found = []
    for flag in ("--mitosis-higher-is-better", "--mitosis-lower-is-better"):
        value = config.getoption(flag[2:].replace("-", "_"))
        args = [str(a) for a in config.invocation_params.args]
        for index, arg in enumerate(args[:-1]):
            if arg == flag and value is not True and value is not None and not args[index + 1].startswith("-"):
                raise pytest.UsageError(
                    f"{flag} {args[index + 1]}: the metric names go after '=' ({flag}={args[index + 1]}); "
                    f"a bare {flag} means main and every metric: write it after the other arguments or before "
                    "another option."
                )
        found.append(value)
    higher, lower = found
    if higher is True and lower is True:
        raise pytest.UsageError(
            "--mitosis-higher-is-better and --mitosis-lower-is-better both name every metric: name the metrics "
            "of one of them (--mitosis-lower-is-better=loss)."
        )
    both = sorted(set(higher if isinstance(higher, tuple) else ()) & set(lower if isinstance(lower, tuple) else ()))
    if both:
        raise pytest.UsageError(
            f"--mitosis-higher-is-better and --mitosis-lower-is-better both name {', '.join(both)}: keep it in one of them."
        )
    return higher, lower


# --- CI outputs (issue 15): the Markdown summary and github-action-benchmark's JSON -------------


def add_ci_options(group: pytest.OptionGroup, parser: pytest.Parser) -> None:
    """``--mitosis-summary`` (ini ``mitosis_summary``) and ``--mitosis-benchmark-json``."""
    group.addoption(
        "--mitosis-summary",
        dest="mitosis_summary",
        default=None,
        metavar="PATH",
        help="Append a Markdown summary of the session to PATH (e.g. $GITHUB_STEP_SUMMARY; ini mitosis_summary)",
    )
    group.addoption(
        "--mitosis-benchmark-json",
        dest="mitosis_benchmark_json",
        default=None,
        metavar="PATH",
        help="Write main and the metrics of the passed trials as github-action-benchmark's custom JSON",
    )
    parser.addini("mitosis_summary", "Append a Markdown summary of each session here (relative to the rootdir)")


@dataclass(frozen=True)
class CISettings:
    summary: Path | None
    benchmark_json: Path | None

    @property
    def outputs(self) -> tuple[Path, ...]:
        """Files this session writes: never part of a dirty tree (a summary left by the last session)."""
        from ..views.ci import bigger_path

        bench = (self.benchmark_json, bigger_path(self.benchmark_json)) if self.benchmark_json else ()
        return tuple(p for p in (self.summary, *bench) if p is not None)


def ci_settings(config: pytest.Config) -> CISettings:
    """Command line (relative to the current directory) > ini (relative to the rootdir)."""
    invocation = config.invocation_params.dir
    cli_summary = config.getoption("mitosis_summary")
    ini_summary = str(config.getini("mitosis_summary") or "").strip()
    summary = (
        (invocation / cli_summary).resolve()
        if cli_summary
        else (config.rootpath / ini_summary).resolve()
        if ini_summary
        else None
    )
    bench = config.getoption("mitosis_benchmark_json")
    return CISettings(summary, (invocation / bench).resolve() if bench else None)


def implied(config: pytest.Config) -> str | None:
    """The first ``--mitosis-*`` option typed on the command line, which implies ``--mitosis``.

    Options that come from ``addopts`` or ``PYTEST_ADDOPTS`` only configure a ``--mitosis`` run
    (a project may set ``--mitosis-timeout`` there); typed by hand, each says the user wants
    trials (``--mitosis-check``, ``--mitosis-reproduce KEY`` ...), so a session that would
    otherwise collect nothing and exit 5 runs them.
    """
    for arg in config.invocation_params.args:
        if isinstance(arg, str) and arg.startswith("--mitosis-"):
            return arg.split("=", 1)[0]
    return None


def trial_node_ids(config: pytest.Config) -> list[str]:
    """Command-line arguments that are node ids inside a ``pyproject.toml`` (``pyproject.toml::sine[slow]``)."""
    return [arg for arg in config.args if "::" in arg and Path(arg.split("::", 1)[0]).name == "pyproject.toml"]
