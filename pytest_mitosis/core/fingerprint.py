"""Canonical, exact fingerprints of parameter values, stable across processes and hash seeds.

A value becomes a *canonical tree*: JSON scalars and lists stay as they are, everything else
is a one-key object tagged with its kind (``{"tuple": [...]}``, ``{"dict": [[k, v], ...]}``,
``{"ndarray": {...}}``). Sets and dict items are sorted by the JSON text of their canonical
form, never by ``hash``, so ``PYTHONHASHSEED`` does not matter; floats are exact (``repr``
round-trips); arrays are hashed over every element. The fingerprint is the SHA-256 of the
tree's JSON. The tree doubles as the recorded value: readable back without user code.

A value that cannot be described exactly (a lambda, a closure, an open file) raises
``FingerprintError`` naming where in the value it sits; so does any exception raised while
describing it (a ``get_params()`` or a property that fails), because user code runs here and
one odd value must refuse one trial, never crash the session. No pytest import here.
"""

from __future__ import annotations

import base64
import dataclasses
import datetime
import decimal
import enum
import fractions
import functools
import hashlib
import importlib
import json
import math
import pathlib
import sys
import types
from typing import Any

from .errors import MitosisError

#: arrays up to this many elements keep their elements in the recorded value (for diffs)
INLINE_ELEMENTS = 10_000

_EXACT_REPR = (
    datetime.datetime,
    datetime.date,
    datetime.time,
    datetime.timedelta,
    decimal.Decimal,
    fractions.Fraction,
    complex,
    range,
    slice,
)


class FingerprintError(MitosisError):
    """The value (or a part of it, at ``where``) has no exact, process-independent description."""

    def __init__(self, where: str, what: str) -> None:
        self.where = where
        self.what = what
        super().__init__(f"{where or 'the value'}: {what}")


