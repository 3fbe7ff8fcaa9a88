"""Import the steps named in ``[tool.mitosis.steps]`` and read what their signatures accept.

This is the only place where collection imports user code: in pytest's process, or in a fork
of the kernels' warm parent (:mod:`pytest_mitosis.execution.forkcollect`). Import failures show
the user's own traceback (not ours, not importlib's), and every other problem names the
file, the step and the fix. No pytest import here.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import pkgutil
import sys
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from ..core.errors import ConfigError, shorten
from .project import ProjectConfig, Reference, StepConfig

_OWN_DIR = str(Path(__file__).parent.parent)  # the whole package, not only config/
_IMPORTLIB_DIR = str(Path(importlib.__file__).parent)
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class LoadedStep:
    """A step whose callable and lookup dict were imported and checked."""

    config: StepConfig
    module: ModuleType
    function: Callable[..., Any]
    lookup: Mapping[str, Mapping[str, Any]]
    parameters: tuple[inspect.Parameter, ...]
    chained: bool

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def lookup_params(self) -> tuple[str, ...]:
        """The keys of the lookup dict that the callable accepts, in signature order."""
        return tuple(p.name for p in self.parameters if p.name in self.lookup)


def _user_traceback(err: BaseException) -> str:
    """The traceback of ``err`` without importlib's and pytest-mitosis' own frames."""
    frames = [
        frame
        for frame in traceback.extract_tb(err.__traceback__)
        if not frame.filename.startswith(("<frozen importlib", _OWN_DIR, _IMPORTLIB_DIR))
    ]
    text = "".join(traceback.format_list(frames)) + "".join(traceback.format_exception_only(type(err), err))
    return "\n".join("    " + line for line in text.rstrip().splitlines())


def ensure_importable(root: Path) -> None:
    """Make the investigation's directory importable, as ``python -m`` from there would."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))


def _similar(missing: str, root: Path) -> list[str]:
    """Importable module names close to ``missing`` (a typo's likely intent), for the hint."""
    parent, _, last = missing.rpartition(".")
    try:
        if parent:
            package = sys.modules.get(parent) or importlib.import_module(parent)
            found = {m.name for m in pkgutil.iter_modules(getattr(package, "__path__", []))}
        else:
            found = {m.name for m in pkgutil.iter_modules([str(root)])}
            found |= {m.name for m in pkgutil.iter_modules() if not m.name.startswith("_")}
    except Exception:  # a hint only: never let it hide the real message
        return []
    return [f"{parent}.{name}" if parent else name for name in difflib.get_close_matches(last, sorted(found), n=3)]


def _import(project: ProjectConfig, key: str, ref: Reference, what: str) -> ModuleType:
    """Import ``ref``'s module; a failure says whether the fix is in pyproject.toml or in the module."""
    try:
        return importlib.import_module(ref.module)
    except Exception as err:
        absent = err.name if isinstance(err, ModuleNotFoundError) and err.name else None
        if absent is not None and (ref.module == absent or ref.module.startswith(absent + ".")):
            # the module named in pyproject.toml (or a package on its path) does not exist: a typo, or not installed
            similar = _similar(absent, project.root)
            guess = f" Did you mean {' or '.join(repr(s) for s in similar)}?" if similar else ""
            which = (
                f"there is no module {absent!r} (from the {what} {str(ref)!r})"
                if absent == ref.module
                else f"there is no module {absent!r}, so {ref.module!r} (from the {what} {str(ref)!r}) cannot be imported"
            )
            raise ConfigError(
                f"{project.path}: {key}: {which}.{guess} If the name is misspelt, fix it in {project.path.name} "
                f"({key}); otherwise make {absent!r} importable from {project.root} (install it in this "
                f"environment, or put it beside {project.path.name})."
            ) from None
        if absent is not None:
            hint = (
                f"Module {ref.module!r} exists, but it imports {absent!r}, which cannot be found in this environment "
                f"({sys.executable}): install it, or fix that import in the module, and run again."
            )
        else:
            hint = (
                f"Module {ref.module!r} exists but raised this while being imported. Fix the error in the module "
                "(the traceback above ends where it was raised) and run again."
            )
        raise ConfigError(
            f"{project.path}: {key}: importing module {ref.module!r} failed:\n\n{_user_traceback(err)}\n\n{hint}"
        ) from None


