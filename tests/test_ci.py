"""What CI reads: ``--mitosis-summary``, ``--mitosis-benchmark-json`` and the workflows of ``examples/ci``.

Each session is real (kernels, git, the store) and shared by the assertions about it; the
workflows' own pytest command lines are taken from their YAML and run on a committed copy of
``examples/sine``, so an example that stops working fails here.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from pytest_mitosis.views.ci import code, escape, first_line

from .conftest import EXAMPLE, Run, background, clean_env, git, git_init, run_pytest, wait_until, write_investigation

CI_EXAMPLES = Path(__file__).parent.parent / "examples" / "ci"

PYPROJECT = """
[tool.mitosis.steps]
err = ["study:err", "study:lookup"]
acc = ["study:acc"]
bad = ["study:bad"]

[tool.mitosis.experiments]
err = { steps = ["err"], expect = "main < 1" }
acc = { steps = ["acc"], higher-is-better = true }
bad = ["bad"]
"""

STUDY = """
lookup = {"size": {"small": 0.25, "big": 2.0}}


def err(size):
    return {"main": size, "metrics": {"loss": [0.5, size], "label": "text", "nan": float("nan")}}


def acc():
    return {"main": 0.9, "metrics": {"recall": 0.75}}


def bad():
    raise ValueError("a | b\\nsecond line")
