"""No process outlives its trial, and no kernel holds pytest's output (issue 23, point 5).

One real session per kernel mode (forked, the default, and spawned), each run as the shell
pipeline CI jobs use, ``pytest --mitosis ... | cat``, and shared by every assertion. Two
trials of ``leaves`` start processes and return while they run: a detached ``sleep 600``
(``start_new_session=True``, out of the kernel's process group), a plain ``sleep 599`` (in
it), and in the first trial one that ignores SIGTERM; each also runs a child that prints to
its stdout. The second trial's kernel is started while the first trial runs (pytest then sets
``PYTEST_CURRENT_TEST``, which the kernel must not inherit): that is where a detached child
held pytest's stdout and kept the pipeline waiting for 600 s. A third trial (``quiet``) starts
nothing. A process outside the session, whose environment holds another kernel's marker,
must be left alone.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import background, clean_env, git_init, write_investigation

pytestmark = pytest.mark.kernel

#: the verdict is "the pipeline ended", long before the 600 s its leftover child would hold it
DEADLINE = 120.0

PROCS = '''
import json
import os
import subprocess
import sys
import time

lookup = {"n": {"first": 1, "second": 2}}

STUBBORN = """
import signal, sys, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
open(sys.argv[1], "w").close()
time.sleep(600)
"""


def leaves(n):
    out = os.environ["PROCS_OUT"]
    # first: ipykernel reads the kernel's descriptor 1 in a thread of its own, so a line a child prints
    # as the cell's very last act can reach the notebook after the cell ended on a loaded machine
    subprocess.run(["echo", f"child of trial {n} printed this"], check=True)
    started = {
        "kernel": os.getpid(),
        "marker": os.environ.get("MITOSIS_KERNEL"),
        "current_test": os.environ.get("PYTEST_CURRENT_TEST"),
        "detached": subprocess.Popen(["sleep", "600"], start_new_session=True).pid,
        "plain": subprocess.Popen(["sleep", "599"]).pid,
    }
    if n == 1:  # ignores SIGTERM (once it says so): killed after the grace
        ready = os.path.join(out, "stubborn-ready")
        started["stubborn"] = subprocess.Popen([sys.executable, "-c", STUBBORN, ready], start_new_session=True).pid
        deadline = time.monotonic() + 180
        while not os.path.exists(ready):
            if time.monotonic() > deadline:  # fail the trial, saying why: never test a child not yet ignoring SIGTERM
                raise RuntimeError("the stubborn child did not say within 180 s that it ignores SIGTERM")
            time.sleep(0.01)
    with open(os.path.join(out, f"{n}.json"), "w") as stream:
        json.dump(started, stream)
    return {"main": n}


def quiet():
    with open(os.path.join(os.environ["PROCS_OUT"], "quiet.json"), "w") as stream:
        json.dump({"kernel": os.getpid(), "marker": os.environ.get("MITOSIS_KERNEL")}, stream)
    return {"main": 0}
'''

PYPROJECT = """
[tool.mitosis.steps]
leaves = ["procs:leaves", "procs:lookup"]
quiet = ["procs:quiet"]

[tool.pytest.ini_options]
"""


@dataclass
class Pipeline:
    """What one ``pytest --mitosis ... | cat`` left: whether it ended, pytest's code, the output, the files."""

    ended: bool
    pytest_code: int | None
    out: str
    root: Path
    started: dict[str, dict[str, Any]]
    bystander: int
    bystander_alive: bool

    def folder(self, prefix: str) -> Path:
        (folder,) = [p for p in (self.root / "trials").iterdir() if p.name.startswith(f"trial_{prefix}")]
        return folder

    def notebook(self, prefix: str) -> dict[str, Any]:
        (path,) = self.folder(prefix).glob("*.ipynb")
        return dict(json.loads(path.read_text(encoding="utf-8")))

    def html(self, prefix: str) -> str:
        (path,) = self.folder(prefix).glob("*.html")
        return path.read_text(encoding="utf-8")


def _running(pid: int, command: str) -> bool:
    """Whether ``pid`` still runs ``command`` (not a zombie, not another process that got the pid)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as stream:
            state = stream.read().rsplit(b")", 1)[1].split()[0]
        with open(f"/proc/{pid}/cmdline", "rb") as stream:
            cmdline = stream.read().replace(b"\0", b" ").decode(errors="replace")
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X") and command in cmdline


def _marked(value: str) -> list[int]:
    """This user's processes whose environment holds ``MITOSIS_KERNEL=value``."""
    needle = f"MITOSIS_KERNEL={value}".encode() + b"\0"
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as stream:
                environ = stream.read()
        except OSError:
            continue
        if environ.startswith(needle) or b"\0" + needle in environ:
            found.append(int(name))
    return found


#: what each trial's child processes are, by the name the step recorded their pid under
COMMANDS = {"detached": "sleep 600", "plain": "sleep 599", "stubborn": "SIGTERM"}


