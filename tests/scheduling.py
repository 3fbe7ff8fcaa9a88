"""Under ``-n auto``, tests that share a module-scoped fixture run on one xdist worker.

Most of the suite's time is kernels started by module-scoped fixtures (one executed session
serves many assertions). xdist's default ``load`` scheduling hands a module's tests to both
workers, and then *each* worker runs the fixture's sessions again. ``--dist loadgroup`` would
keep them together, but it relies on rewriting node ids, which pytest 9.2's structured node
ids silently ignore (pytest-xdist issue #1386). So the controller groups them itself: a test
function that asks (directly, or through another fixture of its module) for a fixture
declared ``scope="module"`` in its own file is scheduled with the rest of its module; every
other test is its own work unit, as under ``load``. Groups are scheduled first (xdist orders
work units by size), so the long ones never start last.
"""

from __future__ import annotations

import ast
import functools
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


class SharedFixtureScheduling(LoadScopeScheduling):
    """``load`` scheduling, except that tests sharing a module-scoped fixture form one work unit."""

    def __init__(self, config: Any, log: Any = None) -> None:
        super().__init__(config, log)
        self.rootpath = Path(config.rootpath)

    def _split_scope(self, nodeid: str) -> str:
        module, _, rest = nodeid.partition("::")
        function = rest.split("[", 1)[0]
        if "::" not in function and function in shared_tests(self.rootpath / module):
            return module
        return nodeid