"""


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, str]:
    """One session of three experiments: a hypothesis (held and refuted), higher-is-better, a failure."""
    base = tmp_path_factory.mktemp("mixed")
    root = git_init(write_investigation(base / "study", PYPROJECT, {"study": STUDY}))
    summary = base / "summary.md"
    summary.write_text("earlier step\n", encoding="utf-8")
    run = run_pytest(
        root,
        "--mitosis",
        "--mitosis-seed=3",
        "--mitosis-compare=last",
        f"--mitosis-summary={summary}",
        f"--mitosis-benchmark-json={base / 'bench.json'}",
    )
    return base, run, summary.read_text(encoding="utf-8")


def _key(run: Run, name: str) -> str:
    return run.properties(name)["mitosis.key"]


def test_the_summary_is_appended_failures_first_and_one_row_per_trial_folded(mixed: tuple[Path, Run, str]) -> None:
    base, run, text = mixed
    assert run.ret == 1, run.out
    commit = git(base / "study", "rev-parse", "HEAD").strip()
    nothing = "no earlier passed trial of this identity to compare with"
    assert text == "\n".join(
        [
            "earlier step",
            "",
            "## mitosis: 2 passed, 2 failed (4 trials)",
            "",
            f"commit `{commit}`, seed 3, session `{run.properties('acc')['mitosis.session']}`, pytest exit status 1",
            "",
            "### Failures (2)",
            "",
            "- `bad`: step 'bad' (study:bad) raised ValueError: a \\| b",
            "- `err[big]`: hypothesis 'main \\< 1' is refuted: main = 2.0",
            "",
            "| experiment | trials | passed | failed | best main |",  # acc: higher is better
            "|---|---|---|---|---|",
            "| `acc` | 1 | 1 | 0 | 0.9 `acc` |",
            "| `bad` | 1 | 0 | 1 | – |",
            "| `err` | 2 | 1 | 1 | 0.25 `err[small]` |",
            "",
            f"Report: `{base / 'study' / 'trials' / 'report' / 'index.html'}`",
            "",
            "<details><summary>All 4 trials</summary>",
            "",
            "| trial | outcome | main | change | iteration / key | hypothesis |",
            "|---|---|---|---|---|---|",
            "| `bad` | failed | – | – | #1 `" + _key(run, "bad") + "` | – |",
            f"| `err[big]` | failed | 2 | new | #1 `{_key(run, 'err[big]')}` | refuted |",
            f"| `acc` | passed | 0.9 | new | #1 `{_key(run, 'acc')}` | – |",
            f"| `err[small]` | passed | 0.25 | new | #1 `{_key(run, 'err[small]')}` | holds |",
            "",
            "</details>",
            "",
            "<details><summary>Metrics, comparisons and warnings of each trial</summary>",
            "",
            "| trial | metrics | comparisons | warnings |",
            "|---|---|---|---|",
            f"| `err[big]` | loss = 2<br>label = text<br>nan = nan | {nothing} | – |",
            f"| `acc` | recall = 0.75 | {nothing} | – |",
            f"| `err[small]` | loss = 0.25<br>label = text<br>nan = nan | {nothing} | – |",
            "",
            "</details>",
            "",
        ]
    )


def test_a_failure_shows_only_its_first_line(mixed: tuple[Path, Run, str]) -> None:
    _, run, text = mixed
    assert "second line" in run.out  # pytest shows the whole message; the summary its first line
    assert "second line" not in text


def test_the_terminal_says_where_the_files_went(mixed: tuple[Path, Run, str]) -> None:
    base, run, _ = mixed
    assert f"summary: {base / 'summary.md'}" in run.out
    assert f"benchmark: {base / 'bench.json'} (2 values, tool: customSmallerIsBetter)" in run.out
    assert f"benchmark: {base / 'bench.bigger.json'} (2 values, tool: customBiggerIsBetter)" in run.out


def test_the_benchmark_json_splits_by_direction(mixed: tuple[Path, Run, str]) -> None:
    base, run, _ = mixed
    commit = git(base / "study", "rev-parse", "HEAD").strip()
    small = _key(run, "err[small]")
    acc = _key(run, "acc")
    assert json.loads((base / "bench.json").read_text()) == [  # the text label and the NaN are left out
        {"name": "err[small] main", "unit": "", "value": 0.25, "extra": f"key {small}, commit {commit}"},
        {"name": "err[small] loss", "unit": "", "value": 0.25, "extra": f"key {small}, commit {commit}"},
    ]
    assert json.loads((base / "bench.bigger.json").read_text()) == [
        {"name": "acc main", "unit": "", "value": 0.9, "extra": f"key {acc}, commit {commit}"},
        {"name": "acc recall", "unit": "", "value": 0.75, "extra": f"key {acc}, commit {commit}"},
    ]


def test_cells_stay_text() -> None:
    assert escape("a|b\nc*d_e") == "a\\|b<br>c\\*d\\_e"
    assert code("x|y") == "`x\\|y`"
    assert code("a`b") == "``a`b``"
    assert first_line("\n\n  first  \nsecond") == "first"


def test_the_header_says_how_to_use_the_github_step_summary(tmp_path: Path) -> None:
    root = git_init(write_investigation(tmp_path / "study", PYPROJECT, {"study": STUDY}))
    env = clean_env(GITHUB_STEP_SUMMARY=str(tmp_path / "step.md"))
    hint = "mitosis: on GitHub Actions: add --mitosis-summary=$GITHUB_STEP_SUMMARY to show the trials on the run's page"
    told = run_pytest(root, "--mitosis", "--collect-only", env=env, junit=False)
    assert hint in told.out
    given = run_pytest(
        root, "--mitosis", "--collect-only", f"--mitosis-summary={tmp_path / 's.md'}", env=env, junit=False
    )
    assert given.ret == 0, given.out
    assert hint not in given.out
    assert not (tmp_path / "s.md").exists()  # --collect-only writes no summary


def test_a_path_that_cannot_take_a_file_stops_the_session_before_any_trial(tmp_path: Path) -> None:
    root = git_init(write_investigation(tmp_path / "study", PYPROJECT, {"study": STUDY}))
    (tmp_path / "a-file").write_text("")
    inside = tmp_path / "a-file" / "ci" / "s.md"
    run = run_pytest(root, "--mitosis", "-k", "acc", f"--mitosis-summary={inside}", junit=False)
    assert run.ret == 4, run.out
    assert (
        f"ERROR: mitosis: --mitosis-summary={inside}: {tmp_path / 'a-file'} is a file, not a folder: "
        "move it aside, or choose another path." in run.out
    )
    assert not (root / "trials" / "mitosis.sqlite").exists()  # no trial ran
    (tmp_path / "out").mkdir()
    run = run_pytest(root, "--mitosis", "-k", "acc", f"--mitosis-benchmark-json={tmp_path / 'out'}", junit=False)
    assert run.ret == 4, run.out
    assert f"ERROR: mitosis: --mitosis-benchmark-json={tmp_path / 'out'} is a folder" in run.out
    assert "Traceback" not in run.out and "INTERNALERROR" not in run.out


def test_the_ini_key_is_relative_to_the_rootdir_and_the_option_wins(tmp_path: Path) -> None:
    """Paths that name a folder stop the session before any kernel, so they show how each resolved."""
    ini = PYPROJECT + '\n[tool.pytest.ini_options]\nmitosis_summary = "ci"\n'
    root = git_init(write_investigation(tmp_path / "study", ini, {"study": STUDY}))
    (root / "sub" / "here").mkdir(parents=True)
    (root / "ci").mkdir()
    run = run_pytest(root / "sub", "--mitosis", "-k", "acc", junit=False)  # from a sub-folder: still the rootdir's
    assert run.ret == 4, run.out
    assert f"ERROR: mitosis: --mitosis-summary={root / 'ci'} is a folder" in run.out
    run = run_pytest(root / "sub", "--mitosis", "-k", "acc", "--mitosis-summary=here", junit=False)
    assert f"ERROR: mitosis: --mitosis-summary={root / 'sub' / 'here'} is a folder" in run.out


def test_debug_trials_are_not_charted(tmp_path: Path) -> None:
    root = git_init(write_investigation(tmp_path / "study", PYPROJECT, {"study": STUDY}))
    bench = tmp_path / "bench.json"
    run = run_pytest(root, "--mitosis", "--mitosis-debug", "-k", "acc", f"--mitosis-benchmark-json={bench}")
    assert run.ret == 0, run.out
    assert float(run.properties("acc")["main"]) == 0.9  # it ran and passed
    assert json.loads(bench.read_text(encoding="utf-8")) == []
    assert f"benchmark: {bench} (0 values, tool: customSmallerIsBetter)" in run.out


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (a file that is always full)")
def test_a_file_that_cannot_be_written_is_one_line_and_the_trial_is_kept(tmp_path: Path) -> None:
    """Found only when writing (here: no space left): said at the end, the trial recorded, exit 1."""
    root = git_init(write_investigation(tmp_path / "study", PYPROJECT, {"study": STUDY}))
    run = run_pytest(
        root, "--mitosis", "-k", "acc", "--mitosis-summary=/dev/full", "--mitosis-benchmark-json=/dev/full"
    )
    assert run.ret == 1, run.out
    assert "1 passed" in run.out
    assert "summary: not written to /dev/full: No space left on device" in run.out
    assert "benchmark: not written to /dev/full: No space left on device" in run.out
    assert "Traceback" not in run.out and "INTERNALERROR" not in run.out
    assert float(run.properties("acc")["main"]) == 0.9
    history = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "history"], cwd=root, capture_output=True, text=True, env=clean_env()
    )
    assert run.properties("acc")["mitosis.key"] + "  acc" in history.stdout and "passed" in history.stdout


# --- examples/ci ---------------------------------------------------------------------------------


def _example_copy(base: Path) -> Path:
    root = base / "sine"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("trials", "__pycache__"))
    return git_init(root)


def _shell(root: Path, command: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run a workflow's command as the runner's shell would, with this interpreter's python first on PATH."""
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    return subprocess.run(
        ["bash", "-e", "-c", command],
        cwd=root,
        env=clean_env(PATH=path, **env),
        capture_output=True,
        text=True,
        timeout=600,
    )