def _pipeline(base: Path, name: str, *args: str) -> Pipeline:
    root = git_init(write_investigation(base / name, PYPROJECT, {"procs": PROCS}))
    out = base / f"{name}-out"
    out.mkdir()
    # a process that is not the trial's, though it carries a kernel marker (another session's)
    bystander = subprocess.Popen(
        ["sleep", "600"], env={**os.environ, "MITOSIS_KERNEL": "another-session"}, start_new_session=True
    )
    command = (
        f"{{ {sys.executable} -m pytest -p no:cacheprovider --mitosis {' '.join(args)}; echo $? > {out}/rc; }}"
        f" 2>&1 | cat > {out}/pipeline.txt"
    )
    pipeline = background(["sh", "-c", command], cwd=root, env=clean_env(PROCS_OUT=str(out)))
    try:
        pipeline.wait(timeout=DEADLINE)
        ended = True
    except subprocess.TimeoutExpired:
        ended = False
    rc = out / "rc"
    started = {p.stem: json.loads(p.read_text()) for p in out.glob("*.json")}
    try:
        return Pipeline(
            ended=ended,
            pytest_code=int(rc.read_text()) if rc.exists() else None,
            out=(out / "pipeline.txt").read_text(encoding="utf-8", errors="replace"),
            root=root,
            started=started,
            bystander=bystander.pid,
            bystander_alive=bystander.poll() is None,
        )
    finally:
        bystander.kill()
        bystander.wait()


def _cleanup(pipelines: dict[str, Pipeline]) -> None:
    """After a failure, stop what a trial left (by the pids it recorded, checking each is still ours)."""
    for pipeline in pipelines.values():
        for started in pipeline.started.values():
            for key, command in COMMANDS.items():
                if key in started and _running(started[key], command):
                    os.kill(started[key], signal.SIGKILL)


@pytest.fixture(scope="module")
def pipelines(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Pipeline]]:
    base = tmp_path_factory.mktemp("procs")
    found: dict[str, Pipeline] = {}
    try:
        found["fork"] = _pipeline(base, "forked")
        found["spawn"] = _pipeline(base, "spawned", "--mitosis-kernel=spawn")
        yield found
    finally:
        _cleanup(found)


MODES = ["fork", "spawn"]


@pytest.mark.parametrize("mode", MODES)
def test_the_pipeline_ends_with_pytest_and_every_trial_passes(pipelines: dict[str, Pipeline], mode: str) -> None:
    pipeline = pipelines[mode]
    assert pipeline.ended, f"`pytest --mitosis | cat` still ran after {DEADLINE:g} s:\n{pipeline.out}"
    assert pipeline.pytest_code == 0, pipeline.out
    assert "3 passed" in pipeline.out
    for prefix in ("leaves-first", "leaves-second", "quiet"):
        kernel = yaml.safe_load((pipeline.folder(prefix) / "trial.yaml").read_text(encoding="utf-8"))["kernel"]
        assert kernel["start"] == mode


@pytest.mark.parametrize("mode", MODES)
def test_no_process_a_trial_started_is_left_running(pipelines: dict[str, Pipeline], mode: str) -> None:
    pipeline = pipelines[mode]
    assert sorted(pipeline.started) == ["1", "2", "quiet"]
    for n in ("1", "2"):
        started = pipeline.started[n]
        assert started["current_test"] is None, "a kernel is no part of pytest's test"
        for key, command in COMMANDS.items():
            if key in started:
                assert not _running(started[key], command), f"trial {n}'s {key} child ({command}) still runs"
        assert _marked(started["marker"]) == [], f"a process of trial {n}'s kernel still runs"
    markers = [started["marker"] for started in pipeline.started.values()]
    assert all(markers) and len(set(markers)) == 3, "each kernel has its own marker"


@pytest.mark.parametrize("mode", MODES)
def test_nothing_outside_the_trials_is_stopped(pipelines: dict[str, Pipeline], mode: str) -> None:
    assert pipelines[mode].bystander_alive, "a process that is no trial's was stopped"


@pytest.mark.parametrize("mode", MODES)
def test_the_notebook_and_page_name_what_was_stopped(pipelines: dict[str, Pipeline], mode: str) -> None:
    pipeline = pipelines[mode]
    for n, variant in (("1", "first"), ("2", "second")):
        started = pipeline.started[n]
        last = pipeline.notebook(f"leaves-{variant}")["cells"][-1]
        source = "".join(last["source"])
        assert last["cell_type"] == "markdown"
        assert source.startswith("**Processes stopped when the trial ended**: started by the trial and still running")
        lines = set(source.splitlines())
        assert f"- pid {started['detached']}: <code>sleep 600</code>" in lines
        assert f"- pid {started['plain']}: <code>sleep 599</code>" in lines
        assert f"pid {started['kernel']}:" not in source, "the kernel itself is not listed"
        page = pipeline.html(f"leaves-{variant}")
        assert "Processes stopped when the trial ended" in page
        assert f"pid {started['detached']}: <code>sleep 600</code>" in page
    stubborn = pipeline.started["1"]["stubborn"]
    (line,) = [
        s for s in "".join(pipeline.notebook("leaves-first")["cells"][-1]["source"]).splitlines() if str(stubborn) in s
    ]
    assert line.endswith("(ignored SIGTERM: killed)"), line
    assert "Processes stopped" not in pipeline.html("quiet")
    assert "Processes stopped" not in json.dumps(pipeline.notebook("quiet"))


@pytest.mark.parametrize("mode", MODES)
def test_what_children_print_goes_to_the_trial_not_to_pytest(pipelines: dict[str, Pipeline], mode: str) -> None:
    pipeline = pipelines[mode]
    assert "printed this" not in pipeline.out
    for n, variant in (("1", "first"), ("2", "second")):
        line = f"child of trial {n} printed this"
        streams = [
            "".join(output.get("text", ""))
            for cell in pipeline.notebook(f"leaves-{variant}")["cells"]
            for output in cell.get("outputs", [])
        ]
        assert any(line in text for text in streams), f"trial {n}: {streams}"
        assert line in (pipeline.folder(f"leaves-{variant}") / "kernel.log").read_text(encoding="utf-8")
    assert not (pipeline.folder("quiet") / "kernel.log").exists(), "nothing was written: no log"
