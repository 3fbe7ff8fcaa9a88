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
from collections.abc import Callable
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


def _with_article(noun: str) -> str:
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
        raise FingerprintError(
            where, f"describing {_with_article(_safe_type(value))} raised {_exception(err)}"
        ) from None


def _safe_type(value: Any) -> str:
    return getattr(type(value), "__qualname__", "object")


def _exception(err: BaseException) -> str:
    """``AttributeError: message`` on one line, cut to a readable length."""
    text = " ".join(str(err).split())
    text = text if len(text) <= 200 else text[:197] + "..."
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def _canonical(value: Any, where: str, _active: frozenset[int]) -> Any:
    """The canonical tree of ``value``: a leaf as it is, else the first kind of :data:`_KINDS` it is."""
    tree = _leaf(value, where)
    if tree is not _NOT_A_LEAF:
        return tree
    if id(value) in _active:
        raise FingerprintError(where, "it contains itself (a reference cycle)")
    parts = _Parts(where, _active | {id(value)})
    for matches, describe in _KINDS:
        if matches(value):
            return describe(value, where, parts)
    return _instance(value, where, parts)


#: what :func:`_leaf` returns for a value that holds other values (or is not a leaf it knows)
_NOT_A_LEAF = object()


def _leaf(value: Any, where: str) -> Any:
    """The tree of a value that holds no other value (a constant, an enum member, an exact JSON scalar), or
    :data:`_NOT_A_LEAF`."""
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
    return _NOT_A_LEAF


class _Parts:
    """Describes the parts of one value (``parts(item, ".name")``), each at its place inside the value and
    with the value among those being described (so a part holding the value is a reference cycle)."""

    def __init__(self, where: str, active: frozenset[int]) -> None:
        self.where = where
        self.active = active

    def __call__(self, item: Any, suffix: str) -> Any:
        return canonical(item, self.where + suffix, self.active)


