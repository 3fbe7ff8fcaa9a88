"""Environment and seeds recorded per trial; history/show/diff; the Python API; warnings."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

import pytest_mitosis
from pytest_mitosis.store import RecordsError

from .conftest import Run, clean_env, git, git_init, run_pytest, write_investigation

MODULE = """
import random
import time

import numpy as np

lookup = {"size": {"small": 3, "big": 5}}


def run(size, seed, flaky=False):
    draw = random.random() + float(np.random.rand())
    main = time.time_ns() % 100000 if flaky else draw
    return {"main": main, "data": [size], "metrics": {"seed_param": seed}}
"""

CONFTEST = """
import pytest


@pytest.hookimpl(optionalhook=True)
def pytest_mitosis_environment(config):
    return {"dataset": {"name": "plumes", "version": "v3"}}
"""

PYPROJECT = """
[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""

FAKE_METADATA = "Metadata-Version: 2.1\nName: fakepkg\nVersion: 1.0\n"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    base = tmp_path_factory.mktemp("prov")
    root = write_investigation(base / "study", PYPROJECT, {"exp": MODULE, "conftest": CONFTEST})
    (root / "notes.md").write_text("first\n")
    git_init(root)
    fake = base / "site"
    (fake / "fakepkg-1.0.dist-info").mkdir(parents=True)
    (fake / "fakepkg-1.0.dist-info" / "METADATA").write_text(FAKE_METADATA)
    found: dict[str, Run] = {}
    found["a"] = run_pytest(root, "--mitosis", "-k", "small", "--mitosis-seed", "7")
    found["b"] = run_pytest(root, "--mitosis", "-k", "small", "--mitosis-seed", "7")
    (root / "notes.md").write_text("second\n")
    git(root, "commit", "-qam", "revise the notes")
    found["c"] = run_pytest(root, "--mitosis", "-k", "small", "--mitosis-seed", "8")
    found["d"] = run_pytest(root, "--mitosis", "-n", "2")
    found["e"] = run_pytest(root, "--mitosis", "-k", "small", "--mitosis-seed", "8", "--mitosis-eval=+exp.flaky=True")
    found["f"] = run_pytest(root, "--mitosis", "-k", "big", "--mitosis-seed", "8", env=clean_env(PYTHONPATH=str(fake)))
    for name, run in found.items():
        assert run.ret == 0, f"run {name}: {run.out}"
    return root, found


def cli(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_mitosis", *args], cwd=root, capture_output=True, text=True)


def key(run: Run, name: str) -> str:
    return run.properties(name)["mitosis.key"]


def test_the_same_seed_gives_the_same_main_and_another_seed_another(runs: tuple[Path, dict[str, Run]]) -> None:
    _, r = runs
    a, b, c = (r[n].properties("exp[small]") for n in "abc")
    assert a["main"] == b["main"] != c["main"]
    assert (a["mitosis.seed"], b["mitosis.seed"], c["mitosis.seed"]) == ("7", "7", "8")
    assert a["mitosis.metrics.seed_param"] == "7", "a step with a seed parameter receives the trial seed"
    assert "mitosis: seed 7 (repeat with --mitosis-seed 7)" in r["a"].out


def test_without_a_seed_one_is_drawn_printed_and_shared_by_all_workers(runs: tuple[Path, dict[str, Run]]) -> None:
    _, r = runs
    seed = re.search(r"mitosis: seed (\d+) \(repeat with --mitosis-seed \1\)", r["d"].out)
    assert seed is not None, r["d"].out
    seeds = {r["d"].properties(n)["mitosis.seed"] for n in ("exp[small]", "exp[big]")}
    assert seeds == {seed.group(1)}


def test_trial_yaml_and_notebook_metadata_describe_the_trial(runs: tuple[Path, dict[str, Run]]) -> None:
    root, r = runs
    html = Path(r["a"].properties("exp[small]")["mitosis.html"])
    described = yaml.safe_load((html.parent / "trial.yaml").read_text())
    assert described["trial"] == "trial_exp-small-1"
    assert described["seed"] == 7
    assert described["git"]["commit"] == r["a"].properties("exp[small]")["mitosis.commit"]
    assert [(p["name"], p["kind"], p["text"], p["repr"]) for p in described["params"]] == [
        ("size", "lookup", "small", "3"),
        ("seed", "seed", "trial seed", "7"),
    ]
    assert described["results"]["status"] == "passed"
    env = described["environment"]
    assert env["python"]["version"] == ".".join(map(str, sys.version_info[:3]))
    assert env["packages"]["pytest-mitosis"] == pytest_mitosis.__version__
    assert env["dataset"] == {"name": "plumes", "version": "v3"}, "added by the conftest hook"
    nb = json.loads(html.with_suffix(".ipynb").read_text())
    assert nb["metadata"]["mitosis"]["environment"]["dataset"]["version"] == "v3"
    assert "Seed: `7`" in "".join(nb["cells"][0]["source"])


def test_non_determinism_and_changed_packages_are_warned(runs: tuple[Path, dict[str, Run]]) -> None:
    _, r = runs
    warning = r["e"].properties("exp[small]")["mitosis.warning"]
    assert warning.startswith("non-determinism: trial_exp-small-3 (key ")
    assert "had the same parameters, commit and seed but main = " in warning
    assert "warning: exp[small]: non-determinism:" in r["e"].out
    changed = r["f"].properties("exp[big]")["mitosis.warning"]
    assert re.match(r"installed packages changed since trial_exp-small-5 \(key [0-9a-f]{8}\): \+fakepkg 1\.0$", changed)


def test_history_lists_trials_newest_first(runs: tuple[Path, dict[str, Run]]) -> None:
    root, r = runs
    done = cli(root, "history")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].split() == [
        "key",
        "experiment",
        "variants",
        "iteration",
        "status",
        "main",
        "seed",
        "commit",
        "host",
        "date",
    ]
    assert len(lines) == 1 + 7
    assert lines[1].split()[:5] == [key(r["f"], "exp[big]"), "exp", "big", "2", "passed"]
    rows = json.loads(cli(root, "history", "--json").stdout)
    assert [row["key"] for row in rows][-1] == key(r["a"], "exp[small]")
    assert set(rows[0]) >= {"key", "experiment", "variants", "iteration", "status", "main", "seed", "commit", "started"}
    assert rows[-1]["seed"] == 7 and rows[-1]["iteration"] == 1
    unknown = cli(root, "history", "nothere")
    assert (unknown.returncode, unknown.stdout) == (1, "")
    assert unknown.stderr.startswith("pytest-mitosis: no experiment 'nothere' in ") and unknown.stderr.endswith(
        "; its experiments: exp\n"
    )


def test_show_tells_everything_recorded(runs: tuple[Path, dict[str, Run]]) -> None:
    root, r = runs
    k = key(r["a"], "exp[small]")
    out = cli(root, "show", k[:5]).stdout
    assert out.startswith(f"trial trial_exp-small-1 (key {k})\n")
    assert "  exp.size = 3   [variant 'small']" in out
    assert "  exp.seed = 7   [trial seed]" in out
    assert "seed: 7" in out
    assert f"commit: {r['a'].properties('exp[small]')['mitosis.commit']}" in out
    assert f"  python {'.'.join(map(str, sys.version_info[:3]))} (CPython)" in out
    assert f"    pytest-mitosis {pytest_mitosis.__version__}" in cli(root, "show", k[:5], "--packages").stdout
    assert re.search(rf"\n  packages: \d+ installed \(show {k} --packages lists them\)$", out)
    assert '  dataset: {"name": "plumes", "version": "v3"}' in out
    assert "  seed_param = 7" in out
    assert "    trial_exp-small-1.html" in out and "    trial.yaml" in out


def test_diff_groups_why_two_trials_differ(runs: tuple[Path, dict[str, Run]]) -> None:
    root, r = runs
    a, c = key(r["a"], "exp[small]"), key(r["c"], "exp[small]")
    out = cli(root, "diff", a, c).stdout
    assert out.startswith(f"trial_exp-small-1 (key {a})  vs  trial_exp-small-3 (key {c})")
    assert re.search(r"code: commit [0-9a-f]{12} -> [0-9a-f]{12}\n  files changed:\n    M\tnotes\.md\n", out)
    assert "\nparameters: identical\n" in out
    assert "\nenvironment: identical\n" in out
    assert "\nseed: 7 -> 8\n" in out
    assert re.search(r"results:\n  main: [0-9.]+ -> [0-9.]+\n  seed_param: 7 -> 8", out)
    e, f = key(r["e"], "exp[small]"), key(r["f"], "exp[big]")
    out = cli(root, "diff", e, f).stdout
    assert "code: identical" in out
    assert "  exp.size: small = 3  ->  big = 5" in out
    assert "  exp.flaky: only in " + e in out
    assert "  package added: fakepkg 1.0" in out
    assert "seed: identical (8)" in out


def test_unknown_and_ambiguous_keys_list_candidates(runs: tuple[Path, dict[str, Run]]) -> None:
    root, _ = runs
    done = cli(root, "show", "zzzz")
    assert done.returncode == 2
    assert done.stderr.startswith("pytest-mitosis: no trial has a key starting with 'zzzz' in ")
    assert "The newest trials:\n  " in done.stderr
    done = cli(root, "show", "")
    assert "the key prefix '' matches 7 trials; give more characters:" in done.stderr
    elsewhere = root.parent / "nowhere"
    elsewhere.mkdir()
    done = cli(elsewhere, "history")
    assert done.returncode == 2
    assert f"no trial store at {elsewhere / 'trials' / 'mitosis.sqlite'}" in done.stderr


def test_the_python_api_reads_results_params_and_records(runs: tuple[Path, dict[str, Run]]) -> None:
    root, r = runs
    k = key(r["a"], "exp[small]")
    folder = root / "trials"
    (result,) = pytest_mitosis.load_trial_data(k, trials_folder=folder)
    assert result["data"] == [3]
    assert result["main"] == float(r["a"].properties("exp[small]")["main"])
    assert pytest_mitosis.load_trial_params(k, trials_folder=folder) == {"exp": {"size": 3, "seed": 7}}
    records = pytest_mitosis.load_trials("exp", trials_folder=folder)
    assert len(records) == 7
    assert records[-1].key == k and records[-1].seed == 7 and records[-1].iteration == 1
    try:
        import pandas  # noqa: F401
    except ImportError:
        with pytest.raises(RecordsError, match="to_dataframe\\(\\) needs pandas, which is not installed"):
            records.to_dataframe()
    else:
        frame = records.to_dataframe()
        assert list(frame["key"])[-1] == k


def test_package_versions_come_from_the_metadata_headers_alone(tmp_path: Path) -> None:
    """Name and Version are read from the headers (a description mentioning them changes nothing);
    an egg-info's PKG-INFO counts too, and metadata without those headers goes to the full parser."""
    from importlib.metadata import PathDistribution

    from pytest_mitosis.identity.environment import _name_and_version

    wheel = tmp_path / "Fake_Pkg-2.0.dist-info"
    wheel.mkdir()
    (wheel / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: Fake_Pkg\nVersion: 2.0\nSummary: x\n\nName: not-this\nVersion: 9.9\n"
    )
    egg = tmp_path / "old.egg-info"
    egg.mkdir()
    (egg / "PKG-INFO").write_text("Metadata-Version: 1.0\nName: old\nVersion: 0.1\n")
    folded = tmp_path / "folded-1.0.dist-info"
    folded.mkdir()
    (folded / "METADATA").write_text("Metadata-Version: 2.1\nName:\n folded\nVersion: 1.0\n")
    assert _name_and_version(PathDistribution(wheel)) == ("Fake_Pkg", "2.0")
    assert _name_and_version(PathDistribution(egg)) == ("old", "0.1")
    assert _name_and_version(PathDistribution(folded)) == (PathDistribution(folded).metadata["Name"], "1.0")


LAZY_NUMPY = """
lookup = {"size": {"small": 3}}


def run(size):
    import numpy  # imported by the step itself: the kernel never had it before

    return {"main": float(numpy.random.rand())}
"""


def test_numpy_imported_inside_a_step_is_seeded_with_the_trial_seed(tmp_path: Path) -> None:
    """numpy is seeded the moment a step imports it (the kernel does not import it for every trial): the
    draw is numpy's first after ``numpy.random.seed(trial seed)``, and the same seed gives the same main."""
    import numpy

    root = write_investigation(tmp_path / "study", PYPROJECT, {"exp": LAZY_NUMPY})
    git_init(root)
    first = run_pytest(root, "--mitosis", "--mitosis-seed", "11")
    second = run_pytest(root, "--mitosis", "--mitosis-seed", "11")
    assert first.ret == 0 and second.ret == 0, first.out + second.out
    main = first.properties("exp[small]")["main"]
    assert main == second.properties("exp[small]")["main"]
    (record,) = pytest_mitosis.load_trials("exp", trials_folder=root / "trials")[-1:]
    numpy.random.seed(record.seed)
    assert float(main) == float(numpy.random.rand()), "the first draw after seeding with the trial's seed"
