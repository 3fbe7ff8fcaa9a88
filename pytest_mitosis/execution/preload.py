"""What the fork server preloads: the libraries the steps import from outside the investigation.

Found before pytest imports the steps (so the parent imports them while pytest collects, on
the other core): the import statements at the top level of each step module, and of the
investigation's own modules those import, read with :mod:`ast`. A name counts only when it is
found outside the investigation (an installed library); the investigation's own code is
never preloaded: every trial imports it fresh, from the committed tree. An import inside a
function is not preloaded (it may never run). ``mitosis_preload`` (ini) adds names and
removes them (``-torch``). Standard library only.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
from collections.abc import Iterable
from pathlib import Path

#: at most this many of the investigation's modules are read (a huge tree is not worth it)
_MAX_FILES = 200


def _local_file(name: str, root: Path) -> Path | None:
    """The investigation's file for module ``name`` (under ``root``), or ``None``."""
    base = root.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> list[tuple[str, int, list[str]]]:
    """``(module, level, names)`` of every import statement at the top level of ``path`` (also in
    if/try); ``names`` are what ``from module import ...`` takes, which may be submodules."""
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    except (OSError, SyntaxError, ValueError):
        return []
    found: list[tuple[str, int, list[str]]] = []
    todo: list[ast.stmt] = list(tree.body)
    while todo:
        node = todo.pop(0)
        if isinstance(node, ast.Import):
            found += [(alias.name, 0, []) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            found.append((node.module or "", node.level, [a.name for a in node.names if a.name != "*"]))
        elif isinstance(node, (ast.If, ast.Try)):
            todo += (
                node.body
                + node.orelse
                + getattr(node, "finalbody", [])
                + [s for h in getattr(node, "handlers", []) for s in h.body]
            )
    return found


def _is_submodule(name: str) -> bool:
    """Whether ``name`` (``pkg.sub``) is a module file of an installed package (imports nothing)."""
    top, *rest = name.split(".")
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return False
    for location in (spec.submodule_search_locations or []) if spec is not None else []:
        base = Path(location).joinpath(*rest)
        if (
            (base / "__init__.py").is_file()
            or any(base.parent.glob(base.name + ".*py*"))
            or any(base.parent.glob(base.name + ".*.so"))
        ):
            return True
    return False


def _outside(name: str, root: Path) -> bool:
    """Whether top-level module ``name`` is installed outside the investigation (never imports it)."""
    if name in sys.builtin_module_names or name in sys.stdlib_module_names:
        return False  # the standard library costs little and is half-imported by any kernel anyway
    if _local_file(name, root) is not None or (root / name).is_dir():
        return False
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return False
    if spec is None:
        return False
    origin = spec.origin or next(iter(spec.submodule_search_locations or []), None)
    if origin is None:
        return False
    resolved = Path(origin).resolve()
    return not (resolved == root or root in resolved.parents) or "site-packages" in resolved.parts


def discover(root: Path, modules: Iterable[str]) -> list[str]:
    """The installed libraries that ``modules`` (the steps' modules) import at their top level."""
    root = root.resolve()
    found: dict[str, None] = {}
    seen: set[str] = set()
    todo = list(dict.fromkeys(modules))
    while todo and len(seen) < _MAX_FILES:
        module = todo.pop(0)
        if module in seen:
            continue
        seen.add(module)
        path = _local_file(module, root)
        if path is None:
            if _outside(module.split(".")[0], root):
                found[module] = None
            continue
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        for name, level, names in _imports(path):
            if level:  # relative: always the investigation's own
                parts = package.split(".")[: len(package.split(".")) - (level - 1)] if package else []
                target = ".".join(p for p in [*parts, name] if p)
                todo += [t for t in [target, *(f"{target}.{n}" if target else n for n in names)] if t]
                continue
            if not name:
                continue
            top = name.split(".")[0]
            if _local_file(top, root) is not None or (root / top).is_dir():
                todo += [name, *(f"{name}.{n}" for n in names)]
            elif _outside(top, root):
                subs = [f"{name}.{n}" for n in names if _is_submodule(f"{name}.{n}")]
                for module in subs or [name]:
                    found[module] = None
    return list(found)


def adjust(found: list[str], entries: Iterable[str]) -> list[str]:
    """``found`` with the ini's ``mitosis_preload`` entries applied: ``name`` adds, ``-name`` removes
    the module and its submodules."""
    result = dict.fromkeys(found)
    for entry in entries:
        entry = entry.strip()
        if not entry:
            continue
        if entry.startswith("-"):
            gone = entry[1:].strip()
            result = {m: None for m in result if m != gone and not m.startswith(gone + ".")}
        else:
            result[entry.lstrip("+").strip()] = None
    return list(result)


def imported_by(modules: Iterable[str], root: Path) -> list[str]:
    """The installed modules that the (already imported) step modules hold at their top level.

    Read from the modules' globals after pytest imported them (nothing is imported here): a
    module bound to a name (``np``), or the module of a class or function (``Ridge`` gives
    ``sklearn.linear_model._ridge``). This catches what :func:`discover` cannot read, such as an
    ``importlib.import_module`` call at a module's top level.
    """
    root = root.resolve()
    found: dict[str, None] = {}
    for name in dict.fromkeys(modules):
        module = sys.modules.get(name)
        for value in list(vars(module).values()) if module is not None else []:
            other = value.__name__ if isinstance(value, type(sys)) else getattr(value, "__module__", None)
            if not isinstance(other, str) or not other or other.startswith("_"):
                continue
            top = other.split(".")[0]
            if top != name.split(".")[0] and top not in found and _outside(top, root):
                found[other] = None
    return list(found)