def _is_numpy(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    return numpy is not None and isinstance(value, (numpy.ndarray, numpy.generic))


def _numpy(value: Any, where: str, parts: _Parts) -> Any:
    numpy = sys.modules["numpy"]
    if isinstance(value, numpy.ndarray):
        return _ndarray(value, where, parts)
    item = value.item()
    if isinstance(item, numpy.generic):  # longdouble and friends have no exact Python equivalent
        return {"numpy": {"dtype": str(value.dtype), "repr": repr(value), "bytes": value.tobytes().hex()}}
    return {"numpy": {"dtype": str(value.dtype), "value": parts(item, "")}}


def _bound_method(value: types.MethodType, where: str, parts: _Parts) -> Any:
    owner = value.__self__
    if isinstance(owner, type):  # a classmethod: which class it is bound to matters
        if not _importable(owner):
            raise FingerprintError(where, f"the class of {value.__qualname__} cannot be imported by name")
        return {"ref": f"{_qualname(owner)}.{value.__name__}"}
    return {"method": {"self": parts(owner, ".__self__"), "name": value.__name__}}


def _str_subclass(value: str, where: str, parts: _Parts) -> Any:
    return {"strlike": {"type": _type_name(value, where), "value": str(value)}}


def _function_or_class(value: Any, where: str, parts: _Parts) -> Any:
    if isinstance(value, types.FunctionType) and value.__closure__:
        raise FingerprintError(
            where, f"the function {value.__qualname__} is a closure, whose captured values cannot be compared"
        )
    if not _importable(value):
        kind = (
            "a lambda" if getattr(value, "__name__", "") == "<lambda>" else f"{getattr(value, '__qualname__', value)!r}"
        )
        raise FingerprintError(
            where, f"{kind} cannot be fingerprinted: only functions and classes importable by name can"
        )
    return {"ref": _qualname(value)}


def _is_sequence(value: Any) -> bool:
    return isinstance(value, (list, tuple)) and not hasattr(value, "_fields")


def _sequence(value: list[Any] | tuple[Any, ...], where: str, parts: _Parts) -> Any:
    items = [parts(v, f"[{i}]") for i, v in enumerate(value)]
    if type(value) is list:
        return items
    if type(value) is tuple:
        return {"tuple": items}
    return {"sequence": {"type": _type_name(value, where), "items": items}}


def _named_tuple(value: Any, where: str, parts: _Parts) -> Any:
    return {
        "namedtuple": {
            "type": _type_name(value, where),
            "fields": {f: parts(getattr(value, f), f".{f}") for f in value._fields},
        }
    }


def _dict(value: dict[Any, Any], where: str, parts: _Parts) -> Any:
    pairs = [[parts(k, f"[key {k!r}]"), parts(v, f"[{k!r}]")] for k, v in value.items()]
    pairs.sort(key=lambda pair: dumps(pair[0]))
    tag = "dict" if type(value) is dict else f"dict:{_type_name(value, where)}"
    return {tag: pairs}


def _set(value: set[Any] | frozenset[Any], where: str, parts: _Parts) -> Any:
    items = sorted((parts(v, "{element}") for v in value), key=dumps)
    return {"frozenset" if isinstance(value, frozenset) else "set": items}


def _bytes(value: bytes, where: str, parts: _Parts) -> Any:
    return {"bytes": base64.b64encode(value).decode("ascii")}


def _float_subclass(value: float, where: str, parts: _Parts) -> Any:
    return {"floatlike": {"type": _type_name(value, where), "value": repr(float(value))}}


def _int_subclass(value: int, where: str, parts: _Parts) -> Any:  # not bool nor an enum: leaves
    return {"intlike": {"type": _type_name(value, where), "value": int(value)}}


def _path(value: pathlib.PurePath, where: str, parts: _Parts) -> Any:
    return {"path": {"type": type(value).__name__, "value": str(value)}}


def _exact_repr(value: Any, where: str, parts: _Parts) -> Any:
    return {"repr": {"type": _qualname(type(value)), "value": repr(value)}}


def _dataclass(value: Any, where: str, parts: _Parts) -> Any:
    fields = {f.name: parts(getattr(value, f.name), f".{f.name}") for f in dataclasses.fields(value)}
    return {"dataclass": {"type": _type_name(value, where), "fields": fields}}


def _is_named_object(value: Any) -> bool:
    """Ufuncs and other callables importable by name (their name says all of them)."""
    return bool(getattr(value, "__qualname__", None)) and _importable(value)


def _reference(value: Any, where: str, parts: _Parts) -> Any:
    return {"ref": _qualname(value)}


def _is_estimator(value: Any) -> bool:
    """Has scikit-learn's ``get_params()`` (an instance, not the class)."""
    return callable(getattr(value, "get_params", None)) and not isinstance(value, type)


def _estimator(value: Any, where: str, parts: _Parts) -> Any:
    get_params = value.get_params
    try:
        try:
            params = dict(get_params(deep=False))
        except TypeError:
            params = dict(get_params())
    except Exception as err:  # e.g. scikit-learn's AttributeError for a parameter not stored as an attribute
        return _estimator_by_state(value, where, parts, f"its get_params() raised {_exception(err)}")
    return {"estimator": {"type": _type_name(value, where), "params": parts(params, ".get_params()")}}


def _estimator_by_state(value: Any, where: str, parts: _Parts, failed: str) -> Any:
    """An estimator whose ``get_params()`` failed (``failed`` says how), by its whole state instead: exact, if
    stricter than the parameters (fitted state counts too)."""
    if not (_python_class(type(value)) and (hasattr(value, "__dict__") or _slots(value))):
        raise FingerprintError(
            where,
            f"{failed}, and {_with_article(type(value).__qualname__)} is not a pure-Python object that could be "
            "described by its attributes instead",
        ) from None
    try:
        return _object(value, where, parts)
    except FingerprintError as inner:
        raise FingerprintError(
            where, f"{failed}, and describing it by its attributes instead failed: {inner}"
        ) from None


def _partial(value: functools.partial[Any], where: str, parts: _Parts) -> Any:
    return {
        "partial": {
            "func": parts(value.func, ".func"),
            "args": parts(list(value.args), ".args"),
            "keywords": parts(dict(value.keywords), ".keywords"),
        }
    }


def _instance(value: Any, where: str, parts: _Parts) -> Any:
    """A value of no kind above: a pure-Python object by its state; anything else (a C type, a file) refused."""
    if _python_class(type(value)) and not hasattr(value, "read") and (hasattr(value, "__dict__") or _slots(value)):
        return _object(value, where, parts)
    raise FingerprintError(where, f"{_with_article(type(value).__qualname__)} cannot be fingerprinted exactly")


def _instance_of(*classes: type) -> Callable[[Any], bool]:
    return lambda value: isinstance(value, classes)


#: the kinds of values that hold other values (or are not exact JSON), in the order they are tried: the first
#: that matches describes the value (a ``str`` subclass before functions, a named tuple after other sequences,
#: a ``float`` subclass after containers, a dataclass after exact reprs, ...)
_KINDS: tuple[tuple[Callable[[Any], bool], Callable[[Any, str, _Parts], Any]], ...] = (
    (_is_numpy, _numpy),
    (_instance_of(types.MethodType), _bound_method),
    (_instance_of(str), _str_subclass),
    (_instance_of(types.FunctionType, types.BuiltinFunctionType, type), _function_or_class),
    (_is_sequence, _sequence),
    (_instance_of(tuple), _named_tuple),
    (_instance_of(dict), _dict),
    (_instance_of(set, frozenset), _set),
    (_instance_of(bytes), _bytes),
    (_instance_of(float), _float_subclass),
    (_instance_of(int), _int_subclass),
    (_instance_of(pathlib.PurePath), _path),
    (_instance_of(*_EXACT_REPR), _exact_repr),
    (dataclasses.is_dataclass, _dataclass),
    (_is_named_object, _reference),
    (_is_estimator, _estimator),
    (_instance_of(functools.partial), _partial),
)


def _object(value: Any, where: str, parts: _Parts) -> Any:
    """A pure-Python instance by its class and its whole state (``vars()`` and slots)."""
    state = {k: parts(v, f".{k}") for k, v in sorted(vars(value).items())} if hasattr(value, "__dict__") else {}
    state.update({k: parts(v, f".{k}") for k, v in _slots(value).items()})
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


def _ndarray(array: Any, where: str, parts: _Parts) -> Any:
    numpy = sys.modules["numpy"]
    dtype = array.dtype.descr if array.dtype.names else array.dtype.str  # structured: field names and types
    head = {"dtype": dtype, "shape": list(array.shape)}
    if array.dtype.kind == "O":
        return {"ndarray": {**head, "items": [parts(v, f"[{i}]") for i, v in enumerate(array.ravel(order="C"))]}}
    data = numpy.ascontiguousarray(array).tobytes(order="C")
    head["sha256"] = hashlib.sha256(data).hexdigest()
    if array.size <= INLINE_ELEMENTS and array.dtype.kind in "biuf":
        head["items"] = [canonical(v) for v in array.ravel(order="C").tolist()]
    return {"ndarray": head}
