"""Trials in real kernels: outcomes, artifacts, figures, logs, chaining, junit and the summary.

One pytest session runs every case below (each its own experiment, so its own kernel), and
the tests assert on what that session left: exit code, output, junit XML, files on disk.
"""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path

import pytest

from .conftest import Run, clean_env, git_init, run_pytest, write_investigation

CASES = """
import logging
import os
import time

import matplotlib
matplotlib.use("Agg")  # a module that forces Agg at import: figures must still be embedded
import matplotlib.pyplot as plt

logger = logging.getLogger(__name__)
lookup = {"frequency": {"fast": 10, "slow": 1}}
scales = {"scale": {"single": 1, "double": 2}}


def sine(frequency, amplitude=4):
    plt.figure()
    plt.plot([0, 1, 2], [0, amplitude, 0])
    plt.figure()
    plt.plot([0, 1], [1, 0])
    logger.info("sine step ran at frequency %s", frequency)
    logger.debug("a debug line that INFO level leaves out")
    return {"main": amplitude * 0.5, "metrics": {"peak": amplitude, "label": "ok"}}


def _helper():
    raise ValueError("bad value 42")


def raises():
    plt.plot([1, 2, 3])
    _helper()


def nondict():
    return [1, 2]


def nomain():
    return {"data": 1}


def make(n=3):
    return {"main": 0, "data": list(range(n))}


def nodata():
    return {"main": 1}


def total(data, scale):
    return {"main": sum(data) * scale, "metrics": {"n": len(data)}}


def dies():
    os._exit(3)


def sleeps():
    time.sleep(120)


shapes = {"shape": {"wide": {"width": 3, "height": 1, "tags": ("a", "b")}}}


def listmetrics(shape):
    # the pattern of a widely used experiment library: "metrics" names what it computed
    return {"main": shape["width"], "metrics": ["coeff_f1", "coeff_mae"], "data": [1, 2]}


def unpicklable():
    import threading

    return {"main": 1.5, "data": threading.Lock()}


class SlowToSave:
    def __reduce__(self):
        time.sleep(120)
        return (SlowToSave, ())


def slowsave():
    return {"main": 1, "data": SlowToSave()}
"""

PYPROJECT = """
[tool.mitosis]
trials-folder = "results/trials"

[tool.mitosis.steps]
sine = ["cases:sine", "cases:lookup"]
raises = ["cases:raises"]
nondict = ["cases:nondict"]
nomain = ["cases:nomain"]
make = ["cases:make"]
nodata = ["cases:nodata"]
total = ["cases:total", "cases:scales"]
dies = ["cases:dies"]
sleeps = ["cases:sleeps"]
listmetrics = ["cases:listmetrics", "cases:shapes"]
unpicklable = ["cases:unpicklable"]
slowsave = ["cases:slowsave"]

[tool.mitosis.experiments]
sine = { steps = ["sine"], params = { "sine.frequency" = "slow" } }
raises = ["raises"]
nondict = ["nondict"]
nomain = ["nomain"]
pipeline = { steps = ["make", "total"], params = { "total.scale" = "double" } }
broken = { steps = ["nodata", "total"], params = { "total.scale" = "single" } }
dies = ["dies"]
sleeps = ["sleeps"]
listmetrics = ["listmetrics"]
unpicklable = ["unpicklable"]
slowsave = ["slowsave"]

[tool.pytest.ini_options]
"""


#: the trials that never end: they run in a session of their own, with ``--mitosis-timeout``
NEVER_END = "sleeps or slowsave"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    """Two sessions in one investigation, one after the other; their output, and junit XML, as one run.

    The trials that end run without a time limit, so however loaded the machine, none of them can
    time out; the two that never end run next with ``--mitosis-timeout 10``, the only work under
    that limit a sleep and a pickling that never return (so they, and only they, reach it).
    """
    root = git_init(write_investigation(tmp_path_factory.mktemp("exec") / "study", PYPROJECT, {"cases": CASES}))
    env = clean_env(MPLBACKEND="Agg")
    ending = run_pytest(root, "--mitosis", "-k", f"not ({NEVER_END})", "-rA", env=env, cache=True)
    never = run_pytest(root, "--mitosis", "-k", NEVER_END, "--mitosis-timeout", "10", "-rA", env=env, cache=True)
    assert ending.junit is not None and never.junit is not None, ending.out + never.out
    suite = ending.junit if ending.junit.tag == "testsuite" else ending.junit.find("testsuite")
    assert suite is not None
    suite.extend(never.junit.iter("testcase"))
    return root, Run(max(ending.ret, never.ret), ending.out + never.out, ending.junit)


def trial_folder(root: Path, slug: str) -> Path:
    found = sorted((root / "results" / "trials").glob(f"{slug}_*"))
    assert len(found) == 1, f"expected one folder {slug}_*, found {found}"
    return found[0]


