"""Fingerprints are exact over the whole value and stable across processes and hash seeds."""

from __future__ import annotations

import collections
import dataclasses
import enum
import functools
import math
import os
import random
import re
import subprocess
import sys

import numpy as np
import pytest

from pytest_mitosis.core.fingerprint import FingerprintError, fingerprint
from pytest_mitosis.core.tree_text import difference, render


@dataclasses.dataclass
class Config:
    rate: float
    layers: list[int]


Point = collections.namedtuple("Point", "x y")


class Color(enum.Enum):
    RED = 1
    BLUE = 2


class Estimator:
    def __init__(self, alpha: float = 1.0, fit_intercept: bool = True) -> None:
        self.alpha = alpha
        self.fit_intercept = fit_intercept
        self.coef_ = None  # fitted state is not part of the parameters

    def get_params(self, deep: bool = True) -> dict[str, object]:
        return {"alpha": self.alpha, "fit_intercept": self.fit_intercept}


class Plain:
    def __init__(self, a: object) -> None:
        self.a = a


def fp(value: object) -> str:
    return fingerprint(value)[0]


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ({"a": 1, "b": 2}, {"b": 2, "a": 1}),
        ({3, 1, 2}, {1, 2, 3}),
        (frozenset({"x", "y"}), frozenset({"y", "x"})),
        (np.arange(6).reshape(2, 3), np.arange(6).reshape(2, 3).copy()),
        (Config(0.1, [1, 2]), Config(0.1, [1, 2])),
        (Estimator(2.0), Estimator(2.0)),
        (Plain({"k": [1]}), Plain({"k": [1]})),
    ],
)
def test_equal_values_have_equal_fingerprints(left: object, right: object) -> None:
    assert fp(left) == fp(right)


@pytest.mark.parametrize(
    ("left", "right"),
    [
        ([1, 2], (1, 2)),
        (1, 1.0),
        (True, 1),
        (0.1, 0.1 + 1e-17 * 0 + 5e-17),
        (0.0, -0.0),
        ({1, 2}, frozenset({1, 2})),
        (np.arange(3, dtype=np.int64), np.arange(3, dtype=np.int32)),
        (np.zeros((2, 3)), np.zeros((3, 2))),
        (Config(0.1, [1, 2]), Config(0.1, [1, 3])),
        (Point(1, 2), (1, 2)),
        (Color.RED, Color.BLUE),
        (Estimator(1.0), Estimator(2.0)),
        (math.sin, math.cos),
        ("1", 1),
        (functools.partial(print, 1), functools.partial(print, 2)),
    ],
)
def test_different_values_have_different_fingerprints(left: object, right: object) -> None:
    assert fp(left) != fp(right)


def test_one_element_of_a_large_array_changes_the_fingerprint_and_is_located() -> None:
    stored = np.linspace(0, 1, 2000)
    attempted = stored.copy()
    attempted[1234] += 1e-9
    (a, tree_a), (b, tree_b) = fingerprint(stored), fingerprint(attempted)
    assert a != b
    assert difference(tree_a, tree_b).startswith("[flat index 1234]: ")
    big = np.zeros(1_000_000)
    big2 = big.copy()
    big2[999_999] = 1
    assert fp(big) != fp(big2)


def test_estimators_compare_by_class_and_parameters_not_fitted_state() -> None:
    fitted = Estimator(2.0)
    fitted.coef_ = [1.0, 2.0]  # type: ignore[assignment]
    assert fp(fitted) == fp(Estimator(2.0))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (lambda x: x, "a lambda cannot be fingerprinted: only functions and classes importable by name can"),
        ({"f": [lambda: 1]}, "['f'][0]: a lambda cannot be fingerprinted"),
        (functools.partial(lambda x: x, 1), ".func: a lambda cannot be fingerprinted"),
        (random.Random(1), "a Random cannot be fingerprinted exactly"),
    ],
)
def test_values_without_an_exact_description_are_refused_with_where(value: object, message: str) -> None:
    with pytest.raises(FingerprintError) as info:
        fingerprint(value)
    assert message in str(info.value)


def test_open_files_and_closures_are_refused() -> None:
    def outer() -> object:
        y = 1

        def inner() -> int:
            return y

        return inner

    with pytest.raises(FingerprintError, match="closure"), open(os.devnull) as stream:
        fingerprint(outer())
    with open(os.devnull) as stream, pytest.raises(FingerprintError, match="TextIOWrapper"):
        fingerprint(stream)


def test_importable_functions_are_named() -> None:
    assert render(fingerprint({"f": np.sin, "g": math.sqrt})[1]) == "{'f': numpy:sin, 'g': math:sqrt}"


CHILD = """
import numpy as np
from pytest_mitosis.core.fingerprint import fingerprint
value = {"s": {"b", "a", "c", 3, (1, 2)}, "f": frozenset({"x", "y"}), "a": np.arange(5.0), "d": {"z": 1, "y": 2}}
print(fingerprint(value)[0])
"""