def dumps(tree: Any) -> str:
    """The one JSON text of a canonical tree (sorted keys, no spaces, no NaN)."""
    return json.dumps(tree, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def fingerprint(value: Any) -> tuple[str, Any]:
    """``(sha256 hex, canonical tree)`` of ``value``; raises ``FingerprintError``."""
    tree = canonical(value)
    return hashlib.sha256(dumps(tree).encode("utf-8")).hexdigest(), tree


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', None)}:{getattr(obj, '__qualname__', None)}"


def _importable(obj: Any) -> bool:
    """Whether ``module:qualname`` leads back to this very object (so the name means it)."""
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        return False
    try:
        found: Any = sys.modules.get(module) or importlib.import_module(module)
        for part in qualname.split("."):
            found = getattr(found, part)
    except Exception:
        return False
    return found is obj or (getattr(found, "__func__", None) is getattr(obj, "__func__", object()))


#: singletons (compared by identity: ``==`` on an arbitrary value may raise) described by name
_CONSTANTS: tuple[tuple[Any, Any], ...] = (
    (Ellipsis, {"const": "Ellipsis"}),
    (NotImplemented, {"const": "NotImplemented"}),
    # their classes (and None's) say they are in builtins, but only the types module has them
    (type(None), {"ref": "types:NoneType"}),
    (type(Ellipsis), {"ref": "types:EllipsisType"}),
    (type(NotImplemented), {"ref": "types:NotImplementedType"}),
)


def _a(noun: str) -> str:
    """``noun`` with its indefinite article, for messages: "an ellipsis", "a Random"."""
    return f"{'an' if noun[:1].lower() in 'aeiou' else 'a'} {noun}"


def _type_name(obj: Any, where: str) -> str:
    cls = type(obj)
    if not _importable(cls):
        raise FingerprintError(where, f"its class {cls.__qualname__} is defined where it cannot be imported by name")
    return _qualname(cls)


def canonical(value: Any, where: str = "", _active: frozenset[int] = frozenset()) -> Any:
    """The canonical tree of ``value`` (see the module docstring); raises only ``FingerprintError``.

    Describing a value runs its code (``get_params``, properties, ``__getattr__``); whatever that
    raises becomes a ``FingerprintError`` at the innermost place it happened.
    """
    try:
        return _canonical(value, where, _active)
    except FingerprintError:
        raise
    except RecursionError:
        raise FingerprintError(where, "it is nested too deeply to be described") from None
    except Exception as err:
        raise FingerprintError(where, f"describing {_a(_safe_type(value))} raised {_exception(err)}") from None


def _safe_type(value: Any) -> str:
    return getattr(type(value), "__qualname__", "object")


def _exception(err: BaseException) -> str:
    """``AttributeError: message`` on one line, cut to a readable length."""
    text = " ".join(str(err).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _canonical(value: Any, where: str, _active: frozenset[int]) -> Any:
    for constant, tree in _CONSTANTS:
        if value is constant:
            return dict(tree)
    if isinstance(value, enum.Enum):  # before str and int: a StrEnum member is not its string
        return {"enum": f"{_type_name(value, where)}.{value.name}"}
    if value is None or isinstance(value, bool) or type(value) is str:
        return value
    if isinstance(value, int) and type(value) is int:
        return value
    if type(value) is float:
        return value if math.isfinite(value) else {"float": repr(value)}
    if id(value) in _active:
        raise FingerprintError(where, "it contains itself (a reference cycle)")
    active = _active | {id(value)}

    def sub(item: Any, suffix: str) -> Any:
        return canonical(item, where + suffix, active)

    numpy = sys.modules.get("numpy")
    if numpy is not None:
        if isinstance(value, numpy.ndarray):
            return _ndarray(value, where, sub)
        if isinstance(value, numpy.generic):
            item = value.item()
            if isinstance(item, numpy.generic):  # longdouble and friends have no exact Python equivalent
                return {"numpy": {"dtype": str(value.dtype), "repr": repr(value), "bytes": value.tobytes().hex()}}
            return {"numpy": {"dtype": str(value.dtype), "value": sub(item, "")}}
    if isinstance(value, types.MethodType):
        owner = value.__self__
        if isinstance(owner, type):  # a classmethod: which class it is bound to matters
            if not _importable(owner):
                raise FingerprintError(where, f"the class of {value.__qualname__} cannot be imported by name")
            return {"ref": f"{_qualname(owner)}.{value.__name__}"}
        return {"method": {"self": sub(owner, ".__self__"), "name": value.__name__}}
    if isinstance(value, str):  # a str subclass
        return {"strlike": {"type": _type_name(value, where), "value": str(value)}}
    if isinstance(value, (types.FunctionType, types.BuiltinFunctionType, type)):
        if isinstance(value, types.FunctionType) and value.__closure__:
            raise FingerprintError(
                where, f"the function {value.__qualname__} is a closure, whose captured values cannot be compared"
            )
        if not _importable(value):
            kind = (
                "a lambda"
                if getattr(value, "__name__", "") == "<lambda>"
                else f"{getattr(value, '__qualname__', value)!r}"
            )
            raise FingerprintError(
                where, f"{kind} cannot be fingerprinted: only functions and classes importable by name can"
            )
        return {"ref": _qualname(value)}
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):
        items = [sub(v, f"[{i}]") for i, v in enumerate(value)]
        if type(value) is list:
            return items
        if type(value) is tuple:
            return {"tuple": items}
        return {"sequence": {"type": _type_name(value, where), "items": items}}
    if isinstance(value, tuple):  # a named tuple
        return {
            "namedtuple": {
                "type": _type_name(value, where),
                "fields": {f: sub(getattr(value, f), f".{f}") for f in value._fields},  # type: ignore[attr-defined]
            }
        }
    if isinstance(value, dict):
        pairs = [[sub(k, f"[key {k!r}]"), sub(v, f"[{k!r}]")] for k, v in value.items()]
        pairs.sort(key=lambda pair: dumps(pair[0]))
        tag = "dict" if type(value) is dict else f"dict:{_type_name(value, where)}"
        return {tag: pairs}
    if isinstance(value, (set, frozenset)):
        items = sorted((sub(v, "{element}") for v in value), key=dumps)
        return {"frozenset" if isinstance(value, frozenset) else "set": items}
    if isinstance(value, bytes):
        return {"bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, float):  # a float subclass
        return {"floatlike": {"type": _type_name(value, where), "value": repr(float(value))}}
    if isinstance(value, int):  # an int subclass that is not bool or an enum
        return {"intlike": {"type": _type_name(value, where), "value": int(value)}}
    if isinstance(value, pathlib.PurePath):
        return {"path": {"type": type(value).__name__, "value": str(value)}}
    if isinstance(value, _EXACT_REPR):
        return {"repr": {"type": _qualname(type(value)), "value": repr(value)}}
    if dataclasses.is_dataclass(value):
        fields = {f.name: sub(getattr(value, f.name), f".{f.name}") for f in dataclasses.fields(value)}
        return {"dataclass": {"type": _type_name(value, where), "fields": fields}}
    if getattr(value, "__qualname__", None) and _importable(value):  # ufuncs, functools.partial-free callables
        return {"ref": _qualname(value)}
    get_params = getattr(value, "get_params", None)
    if callable(get_params) and not isinstance(value, type):
        try:
            try:
                params = dict(get_params(deep=False))
            except TypeError:
                params = dict(get_params())
        except Exception as err:  # e.g. scikit-learn's AttributeError for a parameter not stored as an attribute
            failed = f"its get_params() raised {_exception(err)}"
            if not (_python_class(type(value)) and (hasattr(value, "__dict__") or _slots(value))):
                raise FingerprintError(
                    where,
                    f"{failed}, and {_a(type(value).__qualname__)} is not a pure-Python object that could be "
                    "described by its attributes instead",
                ) from None
            try:  # the whole state instead: exact, if stricter than the parameters (fitted state counts too)
                return _object(value, where, sub)
            except FingerprintError as inner:
                raise FingerprintError(
                    where, f"{failed}, and describing it by its attributes instead failed: {inner}"
                ) from None
        return {"estimator": {"type": _type_name(value, where), "params": sub(params, ".get_params()")}}
    if isinstance(value, functools.partial):
        return {
            "partial": {
                "func": sub(value.func, ".func"),
                "args": sub(list(value.args), ".args"),
                "keywords": sub(dict(value.keywords), ".keywords"),
            }
        }
    if not _python_class(type(value)) or hasattr(value, "read"):
        raise FingerprintError(where, f"{_a(type(value).__qualname__)} cannot be fingerprinted exactly")
    if hasattr(value, "__dict__") or _slots(value):
        return _object(value, where, sub)
    raise FingerprintError(where, f"{_a(type(value).__qualname__)} cannot be fingerprinted exactly")


def _object(value: Any, where: str, sub: Any) -> Any:
    """A pure-Python instance by its class and its whole state (``vars()`` and slots)."""
    state = {k: sub(v, f".{k}") for k, v in sorted(vars(value).items())} if hasattr(value, "__dict__") else {}
    state.update({k: sub(v, f".{k}") for k, v in _slots(value).items()})
    return {"object": {"type": _type_name(value, where), "state": state}}


_HEAPTYPE = 1 << 9


def _python_class(cls: type) -> bool:
    """Defined in Python all the way down, so ``vars()`` and slots hold all of its state.

    A C type (``functools.partial``, an RNG, a file) keeps state that ``vars()`` does not show;
    describing it by ``vars()`` would make different values look equal.
    """
    return all(c is object or (c.__flags__ & _HEAPTYPE and _python_module(c.__module__)) for c in cls.__mro__)


def _python_module(name: str) -> bool:
    """The module is Python source (not an extension or builtin module, whose types are C)."""
    module = sys.modules.get(name)
    return name == "__main__" or str(getattr(module, "__file__", "") or "").endswith(".py")


def _slots(value: Any) -> dict[str, Any]:
    names: list[str] = []
    for cls in type(value).__mro__:
        slots = cls.__dict__.get("__slots__", ())
        names += [slots] if isinstance(slots, str) else list(slots)
    return {n: getattr(value, n) for n in sorted(set(names) - {"__dict__", "__weakref__"}) if hasattr(value, n)}


def _ndarray(array: Any, where: str, sub: Any) -> Any:
    numpy = sys.modules["numpy"]
    dtype = array.dtype.descr if array.dtype.names else array.dtype.str  # structured: field names and types
    head = {"dtype": dtype, "shape": list(array.shape)}
    if array.dtype.kind == "O":
        return {"ndarray": {**head, "items": [sub(v, f"[{i}]") for i, v in enumerate(array.ravel(order="C"))]}}
    data = numpy.ascontiguousarray(array).tobytes(order="C")
    head["sha256"] = hashlib.sha256(data).hexdigest()
    if array.size <= INLINE_ELEMENTS and array.dtype.kind in "biuf":
        head["items"] = [canonical(v) for v in array.ravel(order="C").tolist()]
    return {"ndarray": head}
