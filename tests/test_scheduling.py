"""The suite's own scheduling: tests sharing a module-scoped fixture form one xdist work unit."""

from __future__ import annotations

from pathlib import Path

from .scheduling import SharedFixtureScheduling, shared_tests

MODULE = """
import pytest

@pytest.fixture(scope="module")
def sessions(tmp_path_factory):
    return 1

@pytest.fixture
def one_run(sessions):
    return sessions

@pytest.fixture(scope="function")
def cheap():
    return 2

def test_direct(sessions):
    pass

def test_through_a_fixture(one_run):
    pass

@pytest.mark.parametrize("x", [1, 2])
def test_parametrized(sessions, x):
    pass

def test_alone(cheap, tmp_path):
    pass
"""


def test_only_tests_that_reach_a_module_fixture_are_grouped_with_their_module(tmp_path: Path) -> None:
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_sample.py").write_text(MODULE, encoding="utf-8")
    assert shared_tests(tmp_path / "tests" / "test_sample.py") == {
        "test_direct",
        "test_through_a_fixture",
        "test_parametrized",
    }
    scheduler = SharedFixtureScheduling.__new__(SharedFixtureScheduling)
    scheduler.rootpath = tmp_path
    assert scheduler._split_scope("tests/test_sample.py::test_direct") == "tests/test_sample.py"
    assert scheduler._split_scope("tests/test_sample.py::test_parametrized[1]") == "tests/test_sample.py"
    assert scheduler._split_scope("tests/test_sample.py::test_alone") == "tests/test_sample.py::test_alone"
    assert scheduler._split_scope("tests/missing.py::test_x") == "tests/missing.py::test_x"
