"""The ``pytest11`` entry point ``mitosis``: options, and wiring when ``--mitosis`` is given.

pytest imports this module in every run of every project that has pytest-mitosis
installed, so it imports nothing heavy: without ``--mitosis`` it adds options and a marker
and does nothing else (no git, no kernels, no trials folder, no nbformat).
"""

from __future__ import annotations

import pytest

from .pytest_layer.options import add_options, implied, resolve_settings, settings_key, trial_node_ids


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    from . import hookspecs

    pluginmanager.add_hookspecs(hookspecs)


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    """``--mitosis-config PATH`` and ``--mitosis-trials-folder DIR``: keep PATH and DIR out of pytest's rootdir."""
    if any(arg.startswith("--mitosis-") and "=" not in arg for arg in args):
        from .pytest_layer.rootdir import redetermine_rootdir

        redetermine_rootdir(early_config, args)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "mitosis: a trial of an experiment run by pytest-mitosis")
    if not config.getoption("mitosis", default=False):
        if implied(config) is None:
            node_ids = trial_node_ids(config)
            if node_ids:
                raise pytest.UsageError(
                    f"{node_ids[0]} names a trial of pytest-mitosis, which collects pyproject.toml only with --mitosis: "
                    f"run pytest --mitosis {' '.join(repr(a) if '[' in a else a for a in node_ids)}"
                )
            return
        config.option.mitosis = True  # a --mitosis-* option typed on the command line implies --mitosis
    from .distributed.hooks import DistributedHooks
    from .pytest_layer.hooks import MitosisHooks
    from .pytest_layer.progress_hooks import ProgressHooks
    from .pytest_layer.session import MitosisSession, session_key
    from .pytest_layer.session_end import SessionEndHooks

    settings = resolve_settings(config)
    config.stash[settings_key] = settings
    session = MitosisSession(config, settings)
    config.stash[session_key] = session
    config.pluginmanager.register(MitosisHooks(session), "mitosis-session")
    config.pluginmanager.register(ProgressHooks(session.heartbeat), "mitosis-progress")
    config.pluginmanager.register(SessionEndHooks(session), "mitosis-session-end")
    config.pluginmanager.register(DistributedHooks(session), "mitosis-distributed")
    # pytest-html is registered whenever it is installed, but writes a report only with --html: without
    # one, the extras would read every trial's notebook and stay in its report until the session ends
    if config.pluginmanager.hasplugin("html") and config.getoption("htmlpath", None):
        from .pytest_layer.html_extras import HtmlReportExtras

        config.pluginmanager.register(HtmlReportExtras(), "mitosis-html-extras")
    # With no paths on the command line (testpaths or the current directory), collect the
    # trials beside what pytest collects anyway. Paths named explicitly are respected.
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args.append(str(settings.pyproject))


def pytest_unconfigure(config: pytest.Config) -> None:
    if settings_key not in config.stash:
        return
    from .pytest_layer.session import session_key

    extras = config.pluginmanager.get_plugin("mitosis-html-extras")
    if extras is not None:
        config.pluginmanager.unregister(extras, "mitosis-html-extras")
    session = config.stash.get(session_key, None)
    if session is not None:
        for name in ("mitosis-session", "mitosis-progress", "mitosis-session-end", "mitosis-distributed"):
            hooks = config.pluginmanager.get_plugin(name)
            if hooks is not None:
                config.pluginmanager.unregister(hooks, name)
        del config.stash[session_key]
        del config.stash[settings_key]
