"""Kernels forked from a warm parent are as fresh as spawned ones (issue 14).

Three real sessions, shared by every assertion: two trials with ``--mitosis-kernel=fork``
(the first one dirties everything it can reach, the second one reports what it finds), the
same two with ``--mitosis-kernel=spawn`` (the reference: what a fresh interpreter looks like),
and one whose preload starts a thread (forking is then unsafe: the session spawns and says so
once). Each step writes what it saw into a JSON file; the tests compare them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_mitosis.core.processes import alive

from .conftest import Run, clean_env, git_init, run_pytest, write_investigation

#: an installed library (outside the investigation), found on PYTHONPATH: the fork server preloads it
FAKELIB = """
import os

STATE = []
IMPORTED_IN = os.getpid()
"""

#: a library that starts a Python thread when imported: forking after it is not safe
THREADLIB = """
import threading
import time

threading.Thread(target=time.sleep, args=(600,), name="threadlib-worker", daemon=True).start()
"""

PROBE = '''
import json
import logging
import os
import random
import re
import sys
import threading

import fakelib
import matplotlib
import matplotlib.pyplot as plt
import numpy as np

import helper

LOADED_IN = os.getpid()
with open(os.path.join(os.environ["MITOSIS_TEST_OUT"], "imported-by"), "a") as _stream:
    _stream.write(f"{LOADED_IN}\\n")  # which processes imported the step: collection's, each kernel
# as scikit-learn does (KMP_* variables): pytest's environment changes once it imports the steps
os.environ.setdefault("MITOSIS_PROBE_IMPORTED", "1")
lookup = {"n": {"first": 1, "second": 2, "killer": 3, "after": 4, "later": 5}}


def _fd(fd):
    try:
        target = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return "?"
    return target.split(":[")[0] if ":[" in target else "file"


def _started(pid):
    """When ``pid`` started (clock ticks since boot), or None when it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            return int(stream.read().rsplit(")", 1)[1].split()[19])
    except (OSError, IndexError, ValueError):
        return None


def _next_kernel_forked(patience=180.0):
    """Wait until the fork server has forked a kernel after this one (the next trial's, forked ahead)."""
    import time

    parent, me = os.getppid(), os.getpid()
    born = _started(me)
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        for task in os.listdir(f"/proc/{parent}/task"):
            try:
                with open(f"/proc/{parent}/task/{task}/children") as stream:
                    children = [int(pid) for pid in stream.read().split()]
            except OSError:
                continue
            if [pid for pid in children if pid != me and (_started(pid) or -1) >= born]:
                return True
        time.sleep(0.05)
    return False


