"""Helpers that build real investigations (pyproject, modules, git repo) and run real pytest.

``run_pytest`` starts pytest in a subprocess (the plugin's own process matters: entry
points, kernels, exit codes); sessions that start kernels are shared by module-scoped
fixtures so that one executed trial serves many assertions.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .pg_server import pg_database, pg_server  # noqa: F401 - fixtures: a real PostgreSQL server

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Researcher",
    "GIT_AUTHOR_EMAIL": "researcher@example.org",
    "GIT_COMMITTER_NAME": "Researcher",
    "GIT_COMMITTER_EMAIL": "researcher@example.org",
}


#: the shipped example investigation (tests copy it rather than keep a copy of their own)
EXAMPLE = Path(__file__).parent.parent / "examples" / "sine"


def write_investigation(root: Path, pyproject: str, modules: dict[str, str]) -> Path:
    """Write ``pyproject.toml`` and modules (name → source) into ``root``; return ``root``."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(textwrap.dedent(pyproject).lstrip(), encoding="utf-8")
    for name, source in modules.items():
        path = root / (name.replace(".", "/") + ".py")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source).lstrip(), encoding="utf-8")
    return root


def git(root: Path, *args: str) -> str:
    env = {**os.environ, **GIT_ENV}
    done = subprocess.run(["git", *args], cwd=root, env=env, capture_output=True, text=True, check=True)
    return done.stdout


def git_init(root: Path) -> Path:
    """Make ``root`` a git repository with everything committed."""
    git(root, "init", "-q", "-b", "main")
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\n", encoding="utf-8")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "investigation")
    return root


@dataclass
class Run:
    """A finished pytest subprocess: exit code, output, and the junit XML when asked for."""

    ret: int
    out: str
    junit: ET.Element | None

    def testcase(self, name: str) -> ET.Element:
        assert self.junit is not None
        for case in self.junit.iter("testcase"):
            if case.get("name") == name:
                return case
        raise AssertionError(f"no testcase {name!r} in the junit XML")

    def values(self, name: str, prop: str) -> list[str]:
        """Every value of a property that may repeat (mitosis.compare, mitosis.warning)."""
        return [p.get("value", "") for p in self.testcase(name).iter("property") if p.get("name") == prop]

    def properties(self, name: str) -> dict[str, str]:
        case = self.testcase(name)
        return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "COV_"))}
    env.update(GIT_ENV)
    env.update(extra)
    return env


def run_pytest(
    cwd: Path,
    *args: str,
    junit: bool = True,
    env: dict[str, str] | None = None,
    timeout: float = 600,
    cache: bool = False,
) -> Run:
    """Run ``python -m pytest ARGS`` in ``cwd`` as a user would, with a junit XML file."""
    xml = cwd.parent / f"{cwd.name}-junit.xml"
    argv = [sys.executable, "-m", "pytest", *([] if cache else ["-p", "no:cacheprovider"]), *args]
    if junit:
        argv.append(f"--junitxml={xml}")
    done = subprocess.run(argv, cwd=cwd, env=env or clean_env(), capture_output=True, text=True, timeout=timeout)
    tree = ET.parse(xml).getroot() if junit and xml.exists() else None
    return Run(done.returncode, done.stdout + done.stderr, tree)


#: sessions a test started in the background (see :func:`background`)
_BACKGROUND: list[subprocess.Popen[Any]] = []


def background(argv: list[str], **popen: Any) -> subprocess.Popen[Any]:
    """``Popen(argv)`` as its own process group, stopped (group and all) when the test ends.

    A test that fails while its session still runs would otherwise leave pytest and its
    kernels running, and their ``ResourceWarning`` would fail whichever test runs next.
    SIGINT starts at its default in the child (then ``preexec_fn``, if given, runs): a suite
    started as a background job of a non-interactive shell (``bash .ci/run &``) inherits SIGINT
    ignored, and a test that presses Ctrl-C must not depend on how the suite was started.
    """
    then = popen.pop("preexec_fn", None)

    def preexec() -> None:
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        if then is not None:
            then()

    proc = subprocess.Popen(argv, start_new_session=True, preexec_fn=preexec, **popen)
    _BACKGROUND.append(proc)
    return proc


