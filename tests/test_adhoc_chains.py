"""Chains from the command line (--mitosis-steps), where kernels run (working-dir), and the check's conflicts.

Collection cases run in-process without a kernel; two real sessions of one ad hoc chain (two
kernels) are shared by the recording and check tests, and one session runs a trial from a
sub-package's pyproject whose kernels run in the repository root.
"""

from __future__ import annotations

import sqlite3
import textwrap
from pathlib import Path

import pytest

from .conftest import Run, git, git_init, run_pytest, write_investigation

MODULE = """
lookup = {"noise": {"low": 0.1, "high": 0.5}}
fit_lookup = {"alpha": {"small": 1.0, "big": 10.0}}


def data(noise, n=3):
    return {"main": noise, "data": [noise] * n}


def fit(data, alpha=1.0):
    return {"main": sum(data) * alpha}
"""

PYPROJECT = """
[tool.mitosis.steps]
data = ["study:data", "study:lookup"]
fit = ["study:fit", "study:fit_lookup"]

[tool.mitosis.experiments]
official = { steps = ["data", "fit"], params = { "data.noise" = "low" } }
data = { steps = ["data"], params = { "data.noise" = "high" } }
"""


def collect(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    pytester.makepyprojecttoml(textwrap.dedent(PYPROJECT))
    pytester.makepyfile(study=textwrap.dedent(MODULE))
    return pytester.runpytest("--mitosis", "--collect-only", "-q", "-p", "no:cacheprovider", *args)


def ids(result: pytest.RunResult) -> list[str]:
    return [line for line in result.stdout.lines if line.startswith("pyproject.toml::")]


def test_a_chain_from_the_command_line_is_collected_as_one_experiment(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--mitosis-steps", "data,fit")
    assert result.ret == pytest.ExitCode.OK
    assert ids(result) == [
        "pyproject.toml::data+fit[low-small]",
        "pyproject.toml::data+fit[low-big]",
        "pyproject.toml::data+fit[high-small]",
        "pyproject.toml::data+fit[high-big]",
    ]


def test_the_chain_name_is_selectable_with_k_and_both_spellings_agree(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--mitosis-steps=data+fit", "-k", "data+fit and big and not high")
    assert ids(result) == ["pyproject.toml::data+fit[low-big]"]


def test_several_chains_and_a_declared_experiment_with_the_same_steps(pytester: pytest.Pytester) -> None:
    # "data" is declared with exactly that chain: it is that experiment (its table applies)
    result = collect(pytester, "--mitosis-steps", "data,fit", "--mitosis-steps", "data", "-k", "not big")
    assert ids(result) == [
        "pyproject.toml::data+fit[low-small]",
        "pyproject.toml::data+fit[high-small]",
        "pyproject.toml::data[high]",
    ]


def test_an_unknown_step_in_a_chain_lists_the_steps(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--mitosis-steps", "data,fitt")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            f"--mitosis-steps data,fitt: unknown step 'fitt'; the steps of {pytester.path / 'pyproject.toml'} are: data, fit."
        ]
    )


def test_an_empty_step_name_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = collect(pytester, "--mitosis-steps", "data,,fit")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*argument --mitosis-steps: expected registered step names separated by commas, e.g. data,odes, got 'data,,fit'"
        ]
    )


def records(db: Path) -> list[sqlite3.Row]:
    connection = sqlite3.connect(db)
    connection.row_factory = sqlite3.Row
    return connection.execute("SELECT * FROM trials ORDER BY started").fetchall()


@pytest.fixture(scope="module")
def chained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, Run]:
    """The same ad hoc chain run twice (one trial each), spelled both ways."""
    root = git_init(write_investigation(tmp_path_factory.mktemp("chains") / "study", PYPROJECT, {"study": MODULE}))
    first = run_pytest(root, "--mitosis-steps", "data,fit", "--mitosis-param", "data.noise=low", "-k", "small")
    second = run_pytest(root, "--mitosis", "--mitosis-steps=data+fit", "pyproject.toml::data+fit[low-small]")
    return root, first, second


def test_an_ad_hoc_chain_is_recorded_like_a_declared_experiment(chained: tuple[Path, Run, Run]) -> None:
    root, first, second = chained
    assert first.ret == 0, first.out
    assert second.ret == 0, second.out
    assert first.properties("data+fit[low-small]")["mitosis.iteration"] == "1"
    assert second.properties("data+fit[low-small]")["mitosis.iteration"] == "2"
    assert first.properties("data+fit[low-small]")["main"] == "0.30000000000000004"
    rows = records(root / "trials" / "mitosis.sqlite")
    assert [(r["experiment"], r["name"], r["nodeid"], r["identity"]) for r in rows] == [
        ("data+fit", "trial_data+fit-low-small-1", "pyproject.toml::data+fit[low-small]", rows[0]["identity"]),
        ("data+fit", "trial_data+fit-low-small-2", "pyproject.toml::data+fit[low-small]", rows[0]["identity"]),
    ]
    assert (
        root / "trials" / f"trial_data+fit-low-small-1_{rows[0]['key']}" / "trial_data+fit-low-small-1.html"
    ).is_file()