def probe(n):
    """Report what this kernel looks like; the first trial then dirties whatever it can reach."""
    seen = {
        "pid": os.getpid(),
        "ppid": os.getppid(),
        "pytest": int(os.environ["JPY_PARENT_PID"]),
        "fakelib_state": list(fakelib.STATE),
        "fakelib_preloaded": fakelib.IMPORTED_IN != os.getpid(),
        "probe_fresh": LOADED_IN == os.getpid() and helper.LOADED_IN == os.getpid(),
        "backend": matplotlib.get_backend(),
        "linewidth": matplotlib.rcParams["lines.linewidth"],
        "numpy_draw": float(np.random.rand()),
        "random_draw": random.random(),
        "environ": sorted(k for k in os.environ if k not in ("PYTEST_CURRENT_TEST",)),
        "dirty_env": os.environ.get("MITOSIS_PROBE_DIRTY"),
        "cwd": os.getcwd(),
        "sys_path": [p for p in sys.path],
        "fds": sorted(_fd(int(fd)) for fd in os.listdir("/proc/self/fd") if int(fd) > 2),
        "threads": sorted(re.sub(r"Thread-[0-9]+", "Thread-N", t.name) for t in threading.enumerate()),
        "root_handlers": len(logging.getLogger().handlers),
        "matplotlib_logger_level": logging.getLogger("matplotlib").level,
        "fakelib_logger": "fakelib.dirty" in logging.Logger.manager.loggerDict,
        # the kernel's configuration: what a forked kernel is given without argparse (forkparent.kernel_config)
        "history": get_ipython().history_manager.enabled,
        "connection_file": os.path.basename(get_ipython().kernel.parent.connection_file),
    }
    if n == 3:  # the HTML helper dies (the OOM killer, a stray kill): pytest writes the pages itself
        import signal

        pytest_pid = os.environ["JPY_PARENT_PID"]
        seen["helpers_killed"] = 0
        with open(f"/proc/{pytest_pid}/task/{pytest_pid}/children") as stream:
            for child in stream.read().split():
                with open(f"/proc/{child}/cmdline", "rb") as cmdline:
                    if b"pytest_mitosis.execution.htmlworker" in cmdline.read():
                        os.kill(int(child), signal.SIGKILL)
                        seen["helpers_killed"] += 1
    if n == 3:  # the fork server dies as well, once it forked the next kernel: this trial goes on, the later ones spawn
        seen["next_forked"] = _next_kernel_forked()
    out = os.path.join(os.environ["MITOSIS_TEST_OUT"], f"{n}.json")
    with open(out, "w") as stream:
        json.dump(seen, stream)
    if n == 3:
        os.kill(os.getppid(), signal.SIGKILL)
    if n == 1:
        fakelib.STATE.append("dirty")
        matplotlib.rcParams["lines.linewidth"] = 9.0
        matplotlib.use("Agg")
        np.random.seed(0)
        os.environ["MITOSIS_PROBE_DIRTY"] = "yes"
        os.chdir("/")
        sys.path.append("/dirty")
        logging.getLogger("fakelib.dirty").setLevel(logging.DEBUG)
        logging.getLogger().addHandler(logging.NullHandler())
        open(os.devnull)  # a descriptor left open
    plt.plot([0, 1], [1, 0])  # a figure, embedded whatever the backend
    return {"main": n}