@pytest.fixture(autouse=True)
def _stop_background_sessions() -> Iterator[None]:
    yield
    while _BACKGROUND:
        proc = _BACKGROUND.pop()
        if proc.poll() is None:
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.communicate()


#: seconds a test waits for a marker, a line or a row: generous, so a slow machine never fails a test
PATIENCE = 180.0

#: an investigation whose step ``fit`` (variants ``n0``...) waits while ``markers/hold-nN`` exists: the test
#: decides when a trial is running, never a fixed sleep (``held_investigation``)
HELD_PYPROJECT = """
[tool.mitosis.steps]
fit = ["study.fit:run", "study.fit:lookup_dict"]
"""

HELD_STEP = """
import time
from pathlib import Path

lookup_dict = {{"n": {variants}}}


def run(n):
    markers = Path("markers")
    (markers / f"started-n{{n}}").write_text("")
    print(f"waiting for release of n{{n}}", flush=True)
    while (markers / f"hold-n{{n}}").exists():
        time.sleep(0.05)
    return {{"main": float(n)}}
"""


def held_investigation(root: Path, count: int) -> Path:
    """A committed investigation of ``count`` trials ``fit[n0]``... whose step waits while its hold file exists."""
    variants = "{" + ", ".join(f'"n{i}": {i}' for i in range(count)) + "}"
    write_investigation(root, HELD_PYPROJECT, {"study.__init__": "", "study.fit": HELD_STEP.format(variants=variants)})
    (root / "markers").mkdir()
    git_init(root)
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nmarkers/\n", encoding="utf-8")
    git(root, "commit", "-qam", "ignore the markers")
    return root


def wait_until(what: str, check: Any, proc: subprocess.Popen[Any] | None = None, text: Any = None) -> Any:
    """``check()``'s first true answer, polled until ``PATIENCE``; fails early, with its output, if ``proc`` ends."""
    deadline = time.monotonic() + PATIENCE
    while True:
        found = check()
        if found:
            return found
        if proc is not None and proc.poll() is not None and not check():
            said = text() if text else proc.communicate()[0]
            pytest.fail(f"pytest ended before {what}:\n{said}")
        assert time.monotonic() < deadline, f"no {what} in time:\n{text() if text else ''}"
        time.sleep(0.05)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto``: one worker more than there are cores.

    Much of a test's time is spent waiting (for a kernel to answer, a signal to land, a
    PostgreSQL server to start), so a third worker on two cores keeps them busy: measured
    side by side on two idle cores, 6 min 00 s with three workers against 6 min 32 s with two.
    """
    return (os.cpu_count() or 1) + 1


def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """Tests that share a module-scoped fixture run on one worker (see ``tests/scheduling.py``)."""
    from .scheduling import SharedFixtureScheduling

    return SharedFixtureScheduling(config, log)


class _DurationRecorder:
    """Sums each test's setup, call and teardown seconds on the controller and writes them, per
    test function (the longest parameter), to the file ``MITOSIS_RECORD_DURATIONS`` names."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seconds: dict[str, float] = {}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.seconds[report.nodeid] = self.seconds.get(report.nodeid, 0.0) + report.duration

    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        import json

        from .scheduling import function_of

        per_function: dict[str, float] = {}
        for nodeid, seconds in self.seconds.items():
            name = function_of(nodeid)
            per_function[name] = max(per_function.get(name, 0.0), seconds)
        rounded = {name: round(s, 1) for name, s in sorted(per_function.items())}
        self.path.write_text(json.dumps(rounded, indent=1) + "\n", encoding="utf-8")


def pytest_configure(config: pytest.Config) -> None:
    record = os.environ.get("MITOSIS_RECORD_DURATIONS")
    if record and not hasattr(config, "workerinput"):  # the controller (or a run without xdist)
        config.pluginmanager.register(_DurationRecorder(Path(record).resolve()), "mitosis-durations")