def test_the_check_shows_every_conflict_of_a_trial(chained: tuple[Path, Run, Run]) -> None:
    root, _, _ = chained
    study = root / "study.py"
    study.write_text(study.read_text().replace('"low": 0.1', '"low": 0.2').replace('"small": 1.0', '"small": 2.0'))
    git(root, "commit", "-qam", "both variants change meaning")
    run = run_pytest(root, "--mitosis-check", "--mitosis-steps", "data,fit", "-k", "low", junit=False)
    assert run.ret == 1, run.out
    line = next(line for line in run.out.splitlines() if line.startswith("pyproject.toml::data+fit[low-small]"))
    assert "variant 'low' of data.noise was 0.1" in line and "is now 0.2" in line
    assert "variant 'small' of fit.alpha was 1.0" in line and "is now 2.0" in line
    assert "pyproject.toml::data+fit[low-big]  blocked: variant 'low' of data.noise was 0.1" in run.out
    assert "mitosis check: 2 trials: 0 new, 0 repeats, 2 blocked" in run.out


# -- point 10: where the kernel runs ------------------------------------------------------------

SUB_MODULE = """
def run():
    with open("data/value.txt") as stream:  # relative to the repository root, as mitosis scripts read data
        return {"main": float(stream.read())}
"""


def test_working_dir_that_is_not_a_directory(pytester: pytest.Pytester) -> None:
    pytester.makepyprojecttoml('[tool.mitosis]\nworking-dir = "nosuch"\n[tool.mitosis.steps]\nexp = ["study:run"]\n')
    pytester.makepyfile(study=SUB_MODULE)
    result = pytester.runpytest("--mitosis", "--collect-only", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        [
            f"{pytester.path / 'pyproject.toml'}: [[]tool.mitosis[]] working-dir: 'nosuch' is {pytester.path / 'nosuch'}, "
            "which is not a directory. Give a directory relative to this file."
        ]
    )


@pytest.fixture(scope="module")
def sub_package(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    root = tmp_path_factory.mktemp("cwd") / "repo"
    write_investigation(root, "[tool.pytest.ini_options]\n", {})
    write_investigation(
        root / "sub",
        '[tool.mitosis]\nworking-dir = ".."\n\n[tool.mitosis.steps]\nexp = ["substudy:run"]\n\n[tool.pytest.ini_options]\n',
        {"substudy": SUB_MODULE},
    )
    (root / "data").mkdir()
    (root / "data" / "value.txt").write_text("7")
    git_init(root)
    return root, run_pytest(root, "--mitosis-config", "sub/pyproject.toml", "-rA")


def test_the_kernel_runs_in_working_dir(sub_package: tuple[Path, Run]) -> None:
    root, run = sub_package
    assert run.ret == 0, run.out
    assert run.properties("exp")["main"] == "7.0"
    assert f"mitosis: kernels run in {root}" in run.out
    html = Path(run.properties("exp")["mitosis.html"])
    assert (
        f"Working directory: <code>{root}</code>" in html.read_text()
        or f"Working directory: `{root}`" in html.read_text()
    )
    assert f"working_dir: {root}" in (html.parent / "trial.yaml").read_text()


def test_node_ids_agree_between_pytest_and_the_mitosis_summary(sub_package: tuple[Path, Run]) -> None:
    _, run = sub_package
    assert "PASSED sub/pyproject.toml::exp" in run.out
    summary = run.out.split("mitosis trials", 1)[1]
    key = run.properties("exp")["mitosis.key"]
    assert summary.splitlines()[1:4] == [  # the node id: the file said once, then the trial id under its experiment
        "experiments from sub/pyproject.toml",
        "exp: 1 trial: 1 passed",
        f"  exp  PASSED  #1 key {key}  main 7",
    ]


def test_a_reproduction_runs_in_the_committed_working_dir_inside_its_checkout(sub_package: tuple[Path, Run]) -> None:
    """Since the trial, working-dir was dropped (kernels would run in sub/, reading sub/data): the
    reproduction still runs where the recorded commit said, the repository root of its checkout."""
    root, first = sub_package
    key = first.properties("exp")["mitosis.key"]
    pyproject = root / "sub" / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('working-dir = ".."\n', ""))
    (root / "sub" / "data").mkdir()
    (root / "sub" / "data" / "value.txt").write_text("9")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "kernels run in sub/ from now on")
    run = run_pytest(root, "--mitosis-config=sub/pyproject.toml", "--mitosis-reproduce", key)
    assert run.ret == 0, run.out
    props = run.properties(f"reproduce[{key}]")
    assert props["main"] == "7.0", "data/value.txt of the repository root, as at the recorded commit"
    yaml = (Path(props["mitosis.html"]).parent / "trial.yaml").read_text()
    working_dir = next(line for line in yaml.splitlines() if line.startswith("working_dir: "))
    assert working_dir.endswith("/checkout"), working_dir  # the checkout's root, not the work tree
