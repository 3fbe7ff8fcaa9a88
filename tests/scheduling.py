"""Under ``-n auto``, tests that share a module-scoped fixture run on one xdist worker.

Most of the suite's time is kernels started by module-scoped fixtures (one executed session
serves many assertions). xdist's default ``load`` scheduling hands a module's tests to both
workers, and then *each* worker runs the fixture's sessions again. ``--dist loadgroup`` would
keep them together, but it relies on rewriting node ids, which pytest 9.2's structured node
ids silently ignore (pytest-xdist issue #1386). So the controller groups them itself: a test
function that asks (directly, or through another fixture of its module) for a fixture
declared ``scope="module"`` in its own file is scheduled with the rest of its module; every
other test is its own work unit, as under ``load``.

Work units are handed out longest first (``tests/durations.json``, the seconds each test took
in a recorded run; a test not in it counts as the median), and a worker gets its next unit only
when it has one test left: a long test never starts last while the other worker sits idle, and
a worker never hoards short tests the idle one could run. The order changes no verdict. Record
the file again after adding slow tests: ``MITOSIS_RECORD_DURATIONS=tests/durations.json python -m
pytest -n auto``.
"""

from __future__ import annotations

import ast
import functools
import json
import statistics
from collections import OrderedDict
from pathlib import Path
from typing import Any

from xdist.scheduler import LoadScopeScheduling


def _is_module_fixture(decorator: ast.expr) -> bool:
    if not isinstance(decorator, ast.Call):
        return False
    name = decorator.func.attr if isinstance(decorator.func, ast.Attribute) else getattr(decorator.func, "id", "")
    return name == "fixture" and any(
        k.arg == "scope" and isinstance(k.value, ast.Constant) and k.value.value == "module" for k in decorator.keywords
    )


@functools.cache
def shared_tests(path: Path) -> frozenset[str]:
    """The test functions of ``path`` that use one of its module-scoped fixtures."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return frozenset()
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    params = {f.name: {a.arg for a in f.args.args} for f in functions}
    shared = {f.name for f in functions if any(_is_module_fixture(d) for d in f.decorator_list)}
    changed = True
    while changed:  # a fixture that asks for a shared fixture shares it too
        grown = {name for name, args in params.items() if args & shared}
        changed = not grown <= shared
        shared |= grown
    return frozenset(name for name in shared if name.startswith("test_"))


#: where the recorded durations live (see the module's docstring)
DURATIONS = Path(__file__).parent / "durations.json"


def function_of(nodeid: str) -> str:
    """``file::function`` of a node id: parameters share one recorded duration."""
    return nodeid.split("[", 1)[0]


def load_durations(path: Path = DURATIONS) -> dict[str, float]:
    """Seconds per test function, or nothing when the file is missing or unreadable."""
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): float(v) for k, v in found.items()} if isinstance(found, dict) else {}


class SharedFixtureScheduling(LoadScopeScheduling):
    """``load`` scheduling, except that tests sharing a module-scoped fixture form one work unit,
    and units go out longest first."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.rootpath = Path(config.rootpath)
        self.durations = load_durations()
        #: what a test missing from the file counts as
        self.default = statistics.median(self.durations.values()) if self.durations else 1.0

    def _weight(self, nodeids: dict[str, bool]) -> float:
        return sum(self.durations.get(function_of(n), self.default) for n in nodeids)

    def schedule(self) -> None:
        """xdist's, with the work queue sorted by recorded duration before anything is handed out."""
        if self.collection is None and self.collection_is_completed and self._check_nodes_have_same_collection():
            units: dict[str, dict[str, bool]] = {}
            for nodeid in next(iter(self.registered_collections.values())):
                units.setdefault(self._split_scope(nodeid), {})[nodeid] = False
            # xdist then fills the queue again; keys already there keep their place
            self.workqueue = OrderedDict(sorted(units.items(), key=lambda unit: -self._weight(unit[1])))
        super().schedule()

    def _reschedule(self, node: Any) -> None:
        """A worker asks for more only when one test is left (xdist's default hoards three)."""
        if node.shutting_down or not self.workqueue:
            super()._reschedule(node)  # shuts the worker down when nothing is left
        elif self._pending_of(self.assigned_work[node]) <= 1:
            self._assign_work_unit(node)

    def _split_scope(self, nodeid: str) -> str:
        module, _, rest = nodeid.partition("::")
        function = rest.split("[", 1)[0]
        if "::" not in function and function in shared_tests(self.rootpath / module):
            return module
        return nodeid