def failure_text(run: Run, name: str) -> str:
    case = run.testcase(name)
    failure = case.find("failure")
    assert failure is not None, f"{name} did not fail: {ET_tostring(case)}"
    return failure.text or ""


def ET_tostring(element: object) -> str:
    import xml.etree.ElementTree as ET

    return ET.tostring(element, encoding="unicode")  # type: ignore[arg-type]


def test_every_trial_runs_and_the_session_reports_each_outcome(session: tuple[Path, Run]) -> None:
    root, run = session
    assert run.ret == 1, run.out
    assert re.search(r"\b6 failed, 3 passed, 2 deselected in ", run.out), run.out
    assert re.search(r"=+ 2 failed, 9 deselected in ", run.out), run.out  # the two that never end
    assert run.junit is not None
    names = sorted(c.get("name", "") for c in run.junit.iter("testcase"))
    assert names == sorted(
        [
            "sine[slow]",
            "raises",
            "nondict",
            "nomain",
            "pipeline[double]",
            "broken[single]",
            "dies",
            "sleeps",
            "listmetrics[wide]",
            "unpicklable",
            "slowsave",
        ]
    )
    # failures, not errors: the trial ran and its outcome is a failure
    assert not list(run.junit.iter("error"))
    assert "traitlets" not in run.out and "zmq" not in run.out, "no log noise from the kernel machinery"


def test_a_passing_trial_reports_main_and_metrics_as_junit_properties(session: tuple[Path, Run]) -> None:
    root, run = session
    props = run.properties("sine[slow]")
    assert props["main"] == "2.0"
    assert props["mitosis.metrics.peak"] == "4"
    assert props["mitosis.metrics.label"] == "ok"
    folder = trial_folder(root, "trial_sine-slow-1")
    assert props["mitosis.trial"] == "trial_sine-slow-1"
    assert props["mitosis.key"] == folder.name.rsplit("_", 1)[1]
    assert Path(props["mitosis.html"]) == folder / "trial_sine-slow-1.html"
    assert Path(props["mitosis.html"]).is_file()


def test_the_trial_folder_holds_notebook_html_log_and_pickled_results(session: tuple[Path, Run]) -> None:
    root, _ = session
    folder = trial_folder(root, "trial_sine-slow-1")
    nb = json.loads((folder / "trial_sine-slow-1.ipynb").read_text())
    kinds = [c["cell_type"] for c in nb["cells"]]
    assert kinds == ["markdown", "code", "code", "code"]  # header, set-up, one step, result
    header = "".join(nb["cells"][0]["source"])
    assert "| sine | frequency | lookup | slow | `1` | yes |" in header
    step_cell = nb["cells"][2]
    pngs = [o for o in step_cell["outputs"] if "image/png" in o.get("data", {})]
    assert len(pngs) == 2, "both open figures are embedded in the step's output, under Agg"
    html = (folder / "trial_sine-slow-1.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2
    log = (folder / "experiment.log").read_text()
    assert "INFO cases: sine step ran at frequency 1" in log
    assert "debug line" not in log
    result = pickle.loads((folder / "results" / "step-1-sine.pickle").read_bytes())
    assert result["main"] == 2.0
    assert json.loads((folder / "outcome.json").read_text())["status"] == "passed"


def test_chained_steps_pass_data_and_report_the_last_main(session: tuple[Path, Run]) -> None:
    root, run = session
    props = run.properties("pipeline[double]")
    assert props["main"] == "6"  # sum(range(3)) * 2
    assert props["mitosis.metrics.n"] == "3"
    folder = trial_folder(root, "trial_pipeline-double-1")
    assert sorted(p.name for p in (folder / "results").iterdir()) == ["step-1-make.pickle", "step-2-total.pickle"]


def test_a_step_that_raises_fails_with_the_users_traceback_and_the_html_path(session: tuple[Path, Run]) -> None:
    root, run = session
    text = failure_text(run, "raises")
    folder = trial_folder(root, "trial_raises-1")
    assert text.startswith(
        "step 'raises' (cases:raises) raised ValueError: bad value 42\n\nTraceback (most recent call last):"
    )
    assert re.search(r'cases\.py", line \d+, in raises\n    _helper\(\)', text)
    assert re.search(r'cases\.py", line \d+, in _helper\n    raise ValueError\("bad value 42"\)', text)
    assert "pytest_mitosis" not in text.split("notebook:")[0]
    assert text.rstrip().endswith(f"notebook: {folder / 'trial_raises-1.html'}")
    html = (folder / "trial_raises-1.html").read_text()
    assert "bad value 42" in html
    assert 'src="data:image/png;base64,' in html, "the failing step's figure is still embedded"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("nondict", "step 'nondict' (cases:nondict) returned a list, not a dict with a 'main' key"),
        ("nomain", "step 'nomain' (cases:nomain) returned a dict without a 'main' key (its keys: data)"),
        (
            "broken[single]",
            "step 'nodata' (cases:nodata) returned no 'data' key, which the next step ('total') "
            "receives as its first argument",
        ),
        ("dies", "kernel died during step 'dies' (cases:dies)"),
        ("sleeps", "timed out after 10 s during step 'sleeps' (cases:sleeps)"),
        ("slowsave", "timed out after 10 s while saving the results (pickling each step's result)"),
        (
            "unpicklable",
            "the result of step 'unpicklable' could not be saved to results/step-1-unpicklable.pickle: "
            "TypeError: cannot pickle '_thread.lock' object",
        ),
    ],
)
def test_bad_results_dead_kernels_and_timeouts_fail_with_a_short_message(
    session: tuple[Path, Run], name: str, message: str
) -> None:
    root, run = session
    text = failure_text(run, name)
    assert text.split("\n\nnotebook: ")[0] == message
    html = Path(text.split("\n\nnotebook: ")[1].strip())
    assert html.is_file(), "the notebook and HTML are saved in every failure"
    assert html.with_suffix(".ipynb").is_file()