'''

HELPER = """
import os
import warnings

LOADED_IN = os.getpid()
warnings.warn("helper.old_name is deprecated", DeprecationWarning)
"""

PYPROJECT = """
[tool.mitosis.steps]
probe = ["probe:probe", "probe:lookup"]
"""


def _session(base: Path, name: str, *args: str, preload: str = "") -> tuple[Run, Path, dict[int, dict[str, Any]]]:
    lib = base / "lib"
    if not lib.exists():
        (lib / "fakelib").mkdir(parents=True)
        (lib / "fakelib" / "__init__.py").write_text(FAKELIB, encoding="utf-8")
        (lib / "threadlib.py").write_text(THREADLIB, encoding="utf-8")
    pyproject = PYPROJECT + (f"\n[tool.pytest.ini_options]\nmitosis_preload = [{preload}]\n" if preload else "")
    root = git_init(write_investigation(base / name, pyproject, {"probe": PROBE, "helper": HELPER}))
    out = base / f"{name}-out"
    out.mkdir()
    env = clean_env(PYTHONPATH=str(lib), MITOSIS_TEST_OUT=str(out))
    env.pop("MPLBACKEND", None)
    run = run_pytest(root, "--mitosis", "--mitosis-seed", "7", *args, env=env)
    seen = {int(p.stem): json.loads(p.read_text()) for p in out.glob("*.json")}
    return run, root, seen


@pytest.fixture(scope="module")
def sessions(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Run, Path, dict[int, dict[str, Any]]]]:
    """The three sessions (kept by pytest's temporary folder: read them after a failure)."""
    base = tmp_path_factory.mktemp("fork")
    found = {
        "fork": _session(base, "forked", "--mitosis-kernel=fork", "-k", "first or second"),
        "spawn": _session(base, "spawned", "--mitosis-kernel=spawn", "-k", "first or second"),
        "killed": _session(base, "killed", "-k", "not first"),
        "unsafe": _session(base, "unsafe", "-k", "first", preload='"threadlib", "no_such_library_xyz"'),
        "xdist": _session(base, "xdist", "-n", "2", "-k", "first or second or after or later"),
    }
    return found


def _kernel(root: Path, variant: str) -> dict[str, Any]:
    (folder,) = [p for p in (root / "trials").iterdir() if p.name.startswith(f"trial_probe-{variant}")]
    (notebook,) = folder.glob("*.ipynb")
    recorded = yaml.safe_load((folder / "trial.yaml").read_text(encoding="utf-8"))["kernel"]
    assert json.loads(notebook.read_text(encoding="utf-8"))["metadata"]["mitosis"]["kernel"] == recorded
    return dict(recorded)


def test_both_trials_pass_and_each_says_how_its_kernel_started(sessions: Any) -> None:
    for mode in ("fork", "spawn"):
        run, root, seen = sessions[mode]
        assert run.ret == 0, run.out
        assert "2 passed" in run.out
        assert sorted(seen) == [1, 2]
        for variant in ("first", "second"):
            kernel = _kernel(root, variant)
            assert kernel["start"] == mode
            if mode == "fork":
                assert {"numpy", "matplotlib.pyplot", "fakelib", "ipykernel.kernelapp"} <= set(kernel["preloaded"])
                assert not {"probe", "helper"} & set(kernel["preloaded"])
    fork = sessions["fork"][2]
    assert fork[1]["fakelib_preloaded"] and fork[2]["fakelib_preloaded"]  # imported by the parent, not the trial
    assert not sessions["spawn"][2][1]["fakelib_preloaded"]
    assert fork[1]["pid"] != fork[2]["pid"]


def test_what_the_first_trial_dirtied_is_pristine_in_the_second(sessions: Any) -> None:
    first, second = sessions["fork"][2][1], sessions["fork"][2][2]
    assert second["fakelib_state"] == [] == first["fakelib_state"]
    assert second["linewidth"] == first["linewidth"]
    assert second["backend"] == first["backend"]
    assert second["dirty_env"] is None
    assert second["cwd"] == first["cwd"] == str(sessions["fork"][1])
    assert "/dirty" not in second["sys_path"]
    assert second["fds"].count("file") == first["fds"].count("file")  # trial 1's leaked descriptor is not inherited
    assert second["root_handlers"] == first["root_handlers"]
    assert not second["fakelib_logger"]
    assert second["probe_fresh"] and first["probe_fresh"]  # the investigation's modules are imported by each trial


def test_a_forked_kernel_looks_like_a_spawned_one(sessions: Any) -> None:
    fork, spawn = sessions["fork"][2], sessions["spawn"][2]
    for n in (1, 2):
        keys = (
            "backend",
            "linewidth",
            "environ",
            "threads",
            "root_handlers",
            "matplotlib_logger_level",
            "connection_file",
        )
        for key in (*keys, "history"):
            assert fork[n][key] == spawn[n][key], key
        assert fork[n]["history"] is False and fork[n]["connection_file"] == "connection.json"
        assert fork[n]["cwd"] == str(sessions["fork"][1]) and spawn[n]["cwd"] == str(sessions["spawn"][1])
        # sys.path: the same entries, but for the investigation's own directory
        assert [p.replace("forked", "X") for p in fork[n]["sys_path"]] == [
            p.replace("spawned", "X") for p in spawn[n]["sys_path"]
        ]
        # descriptors: the same kinds, but stdin (a pipe from pytest when spawned, /dev/null when forked);
        # sockets are the kernel's channels, whose connections from pytest's client are accepted on zmq's
        # own thread: one may still be on its way when the step looks (one run in a few under load)
        assert [k for k in fork[n]["fds"] if k != "socket"] == [k for k in spawn[n]["fds"] if k != "socket"]
        assert abs(fork[n]["fds"].count("socket") - spawn[n]["fds"].count("socket")) <= 1, (fork[n], spawn[n])


def test_the_seed_gives_the_same_draws_forked_or_spawned(sessions: Any) -> None:
    fork, spawn = sessions["fork"][2], sessions["spawn"][2]
    for n in (1, 2):
        assert fork[n]["numpy_draw"] == spawn[n]["numpy_draw"]
        assert fork[n]["random_draw"] == spawn[n]["random_draw"]


def test_figures_are_embedded_from_forked_kernels(sessions: Any) -> None:
    root = sessions["fork"][1]
    for variant in ("first", "second"):
        (folder,) = [p for p in (root / "trials").iterdir() if p.name.startswith(f"trial_probe-{variant}")]
        (notebook,) = folder.glob("*.ipynb")
        assert "image/png" in notebook.read_text(encoding="utf-8")


def test_an_unsafe_preload_makes_the_session_spawn_and_say_why_once(sessions: Any) -> None:
    run, root, seen = sessions["unsafe"]
    assert run.ret == 0, run.out
    warnings = [line for line in run.out.splitlines() if "kernels are spawned, not forked" in line]
    assert len(warnings) == 1, run.out
    assert "a preloaded library started Python threads (threadlib-worker)" in warnings[0]
    assert _kernel(root, "first") == {"start": "spawn"}
    assert "threadlib-worker" not in seen[1]["threads"]


def test_the_preload_is_what_the_steps_import_from_outside_the_investigation(tmp_path: Path) -> None:
    from pytest_mitosis.execution.preload import adjust, discover

    root = write_investigation(
        tmp_path / "study",
        PYPROJECT,
        {
            "steps": """
                import os
                import numpy as np
                from matplotlib import pyplot
                import yaml
                from . import nothing
                from analysis import tools

                try:
                    import no_such_library_xyz
                except ImportError:
                    pass


                def run():
                    import nbformat  # inside a function: may never run, not preloaded
                    return {"main": 1}
            """,
            "yaml": "SHADOWED = True  # the investigation's own yaml.py shadows the library",
            "analysis.__init__": "",
            "analysis.tools": "import jinja2\nfrom .inner import x\n",
            "analysis.inner": "import markupsafe\nx = 1\n",
        },
    )
    found = discover(root, ["steps"])
    assert found == ["numpy", "matplotlib.pyplot", "jinja2", "markupsafe"]
    assert adjust(found, ["-matplotlib", "torch", "-markupsafe"]) == ["numpy", "jinja2", "torch"]


def test_a_dead_fork_server_fails_no_trial_and_later_kernels_are_spawned(sessions: Any) -> None:
    run, root, seen = sessions["killed"]
    assert run.ret == 0, run.out
    assert "4 passed" in run.out
    assert _kernel(root, "second")["start"] == "fork"
    assert _kernel(root, "killer")["start"] == "fork"  # killed its parent, and finished all the same
    assert seen[3]["next_forked"], "the fork server forked the next kernel ahead while the killer's step waited"
    assert _kernel(root, "after")["start"] == "fork"  # forked ahead, before the killer killed its parent
    assert _kernel(root, "later") == {"start": "spawn"}
    warnings = [line for line in run.out.splitlines() if "kernels are spawned, not forked" in line]
    assert len(warnings) == 1 and "the fork server" in warnings[0], run.out


def test_a_dead_html_helper_fails_no_trial_and_every_page_is_still_written(sessions: Any) -> None:
    """The helper process that writes notebooks and pages is killed by the third trial's step (before
    that trial's own pages): every trial, that one included, still has its complete page and notebook."""
    run, root, seen = sessions["killed"]
    assert run.ret == 0, run.out
    assert seen[3]["helpers_killed"] == 1
    for variant in ("second", "killer", "after", "later"):
        (folder,) = [p for p in (root / "trials").iterdir() if p.name.startswith(f"trial_probe-{variant}")]
        (page,) = folder.glob("*.html")
        text = page.read_text(encoding="utf-8")
        assert f"<title>{page.stem}</title>" in text and text.rstrip().endswith("</html>"), variant
        (notebook,) = folder.glob("*.ipynb")
        assert json.loads(notebook.read_text(encoding="utf-8"))["cells"], variant


def test_xdist_workers_fork_their_kernels_from_one_warm_parent(sessions: Any) -> None:
    """Under ``-n 2`` the controller starts one warm parent (and one HTML helper) for both workers:
    each trial's kernel is a fork of it, runs for its own worker, and nothing outlives the session."""
    run, root, seen = sessions["xdist"]
    assert run.ret == 0, run.out
    assert "4 passed" in run.out
    for variant in ("first", "second", "after", "later"):
        assert _kernel(root, variant)["start"] == "fork", variant
    parents = {s["ppid"] for s in seen.values()}
    workers = {s["pytest"] for s in seen.values()}
    assert len(seen) == 4 and len(workers) == 2 and len(parents) == 1, seen
    assert not parents & workers  # the controller's parent, not a worker's
    assert seen[2]["fakelib_state"] == [] and seen[4]["fakelib_state"] == []  # a fork is fresh: no trial's changes
    for pid in [*parents, *(s["pid"] for s in seen.values())]:
        assert not alive(pid), pid
    for variant in ("first", "second", "after", "later"):
        (folder,) = [p for p in (root / "trials").iterdir() if p.name.startswith(f"trial_probe-{variant}")]
        (page,) = folder.glob("*.html")
        assert page.read_text(encoding="utf-8").rstrip().endswith("</html>"), variant


def _importers(name: str, sessions: Any) -> tuple[set[int], set[int]]:
    """The pids that imported the step module in a session, and the session's pytest pid(s)."""
    run, root, seen = sessions[name]
    text = (root.parent / f"{root.name}-out" / "imported-by").read_text()
    return {int(pid) for pid in text.split()}, {s["pytest"] for s in seen.values()}


def test_collection_imports_the_steps_in_a_fork_of_the_warm_parent_not_in_pytest(sessions: Any) -> None:
    """Forked kernels: collection imports the steps (and so their libraries) in a fork of the warm
    parent, not in pytest's process; spawned kernels: in pytest's process, as before. Either way
    each trial's kernel imports them afresh."""
    importers, pytest_pids = _importers("fork", sessions)
    assert len(pytest_pids) == 1 and not importers & pytest_pids
    assert len(importers) == 3  # one collection, two kernels
    importers, pytest_pids = _importers("spawn", sessions)
    assert pytest_pids <= importers and len(importers) == 3
    importers, pytest_pids = _importers("unsafe", sessions)  # a parent that may not fork: pytest collects
    assert pytest_pids <= importers
    importers, pytest_pids = _importers("xdist", sessions)  # each worker collects, in a fork
    assert len(pytest_pids) == 2 and not importers & pytest_pids and len(importers) == 2 + 4


def test_a_warning_raised_while_the_steps_are_imported_is_in_pytests_summary(sessions: Any) -> None:
    for name in ("fork", "spawn", "xdist"):
        run = sessions[name][0]
        assert "DeprecationWarning: helper.old_name is deprecated" in run.out, (name, run.out)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["-f", "/k/connection.json", "--HistoryManager.enabled=False"],
            {"IPKernelApp": {"connection_file": "/k/connection.json"}, "HistoryManager": {"enabled": False}},
        ),
        (["-f", "/k/c.json"], {"IPKernelApp": {"connection_file": "/k/c.json"}}),
        (["-f", "/k/c.json", "--matplotlib=inline"], None),  # an alias: ipykernel's parser reads it
        (["-f", "/k/c.json", "--IPKernelApp.log_level=10"], None),  # not a flag: ipykernel's parser reads it
        (["--debug"], None),
        (["-f"], None),  # no value: ipykernel's parser says so
        (["-f", "--HistoryManager.enabled=False"], None),  # an option is not a file name (argparse's error)
        (["-f", "/k/a.json", "-f", "/k/b.json"], {"IPKernelApp": {"connection_file": "/k/b.json"}}),  # as argparse
        (["--HistoryManager.enabled=false"], None),  # not launch's spelling: traitlets reads it
        (["--HistoryManager.enabled=1"], None),
    ],
)
def test_a_forked_kernel_reads_launchs_arguments_without_argparse(args: list[str], expected: Any) -> None:
    from pytest_mitosis.execution.forkparent import kernel_config

    config = kernel_config(args)
    assert (config if config is None else {k: dict(v) for k, v in config.items()}) == expected