def _pytest_line(commands: list[str]) -> str:
    found = [c for c in commands if "pytest --mitosis" in c]
    assert len(found) == 1, commands
    return found[0]


@pytest.fixture(scope="module")
def github() -> dict:
    data = yaml.safe_load((CI_EXAMPLES / "github-actions.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def test_the_github_workflow_has_the_expected_steps(github: dict) -> None:
    assert set(github[True]) == {"push", "pull_request"}  # YAML 1.1 reads the key `on` as true
    steps = github["jobs"]["experiments"]["steps"]
    uses = {step.get("uses", "").split("@")[0]: step for step in steps}
    assert {"actions/checkout", "actions/setup-python", "actions/cache", "actions/upload-artifact"} <= set(uses)
    command = _pytest_line([step.get("run", "") for step in steps])
    argv = shlex.split(command)
    assert "--mitosis-summary=$GITHUB_STEP_SUMMARY" in argv or '--mitosis-summary="$GITHUB_STEP_SUMMARY"' in command
    assert any(a.startswith("--mitosis-compare-fail=") for a in argv)
    upload = uses["actions/upload-artifact"]
    assert upload["if"] == "always()"
    junit = next(a.split("=", 1)[1] for a in argv if a.startswith("--junitxml="))
    assert junit in upload["with"]["path"] and "trials/report/" in upload["with"]["path"]
    bench = uses["benchmark-action/github-action-benchmark"]["with"]
    assert bench["tool"] == "customSmallerIsBetter"
    assert f"--mitosis-benchmark-json={bench['output-file-path']}" in argv
    assert uses["actions/cache"]["with"]["path"] == "trials"


@pytest.fixture(scope="module")
def gitlab() -> dict:
    data = yaml.safe_load((CI_EXAMPLES / "gitlab-ci.yml").read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def pipelines(github: dict, gitlab: dict, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Both examples' commands on one copy of the example, one after the other on the same trials
    folder (as the CI cache keeps it): GitHub's, then GitLab's (its summary lands in the work
    tree), then GitLab's again after a commit that moves main by far more than 5% (the summary
    its first run left must not make the tree dirty)."""
    base = tmp_path_factory.mktemp("pipelines")
    root = _example_copy(base)
    found: dict[str, Any] = {"root": root}
    github_command = _pytest_line([step.get("run", "") for step in github["jobs"]["experiments"]["steps"]])
    step_summary = base / "step-summary.md"
    step_summary.touch()  # GitHub creates it empty for each step
    found["github"] = _shell(root, github_command, GITHUB_STEP_SUMMARY=str(step_summary))
    found["github-summary"] = step_summary.read_text(encoding="utf-8")
    found["github-bench"] = json.loads((root / "trials" / "benchmark.json").read_text(encoding="utf-8"))

    gitlab_command = _pytest_line(gitlab["mitosis"]["script"])
    found["gitlab"] = _shell(root, gitlab_command)
    found["gitlab-bench"] = json.loads((root / "trials" / "benchmark.json").read_text(encoding="utf-8"))
    module = root / "sine_experiment.py"  # a coarser grid: the maximum is missed by far more than 5%
    module.write_text(module.read_text().replace("np.arange(0, 10, 0.05)", "np.arange(0, 10, 0.5)"))
    git(root, "commit", "-qm", "coarser grid", "sine_experiment.py")
    found["drift"] = _shell(root, gitlab_command)
    return found


def test_the_github_command_runs_the_example(pipelines: dict[str, Any]) -> None:
    root, first = pipelines["root"], pipelines["github"]
    assert first.returncode == 0, first.stdout + first.stderr
    text = pipelines["github-summary"]
    assert text.startswith("## mitosis: 2 passed (2 trials)\n")
    assert "| `sine[amplitude_4-fast]` | passed |" in text
    assert sorted(e["name"] for e in pipelines["github-bench"]) == [
        "sine[amplitude_4-fast] main",
        "sine[amplitude_4-fast] max",
        "sine[amplitude_4-slow] main",
        "sine[amplitude_4-slow] max",
    ]
    assert (root / "trials" / "junit.xml").is_file() and (root / "trials" / "report" / "index.html").is_file()


def test_the_gitlab_job_is_valid_its_command_runs_the_example_and_fails_on_drift(
    gitlab: dict, pipelines: dict[str, Any]
) -> None:
    job = gitlab["mitosis"]
    command = _pytest_line(job["script"])
    argv = shlex.split(command)
    assert any(a.startswith("--mitosis-compare-fail=") for a in argv)
    assert job["artifacts"]["when"] == "always"
    junit = next(a.split("=", 1)[1] for a in argv if a.startswith("--junitxml="))
    summary = next(a.split("=", 1)[1] for a in argv if a.startswith("--mitosis-summary="))
    bench = next(a.split("=", 1)[1] for a in argv if a.startswith("--mitosis-benchmark-json="))
    assert job["artifacts"]["reports"]["junit"] == junit
    assert {junit, summary, bench, "trials/report/"} <= set(job["artifacts"]["paths"])
    assert job["cache"]["paths"] == ["trials/"]

    root, done = pipelines["root"], pipelines["gitlab"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert bench == "trials/benchmark.json" and len(pipelines["gitlab-bench"]) == 4
    assert (root / junit).is_file() and (root / "trials" / "report" / "index.html").is_file()

    drift = pipelines["drift"]  # the summary the first run left in the work tree did not make it dirty
    assert drift.returncode == 1, drift.stdout + drift.stderr
    passed, failed = (root / summary).read_text(encoding="utf-8").split("## mitosis: ")[1:]
    assert passed.startswith("2 passed (2 trials)\n"), "each run appends its summary"
    assert failed.startswith("2 failed (2 trials)\n")
    assert "### Failures" not in failed, "a trial the drift gate failed is a regression, said once"
    regressions = failed.split("### Regressions (2)\n\n", 1)[1].split("\n\n", 1)[0].splitlines()  # sorted by id
    assert [line.split(": main ", 1)[0] for line in regressions] == [
        "- `sine[amplitude_4-fast]`",
        "- `sine[amplitude_4-slow]`",
    ]
    assert all(
        re.search(
            r": main [0-9.e-]+ → [0-9.e-]+ \(\+[0-9.e+]+%\): higher by more than the allowed 5% \(since "
            r"trial\\_sine-amplitude\\_4-(fast|slow)-\d+, key [0-9a-f]{8}\)$",
            line,
        )
        for line in regressions
    ), regressions
    assert "\\[gw" not in failed  # xdist's line about its worker is not the failure's first line


SLOW = """
import os
import time
from pathlib import Path


def quick():
    return {"main": 1.0}


def slow():
    Path(os.environ["MITOSIS_TEST_MARKERS"], "slow-started").write_text("")
    time.sleep(120)
    return {"main": 2.0}
"""


def test_an_interrupted_session_still_writes_its_summary(tmp_path: Path) -> None:
    """SIGTERM (a CI runner cancelling the job) during the second trial: the summary has both."""
    pyproject = '[tool.mitosis.steps]\nquick = ["study:quick"]\nslow = ["study:slow"]\n'
    root = git_init(write_investigation(tmp_path / "study", pyproject, {"study": SLOW}))
    summary = tmp_path / "summary.md"
    argv = [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "--mitosis", f"--mitosis-summary={summary}"]
    markers = tmp_path / "markers"
    markers.mkdir()
    env = clean_env(MITOSIS_TEST_MARKERS=str(markers))
    proc = background(argv, cwd=root, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wait_until("the slow step running", lambda: (markers / "slow-started").exists(), proc)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, out
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("## mitosis: 1 passed, 1 interrupted (2 trials)\n"), text
    assert "pytest exit status 2" in text
    assert "| `quick` | passed | 1 |" in text and "| `slow` | interrupted | – |" in text
    assert f"summary: {summary}" in out
