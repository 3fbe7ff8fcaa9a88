"""Make ``--mitosis-trials-folder DIR`` (with a space) mean the same as ``--mitosis-trials-folder=DIR``.

pytest chooses its rootdir and configuration file (``determine_setup``) from the paths on
the command line *before* it loads plugins, so it cannot know that ``DIR`` is the value of
one of our options: an existing ``DIR`` counts as a test path, and the rootdir, the
configuration file, its ``addopts`` and ``pythonpath`` may all come from the wrong place
(``--mitosis-config sub/pyproject.toml`` makes ``sub/`` the rootdir when that file has a
``[tool.pytest]`` table; ``--mitosis-trials-folder /elsewhere`` moves the rootdir there).

``pytest_load_initial_conftests`` is the first hook that runs after our options are known
and before anything is collected: it runs ``determine_setup`` again without our values and,
when the answer differs, puts pytest's answer right. That touches attributes of
``pytest.Config`` that are not public API; if a pytest version lacks them, the user gets a
usage error asking for the ``=`` spelling instead of a silently wrong rootdir.
"""

from __future__ import annotations

import copy
import sys
from typing import Any

import pytest

#: the attributes of pytest.Config set from determine_setup's answer (pytest 8.x/9.x)
_PRIVATE = ("_rootpath", "_inipath", "_inicfg", "_ignored_config_files", "_inicache", "_parser")


def spaced_values(args: list[str]) -> list[str]:
    """Our options written with a space before their value (``--mitosis-config PATH``)."""
    return [
        a
        for i, a in enumerate(args[:-1])
        if a.startswith("--mitosis-") and "=" not in a and not args[i + 1].startswith("-")
    ]


def redetermine_rootdir(config: pytest.Config, args: list[str]) -> None:
    """Re-run pytest's rootdir and ini-file choice now that our options' values are known."""
    from _pytest.config.findpaths import determine_setup

    spaced = spaced_values(args)
    if not spaced:
        return
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
    if not all(hasattr(config, name) for name in _PRIVATE):  # pragma: no cover - another pytest
        raise pytest.UsageError(
            f"pytest took the value of {spaced[0]} for a test path when it chose its rootdir "
            f"({config.rootpath}); write {spaced[0]}=VALUE (with '=') instead."
        )
    private: Any = config
    old_confcutdir = str(config.inipath.parent) if config.inipath is not None else str(config.rootpath)
    old_addopts = list(config.getini("addopts"))
    for path in config.getini("pythonpath"):
        if str(path) in sys.path:
            sys.path.remove(str(path))
    private._rootpath = rootpath
    private._inipath = inipath
    private._inicfg = inicfg
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
