"""Installed but unused, pytest-mitosis costs nothing: no heavy imports, no git, no files.

These run pytest in a subprocess: what matters is the state of pytest's own process.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from .conftest import EXAMPLE, clean_env

HEAVY = ("nbclient", "nbconvert", "nbformat", "git", "yaml", "jupyter_client", "sqlite3")

PROBE = """
import json, sys
import pytest
code = pytest.main({args!r})
print("MODULES=" + json.dumps({{
    "code": int(code),
    "plugin": "pytest_mitosis.plugin" in sys.modules,
    "heavy": sorted(m for m in {heavy!r} if m in sys.modules),
}}))
"""


def probe(cwd: Path, *args: str) -> dict[str, object]:
    code = PROBE.format(args=["-p", "no:cacheprovider", *args], heavy=HEAVY)
    done = subprocess.run([sys.executable, "-c", code], cwd=cwd, env=clean_env(), capture_output=True, text=True)
    line = next(s for s in done.stdout.splitlines() if s.startswith("MODULES="))
    return json.loads(line.split("=", 1)[1])  # type: ignore[no-any-return]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "study"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("trials", "__pycache__"))
    (root / "test_plain.py").write_text("def test_it():\n    assert True\n")
    return root


def test_a_run_without_mitosis_imports_nothing_heavy_and_writes_nothing(project: Path) -> None:
    before = sorted(p.name for p in project.iterdir())
    found = probe(project)
    assert found == {"code": 0, "plugin": True, "heavy": []}
    assert sorted(p.name for p in project.iterdir() if p.name != "__pycache__") == before
    assert not (project / "trials").exists()


def test_collect_only_with_mitosis_starts_no_kernel_and_writes_no_trials(project: Path) -> None:
    found = probe(project, "--mitosis", "--collect-only", "-q")
    assert found["code"] == 0
    assert not {"nbclient", "nbconvert", "jupyter_client", "git"} & set(found["heavy"])  # type: ignore[arg-type]
    assert not (project / "trials").exists()


def test_help_lists_the_options_and_writes_nothing(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "--help"], cwd=project, env=clean_env(), capture_output=True, text=True
    )
    assert done.returncode == 0
    for option in (
        "--mitosis ",
        "--mitosis-param=",
        "--mitosis-eval=",
        "--mitosis-config=PATH",
        "--mitosis-trials-folder=DIR",
        "--mitosis-timeout=SECONDS",
        "--mitosis-debug",
        "mitosis_trials_folder (string):",
        "mitosis_timeout (string):",
    ):
        assert option in done.stdout, option
    assert not (project / "trials").exists()


def test_p_no_mitosis_disables_the_plugin(project: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:mitosis", "--mitosis"],
        cwd=project,
        env=clean_env(),
        capture_output=True,
        text=True,
    )
    assert done.returncode == pytest.ExitCode.USAGE_ERROR
    assert "unrecognized arguments: --mitosis" in done.stderr


def below_the_pytest_layer() -> list[str]:
    """Every module of the stage packages, found by walking the package (new modules are covered).

    The pytest layer (``pytest_mitosis.pytest_layer``), the xdist layer (``pytest_mitosis.distributed``)
    and the entry point may import pytest; every module of a stage package must run without it.
    """
    import pkgutil

    import pytest_mitosis

    found = [m.name for m in pkgutil.walk_packages(pytest_mitosis.__path__, "pytest_mitosis.")]
    above = ("pytest_mitosis.pytest_layer", "pytest_mitosis.distributed")
    stages = [
        name
        for name in found
        if (name.count(".") >= 2 or any(other.startswith(name + ".") for other in found)) and not name.startswith(above)
    ]
    return ["pytest_mitosis", *sorted(stages)]


def test_the_pure_layer_does_not_import_pytest() -> None:
    modules = below_the_pytest_layer()
    assert "pytest_mitosis.execution.runtime" in modules and "pytest_mitosis.store.sqlite" in modules
    code = "import sys; sys.modules['pytest'] = None\n" + "\n".join(f"import {m}" for m in modules)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_the_runtime_the_kernel_imports_needs_only_the_standard_library() -> None:
    """The notebook's set-up cell imports it by module path in the experiment's interpreter.
    (``_sysconfigdata_*`` is the standard library's too: ``sysconfig``'s data, generated when Python is built.)"""
    code = (
        "import sys\n"
        "before = set(sys.modules)\n"
        "import pytest_mitosis.execution.runtime\n"
        "new = {m.split('.')[0] for m in set(sys.modules) - before} - set(sys.stdlib_module_names) - {'pytest_mitosis'}\n"
        "new = {m for m in new if not m.startswith('_sysconfigdata_')}\n"
        "assert not new, sorted(new)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
