"""The package's shape, enforced: no import cycles, and each stage imports only the stages below it.

The import graph is read by ``grimp`` from the source, so an import inside a function (the
lazy imports that keep ``plugin.py`` cheap) and one under ``TYPE_CHECKING`` count like any
other: a cycle that only appears at run time, in the right order, is still a cycle. See
``docs/architecture.md`` for the stages and what each owns.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grimp
import pytest

PACKAGE = "pytest_mitosis"
ROOT = Path(__file__).parent.parent

#: the stages, from the top: a stage may import those below it, never those above (the pytest
#: layer and the xdist layer sit above them all: LAYERS)
STAGES = ("views", "recording", "checks", "execution", "store", "identity", "config", "core")
#: above the stages: what pytest-xdist adds, then what pytest sees of us
LAYERS = ("distributed", "pytest_layer")


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph(PACKAGE, cache_dir=None)


def cycles(graph: grimp.ImportGraph) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in sorted(graph.modules):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.find_modules_directly_imported_by(root))))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.find_modules_directly_imported_by(child)))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_the_cycle_finder_finds_a_cycle() -> None:
    graph = grimp.ImportGraph()
    for module in ("p", "p.a", "p.b", "p.c"):
        graph.add_module(module)
    graph.add_import(importer="p.a", imported="p.b")
    graph.add_import(importer="p.b", imported="p.c")
    graph.add_import(importer="p.c", imported="p.a")
    assert cycles(graph) == [["p.a", "p.b", "p.c"]]


def test_no_import_cycles(graph: grimp.ImportGraph) -> None:
    found = cycles(graph)
    described = []
    for component in found:
        first = component[0]
        second = next(m for m in component[1:] if graph.chain_exists(first, m))
        there = graph.find_shortest_chain(importer=first, imported=second) or ()
        back = graph.find_shortest_chain(importer=second, imported=first) or ()
        described.append(" -> ".join([*there, *back[1:]]))
    assert not found, "import cycles (move the code to the stage that owns it):\n" + "\n".join(described)


def test_the_import_contracts_hold() -> None:
    """The layers of ``[tool.importlinter]`` in pyproject.toml: the xdist layer over the pytest layer over
    the stages, each stage over those below it, no stage importing pytest, and the order inside the two
    layers. import-linter reads the graph as grimp does (lazy and ``TYPE_CHECKING`` imports count)."""
    done = subprocess.run(
        [sys.executable, "-c", "from importlinter.cli import lint_imports_command; lint_imports_command()"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 4 kept, 0 broken." in done.stdout, done.stdout


def test_every_stage_is_listed(graph: grimp.ImportGraph) -> None:
    packages = {m.split(".")[1] for m in graph.modules if m.count(".") >= 2}
    assert packages == {*STAGES, *LAYERS}, "add the new package to STAGES and to docs/architecture.md"


def test_the_package_root_holds_only_the_entry_point_the_api_and_the_hook_specs(graph: grimp.ImportGraph) -> None:
    modules = {m.split(".")[1] for m in graph.find_children(PACKAGE)} - {*STAGES, *LAYERS}
    assert modules == {"__main__", "plugin", "hookspecs"}, "a module of a layer belongs in its package"


def test_no_stage_imports_the_pytest_layer(graph: grimp.ImportGraph) -> None:
    top = {m for m in graph.modules if m != PACKAGE and m.split(".")[1] not in STAGES}
    found = [
        (importer, imported)
        for stage in STAGES
        for importer in graph.find_descendants(f"{PACKAGE}.{stage}")
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported in top
    ]
    assert not found, found


def test_every_module_is_named_in_the_architecture_guide() -> None:
    """docs/architecture.md's table names every module (by file name): a new module says there what it owns."""
    guide = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    package = ROOT / PACKAGE
    missing = sorted(
        str(path.relative_to(package))
        for path in package.rglob("*.py")
        if path.name != "__init__.py" and path.parent != package and f"`{path.name}`" not in guide
    )
    assert not missing, f"add these to docs/architecture.md's table: {missing}"


#: radon's grades E (31-40) and F (41 and more): a function that decides that much is split into functions
#: that each do one thing (D, 21-30, is tolerated)
MOST_COMPLEX = 30


def test_no_function_is_graded_e_or_f_by_radon() -> None:
    """Cyclomatic complexity, as radon computes it (``radon cc -s -n E pytest_mitosis`` lists the same)."""
    from radon.complexity import cc_rank, cc_visit

    found = [
        f"{path.relative_to(ROOT)}:{block.lineno} {block.fullname}: {cc_rank(block.complexity)} ({block.complexity})"
        for path in sorted((ROOT / PACKAGE).rglob("*.py"))
        for block in cc_visit(path.read_text(encoding="utf-8"))
        if block.complexity > MOST_COMPLEX
    ]
    assert not found, "split these into functions that each do one thing:\n" + "\n".join(found)


def test_the_complexity_check_finds_a_complex_function() -> None:
    """The check above cannot pass vacuously: a function of 31 branches is graded E."""
    from radon.complexity import cc_rank, cc_visit

    source = "def f(x):\n" + "".join(f"    if x == {i}:\n        return {i}\n" for i in range(31))
    (block,) = cc_visit(source)
    assert (block.complexity, cc_rank(block.complexity)) == (32, "E")
