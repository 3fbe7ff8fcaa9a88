"""Make ``--mitosis-trials-folder DIR`` (with a space) mean the same as ``--mitosis-trials-folder=DIR``.

pytest chooses its rootdir and configuration file (``determine_setup``) from the paths on
the command line *before* it loads plugins, so it cannot know that ``DIR`` is the value of
one of our options: an existing ``DIR`` counts as a test path, and the rootdir, the
configuration file, its ``addopts`` and ``pythonpath`` may all come from the wrong place
(``--mitosis-config sub/pyproject.toml`` makes ``sub/`` the rootdir when that file has a
``[tool.pytest]`` table; ``--mitosis-trials-folder /elsewhere`` moves the rootdir there).

There is no public way to correct that: the rootdir is chosen before an installed plugin is
imported (``pytest_cmdline_parse`` reaches only plugins handed to ``pytest.main``), ``--rootdir``
is the user's to type, and ``Config.rootpath`` and ``Config.inipath`` are read-only.
``pytest_load_initial_conftests`` is the first hook that runs after our options are known and
before anything is collected: it runs ``determine_setup`` again without our values and, when
the answer differs, puts pytest's answer right. That needs pytest's private API, all of it in
:func:`_redo_setup`, checked by :func:`private_api_problem` (and by a test, so that a pytest
release that changes it fails the suite loudly); pyproject.toml pins pytest below the next
major version. Where the API is not the one checked, a spaced value that names an existing
path (the only kind pytest takes for a test path) is a usage error asking for the ``=``
spelling, never a silently wrong rootdir.
"""

from __future__ import annotations

import copy
import inspect
import os
import sys
from typing import Any

import pytest

#: the pytest versions whose private API below was read (their sources) and, for the last, tested
CHECKED_PYTEST = "9.0.0 and 9.2.0"
#: ``determine_setup``'s keyword parameters, as pytest 9 has them (pytest 8 lacks ``override_ini``)
_DETERMINE_SETUP = ("inifile", "override_ini", "args", "rootdir_cmd_arg", "invocation_dir")
#: the attributes of ``pytest.Config`` that pytest sets from ``determine_setup``'s answer (the ini
#: values are ``_inicfg`` in pytest 9.2, ``inicfg`` in 9.0)
_ATTRIBUTES = ("_rootpath", "_inipath", "_ignored_config_files", "_inicache", "_parser")


def spaced_values(args: list[str]) -> list[str]:
    """Our options written with a space before their value (``--mitosis-config PATH``)."""
    return [
        a
        for i, a in enumerate(args[:-1])
        if a.startswith("--mitosis-") and "=" not in a and not args[i + 1].startswith("-")
    ]


def private_api_problem(config: pytest.Config) -> str | None:
    """What of pytest's private API :func:`_redo_setup` needs is missing or different here, or ``None``."""
    try:
        from _pytest.config.findpaths import determine_setup
    except ImportError:
        return "_pytest.config.findpaths.determine_setup is gone"
    parameters = set(inspect.signature(determine_setup).parameters)
    lacking = [name for name in _DETERMINE_SETUP if name not in parameters]
    if lacking:
        return f"determine_setup() has no parameter {', '.join(lacking)}"
    missing = [name for name in _ATTRIBUTES if not hasattr(config, name)]
    if not ("_inicfg" in vars(config) or "inicfg" in vars(config)):
        missing.append("_inicfg")
    if missing:
        return f"pytest.Config has no attribute {', '.join(missing)}"
    if not hasattr(config._parser, "extra_info") or not hasattr(config._parser, "parse_known_args"):
        return "pytest.Config._parser has no extra_info or parse_known_args"
    return None


def redetermine_rootdir(config: pytest.Config, args: list[str]) -> None:
    """Re-run pytest's rootdir and ini-file choice now that our options' values are known."""
    spaced = spaced_values(args)
    if not spaced:
        return
    if private_api_problem(config) is not None:
        values = [args[i + 1] for i, a in enumerate(args[:-1]) if a in spaced]
        if any(os.path.exists(value) for value in values):
            raise pytest.UsageError(
                f"pytest took the value of {spaced[0]} for a test path when it chose its rootdir "
                f"({config.rootpath}); write {spaced[0]}=VALUE (with '=') instead."
            )
        return
    _redo_setup(config, args)


def _redo_setup(config: pytest.Config, args: list[str]) -> None:
    """Choose the rootdir and ini file again without our options' values, and when pytest's choice differs,
    put it right: rootdir, ini file and values, ``addopts``, ``pythonpath``, ``--confcutdir``'s default.

    The one place that touches pytest's private API (checked against pytest :data:`CHECKED_PYTEST`, see
    :func:`private_api_problem`); it does what ``Config._initini`` and ``Config._preparse`` do.
    """
    from _pytest.config.findpaths import determine_setup

    ns = config.known_args_namespace
    rootpath, inipath, inicfg, ignored = determine_setup(
        inifile=ns.inifilename,
        override_ini=ns.override_ini,
        args=ns.file_or_dir,
        rootdir_cmd_arg=ns.rootdir or None,
        invocation_dir=config.invocation_params.dir,
    )
    if rootpath == config.rootpath and inipath == config.inipath:
        return
    private: Any = config
    old_confcutdir = str(config.inipath.parent) if config.inipath is not None else str(config.rootpath)
    old_addopts = list(config.getini("addopts"))
    for path in config.getini("pythonpath"):
        if str(path) in sys.path:
            sys.path.remove(str(path))
    private._rootpath = rootpath
    private._inipath = inipath
    setattr(private, "_inicfg" if "_inicfg" in vars(private) else "inicfg", inicfg)
    private._ignored_config_files = ignored
    private._inicache.clear()
    private._parser.extra_info["rootdir"] = str(rootpath)
    private._parser.extra_info["inifile"] = str(inipath)
    new_addopts = list(config.getini("addopts"))
    if old_addopts != new_addopts and args[: len(old_addopts)] == old_addopts:
        args[: len(old_addopts)] = new_addopts
    confcutdir = ns.confcutdir
    config.known_args_namespace = private._parser.parse_known_args(args, namespace=copy.copy(config.option))
    if confcutdir == old_confcutdir:  # pytest's default, not the user's --confcutdir
        confcutdir = str(inipath.parent) if inipath is not None else str(rootpath)
    config.known_args_namespace.confcutdir = confcutdir
    if hasattr(private, "_configure_python_path"):
        private._configure_python_path()