def resolve(project: ProjectConfig, key: str, ref: Reference, what: str = "reference") -> tuple[ModuleType, Any]:
    """Import ``ref`` and walk its attribute path; errors list what the module does define.

    ``what`` names the reference in messages ("callable", "lookup dict").
    """
    module = _import(project, key, ref, what)
    obj: Any = module
    parts = ref.attr.split(".")
    for index, part in enumerate(parts):
        if not hasattr(obj, part):
            where = ref.module if index == 0 else f"{ref.module}:{'.'.join(parts[:index])}"
            names = sorted(n for n in dir(obj) if not n.startswith("_"))
            shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
            raise ConfigError(
                f"{project.path}: {key}: {where!r} has no attribute {part!r} (from {str(ref)!r}). "
                f"It defines: {shown or 'nothing public'}."
            )
        obj = getattr(obj, part)
    return module, obj


def load_step(project: ProjectConfig, step: StepConfig, chained: bool) -> LoadedStep:
    """Import a step; ``chained`` steps receive the previous step's data as first argument."""
    key = f"[tool.mitosis.steps] {step.name}"
    module, function = resolve(project, key, step.function, "callable")
    if not callable(function):
        raise ConfigError(
            f"{project.path}: {key}: {str(step.function)!r} is a {type(function).__name__}, not a callable. "
            "A step names a function (or other callable) that returns a dict with a 'main' key."
        )
    lookup: Mapping[str, Mapping[str, Any]] = {}
    if step.lookup is not None:
        _, found = resolve(project, key, step.lookup, "lookup dict")
        if not isinstance(found, Mapping):
            raise ConfigError(
                f"{project.path}: {key}: the lookup dict {str(step.lookup)!r} is a {type(found).__name__}; "
                'expected a dict of {param: {variant: value}}, such as {"frequency": {"fast": 10, "slow": 1}}.'
            )
        lookup = found
    try:
        signature = inspect.signature(function)
    except (TypeError, ValueError) as err:
        raise ConfigError(
            f"{project.path}: {key}: cannot read the signature of {str(step.function)!r} ({err})."
        ) from None

    parameters = list(signature.parameters.values())
    if chained:
        positional = [p for p in parameters if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        if not positional and not any(p.kind == p.VAR_POSITIONAL for p in parameters):
            raise ConfigError(
                f"{project.path}: {key}: {str(step.function)!r} follows another step, so it is called with that "
                "step's result['data'] as its first positional argument, but it takes no positional parameter. "
                "Add one (e.g. def fit(data, ...))."
            )
        if positional:
            parameters.remove(positional[0])
    accepted = tuple(p for p in parameters if p.kind in _KEYWORD_KINDS)

    for param in accepted:
        if param.name not in lookup:
            continue
        variants = lookup[param.name]
        # An empty entry ({}) is a lookup param without variants yet (a shared lookup dict often
        # has some): accepted, as mitosis does; it is no axis and the signature default applies.
        if not isinstance(variants, Mapping):
            raise ConfigError(
                f"{project.path}: {key}: the lookup dict {str(step.lookup)!r} maps {param.name!r} to "
                f"{shorten(variants, 60)}; expected a dict of {{variant name: value}}, "
                'such as {"fast": 10, "slow": 1} (or {} while it has no variants).'
            )
        bad = [name for name in variants if not isinstance(name, str) or not name]
        if bad:
            raise ConfigError(
                f"{project.path}: {key}: the lookup dict {str(step.lookup)!r} names a variant of "
                f"{param.name!r} {bad[0]!r}; variant names must be non-empty strings."
            )
    return LoadedStep(step, module, function, lookup, accepted, chained)