def test_the_terminal_summary_lists_every_trial_once(session: tuple[Path, Run]) -> None:
    root, run = session
    assert "mitosis: experiments from" in run.out
    assert f"trials folder {root / 'results' / 'trials'}" in run.out
    summary, never = (part.split("short test summary info")[0] for part in run.out.split("= mitosis trials =")[1:])
    trial_line = r"^  \S+ +(?:PASSED|FAILED|ERROR|INTERRUPTED)  "
    assert len(re.findall(trial_line, never, re.M)) == 2, never  # the second session's
    slow = run.properties("sine[slow]")["mitosis.key"]
    line = next(s for s in summary.splitlines() if s.startswith("  sine[slow] "))
    assert re.match(rf"  sine\[slow\] +PASSED  #1 key {slow}  main 2$", line)
    # a failure's page follows its line, relative to the folder pytest ran in
    assert re.search(
        r"\n  dies +FAILED  #1 key ([0-9a-f]{8})  main -\n    .*\n    results/trials/trial_dies-1_\1/trial_dies-1\.html\n",
        summary,
    )
    assert len(re.findall(trial_line, summary, re.M)) == 9


def test_metrics_that_are_not_a_dict_are_kept_and_never_fail_the_trial(session: tuple[Path, Run]) -> None:
    root, run = session
    props = run.properties("listmetrics[wide]")
    assert props["main"] == "3"
    assert not [name for name in props if name.startswith("mitosis.metrics.")]
    folder = trial_folder(root, "trial_listmetrics-wide-1")
    result = pickle.loads((folder / "results" / "step-1-listmetrics.pickle").read_bytes())
    assert result["metrics"] == ["coeff_f1", "coeff_mae"]
    nb = json.loads((folder / "trial_listmetrics-wide-1.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for o in nb["cells"][-1]["outputs"])
    assert "'metrics' of the last step is a list, not a {name: number or series} dict" in printed
    description = (folder / "trial.yaml").read_text()
    assert "metrics_other:\n  - coeff_f1\n  - coeff_mae\n" in description


def test_trial_yaml_is_plain_yaml_with_decoded_values(session: tuple[Path, Run]) -> None:
    import yaml

    root, _ = session
    text = (trial_folder(root, "trial_listmetrics-wide-1") / "trial.yaml").read_text()
    assert "&id" not in text and "*id" not in text, "no YAML anchors or aliases"
    params = yaml.safe_load(text)["params"]
    assert params[0]["value"] == {"width": 3, "height": 1, "tags": ["a", "b"]}


def test_a_result_that_cannot_be_pickled_leaves_no_partial_pickle(session: tuple[Path, Run]) -> None:
    root, run = session
    folder = trial_folder(root, "trial_unpicklable-1")
    assert list((folder / "results").iterdir()) == []
    outcome = json.loads((folder / "outcome.json").read_text())
    assert outcome["status"] == "failed" and outcome["main"] == 1.5


def test_no_staging_folder_is_left_behind(session: tuple[Path, Run]) -> None:
    root, _ = session
    staging = root / "results" / "trials" / ".staging"
    assert not staging.exists() or not any(staging.iterdir())


def test_lf_selects_exactly_the_trials_that_failed(session: tuple[Path, Run]) -> None:
    root, _ = session
    rerun = run_pytest(root, "--mitosis", "--lf", "--collect-only", "-q", junit=False, cache=True)
    selected = sorted(line for line in rerun.out.splitlines() if line.startswith("pyproject.toml::"))
    assert selected == [
        "pyproject.toml::broken[single]",
        "pyproject.toml::dies",
        "pyproject.toml::nomain",
        "pyproject.toml::nondict",
        "pyproject.toml::raises",
        "pyproject.toml::sleeps",
        "pyproject.toml::slowsave",
        "pyproject.toml::unpicklable",
    ]
