"""The sweep size guard on pytest-xdist's controller, before any worker starts.

The controller does not collect (its workers do), so the guard used to wait for the first
worker's collection: two workers started, each imported the steps and collected, and only then
was the session refused (17 s for a plain ``pytest --mitosis -n 2`` over a large sweep). Here the
controller expands the experiments itself (the config stage's ``collect_experiments``, in this
process: the steps' lookup modules are imported here, what one worker would have done), makes
the items pytest would collect from them (real ``TrialItem`` nodes under the same directories, so
``-k`` sees the same names), keeps those pytest's ``-k``, ``-m`` and ``--deselect`` keep
(:mod:`..pytest_layer.keywords`), and asks the guard of a session without xdist
(:func:`..pytest_layer.selection.sweep_size_refusal`): the same count, the same message.

Only when it can be exact: what a plugin or ``conftest.py`` does in
``pytest_collection_modifyitems`` cannot be known without collecting, nor what ``--lf`` keeps; then
nothing is answered here and the workers' collection decides, as before
(``pytest_xdist_node_collection_finished``).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ..core.errors import ConfigError

if TYPE_CHECKING:
    from ..config.variants import TrialSpec
    from ..pytest_layer.session import MitosisSession

#: the plugins whose ``pytest_collection_modifyitems`` the count reproduces (pytest's ``--deselect`` in main,
#: ``-k`` and ``-m`` in mark) or that only reorder items unless ``--lf`` is given (lfplugin, nfplugin)
_KNOWN_MODIFIERS = frozenset({"main", "mark", "lfplugin", "nfplugin"})


def undecidable(config: pytest.Config) -> str | None:
    """Why the controller cannot count exactly what the workers will collect (``None``: it can)."""
    if config.getoption("lf", False):
        return "--lf keeps what failed last time"
    for impl in config.hook.pytest_collection_modifyitems.get_hookimpls():
        name = config.pluginmanager.get_name(impl.plugin) or ""
        if name not in _KNOWN_MODIFIERS and not name.startswith("mitosis"):
            return f"{name or impl.plugin!r} implements pytest_collection_modifyitems"
    return None


def trials_before_workers(mitosis: MitosisSession, session: pytest.Session) -> list[tuple[str, TrialSpec]] | None:
    """The trials a worker would collect and keep, as ``(node id, spec)``, or ``None`` when they cannot be
    counted here exactly (see :func:`undecidable`), or the configuration is broken (each worker reports it)."""
    from ..pytest_layer.collection import MitosisFile, TrialItem
    from ..pytest_layer.keywords import kept

    context = mitosis.context
    config = context.config
    pyproject = context.settings.pyproject
    root = config.rootpath
    if undecidable(config) is not None or root not in pyproject.parents:
        return None
    if any("::" in arg and Path(arg.split("::", 1)[0]).resolve() == pyproject for arg in config.args):
        return None  # node ids of ours that are no selection (testpaths): their prefix matching is pytest's
    try:
        experiments = context.experiments()
    except ConfigError:
        return None
    parent: pytest.Collector = pytest.Dir.from_parent(session, path=root)
    for part in pyproject.parent.relative_to(root).parts:
        parent = pytest.Dir.from_parent(parent, path=parent.path / part)
    file = MitosisFile.from_parent(parent, path=pyproject, mitosis=mitosis)
    items: list[pytest.Item] = []
    for experiment in experiments:
        for spec in experiment.trials:  # a broken experiment has none: never a trial, never counted
            item = TrialItem.from_parent(
                file, name=spec.item_name, nodeid=f"{file.nodeid}::{spec.item_name}", spec=spec
            )
            item.add_marker("mitosis")
            items.append(item)
    selected = kept(items, config)
    if selected is None:
        return None
    return [(item.nodeid, item.spec) for item in selected if isinstance(item, TrialItem)]