def test_stable_across_processes_and_hash_seeds() -> None:
    digests = {
        subprocess.run(
            [sys.executable, "-c", CHILD],
            env={**os.environ, "PYTHONHASHSEED": seed},
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        for seed in ("0", "1", "12345")
    }
    assert len(digests) == 1


class Shade(str, enum.Enum):
    DARK = "dark"


class Maker:
    @classmethod
    def make(cls) -> None:
        pass


class SubMaker(Maker):
    pass


def test_values_that_once_collided_are_told_apart() -> None:
    assert fp(Shade.DARK) != fp("dark"), "a str enum member is not its string"
    a = np.zeros(2, dtype=[("a", "<i8")])
    b = np.zeros(2, dtype=[("b", "<f8")])
    assert fp(a) != fp(b), "structured arrays compare by their fields"
    assert fp(SubMaker.make) != fp(Maker.make), "a classmethod is bound to its class"
    assert render(fingerprint(SubMaker.make)[1]).endswith("SubMaker.make")


def test_numpy_scalars_without_a_python_equivalent_are_exact() -> None:
    assert fp(np.longdouble(1)) == fp(np.longdouble(1))
    assert fp(np.longdouble(1)) != fp(np.longdouble(2))


# -- values whose description runs code that fails (issue 12, point 3) ---------------------------


class Leaf:
    def __init__(self, degree: int) -> None:
        self.degree = degree


class Composite:
    """A scikit-learn-style estimator composed of custom parts: ``get_params`` reads an attribute
    named after an ``__init__`` parameter that the class stores under another name, so it raises
    ``AttributeError`` exactly as scikit-learn's ``BaseEstimator.get_params`` does."""

    def __init__(self, inner: object = None, alpha: float = 1.0) -> None:
        self.inner_ = inner
        self.alpha = alpha

    def get_params(self, deep: bool = True) -> dict[str, object]:
        return {"inner": self.inner, "alpha": self.alpha}


class CompositeWithRng(Composite):
    def __init__(self) -> None:
        super().__init__(Leaf(1))
        self.rng = random.Random(0)


class Lazy:
    """Any attribute lookup it does not know raises something other than AttributeError."""

    def __getattr__(self, name: str) -> object:
        raise RuntimeError(f"lazy attribute {name} failed to load")


class ForeignEstimator(Composite):
    pass


ForeignEstimator.__module__ = "math"  # as if defined in a C extension: vars() would not hold its whole state


def test_a_failing_get_params_falls_back_to_the_whole_state_of_a_pure_python_object() -> None:
    digest, tree = fingerprint(Composite(Leaf(2), alpha=0.5))
    assert tree == {
        "object": {
            "type": f"{__name__}:Composite",
            "state": {"alpha": 0.5, "inner_": {"object": {"type": f"{__name__}:Leaf", "state": {"degree": 2}}}},
        }
    }
    assert digest == fp(Composite(Leaf(2), alpha=0.5)), "stable"
    assert digest != fp(Composite(Leaf(3), alpha=0.5)), "exact: a nested part that differs is a different value"
    assert render(tree) == "Composite(alpha=0.5, inner_=Leaf(degree=2))"


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (
            CompositeWithRng(),
            "the value: its get_params() raised AttributeError: 'CompositeWithRng' object has no attribute 'inner', "
            "and describing it by its attributes instead failed: .rng: a Random cannot be fingerprinted exactly",
        ),
        (
            {"model": ForeignEstimator()},
            "['model']: its get_params() raised AttributeError: 'ForeignEstimator' object has no attribute 'inner', "
            "and a ForeignEstimator is not a pure-Python object that could be described by its attributes instead",
        ),
        ([1, Lazy()], r"[1]: describing a Lazy raised RuntimeError: lazy attribute \w+ failed to load"),
    ],
)
def test_any_exception_while_describing_a_value_is_a_fingerprint_error(value: object, message: str) -> None:
    with pytest.raises(FingerprintError) as info:
        fingerprint(value)
    assert re.fullmatch(re.escape(message).replace(re.escape(r"\w+"), r"\w+"), str(info.value)), str(info.value)


# -- singletons and special floats (issue 12, point 4) ------------------------------------------


def test_singletons_are_exact() -> None:
    assert fingerprint(...)[1] == {"const": "Ellipsis"}
    assert fingerprint({"xlim": (0, ...)})[1] == {"dict": [["xlim", {"tuple": [0, {"const": "Ellipsis"}]}]]}
    assert render(fingerprint([1, ...])[1]) == "[1, Ellipsis]"
    values = [
        ...,
        NotImplemented,
        None,
        "...",
        "Ellipsis",
        "NotImplemented",
        type(None),
        type(...),
        type(NotImplemented),
    ]
    assert len({fp(v) for v in values}) == len(values), "every singleton is itself, and none is its name"
    assert render(fingerprint(type(None))[1]) == "types:NoneType"


def test_nan_is_stable_and_signed_zeros_differ() -> None:
    assert fp(float("nan")) == fp(float("nan")) == fp(math.nan)
    assert fp([float("nan")]) == fp([math.nan])
    assert fp(np.float64("nan")) == fp(np.float64("nan"))
    assert fp(-0.0) != fp(0.0)
    assert fp(np.array([-0.0])) != fp(np.array([0.0]))
    assert fp(float("inf")) != fp(float("-inf"))


def test_refusals_use_the_right_article() -> None:
    with pytest.raises(FingerprintError, match=r"^the value: an object cannot be fingerprinted exactly$"):
        fingerprint(object())
    with pytest.raises(FingerprintError, match=r"^the value: a Random cannot be fingerprinted exactly$"):
        fingerprint(random.Random(1))


def test_recorded_singletons_are_read_back_as_themselves() -> None:
    """A recorded Ellipsis comes back from the store as ``...`` (load_trial_params, load_trials)."""
    from pytest_mitosis.store import decode

    _, tree = fingerprint({"xlim": (0, ...), "flag": NotImplemented})
    assert decode(tree) == {"xlim": (0, ...), "flag": NotImplemented}
