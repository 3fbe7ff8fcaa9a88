"""The report over stores written through the store alone (no kernels): compare, direction, host, scale.

The trials are recorded by the real :class:`SQLiteStore` into a real SQLite file; the
``compare`` command runs as a user runs it, in a real git repository whose commits the
trials name, so the files changed between them come from git.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_mitosis.store import NewTrial, SQLiteStore
from pytest_mitosis.views.report import build

from .conftest import git, git_init, write_investigation


def record_trial(
    store: SQLiteStore,
    i: int,
    *,
    experiment: str = "exp",
    rate: str | None = None,
    width: str | None = None,
    commit: str = "a" * 40,
    main: Any = None,
    metrics: dict[str, Any] | None = None,
    host: str = "alpha",
    packages: dict[str, str] | None = None,
    seed: int = 7,
    status: str = "passed",
    message: str | None = None,
    folder: str | None = None,
    running: bool = False,
) -> str:
    """Record one finished trial of identity (rate, width), or one still ``running``; return its key."""
    key = f"{i:08x}"
    rate, width = rate or f"r{i % 10}", width or f"w{(i // 10) % 5}"
    params = [
        {
            "step": "s",
            "name": n,
            "kind": "lookup",
            "text": t,
            "tracked": True,
            "fingerprint": t,
            "value": t,
            "repr": repr(t),
        }
        for n, t in (("rate", rate), ("width", width))
    ]
    env = {
        "python": {"version": "3.11.7", "implementation": "CPython"},
        "platform": {"platform": "Linux"},
        "hostname": host,
        "packages": packages or {"numpy": "2.0", "scipy": "1.14"},
    }
    store.begin(
        NewTrial(
            key, experiment, json.dumps([rate, width]), f"{rate}-{width}", f"trial_{experiment}-{rate}-{width}",
            f"pyproject.toml::{experiment}", False, {"commit": commit}, seed, env,
            [{"name": "s", "function": "m:f", "lookup": None}], params,
        ),
        (),
    )  # fmt: skip
    if running:
        return key
    store.finish(
        key,
        status=status,
        main=main if main is not None else 0.5 + (i % 50) / 100,
        metrics=metrics or {"m": i},
        folder=folder,
        message=message,
    )
    return key


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A repository with two commits and a store whose trials ran at them."""
    root = git_init(
        write_investigation(
            tmp_path_factory.mktemp("compare") / "study",
            "[tool.mitosis.steps]\ns = ['m:f']\n",
            {"m": "def f(): pass\n"},
        )
    )
    first = git(root, "rev-parse", "HEAD").strip()
    (root / "m.py").write_text("def f():\n    return 1\n")
    git(root, "commit", "-qam", "change f")
    second = git(root, "rev-parse", "HEAD").strip()
    store = SQLiteStore(root / "trials")
    keys = {
        "old": record_trial(store, 0xAA000001, rate="r1", width="w1", commit=first, main=0.5, metrics={"loss": [0.9, 0.5, 0.4], "acc": 0.8}),
        "new": record_trial(store, 0xAA110002, rate="r1", width="w1", commit=second, main=0.4, metrics={"loss": [0.8, 0.3], "acc": 0.8}, packages={"numpy": "2.1", "scipy": "1.14"}, seed=8),
        "other": record_trial(store, 0xBB000003, rate="r2", width="w1", commit=second, main=0.3, host="beta"),
    }  # fmt: skip
    store.close()
    return root, keys


def mitosis(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pytest_mitosis", *args], cwd=root, capture_output=True, text=True)


def preset(page: str) -> dict[str, Any]:
    """The facts the compare command fixed in its page (the keys, the files git listed)."""
    found = re.search(r"comparePage\(\"\.\./\",(.*?)\)\);", page)
    assert found, page[-2000:]
    return dict(json.loads(found.group(1)))


def test_compare_writes_its_page_and_prints_the_path(repo: tuple[Path, dict[str, str]]) -> None:
    root, keys = repo
    done = mitosis(root, "compare", keys["old"], keys["new"][:6])
    assert done.returncode == 0, done.stderr
    path = root / "trials" / "report" / "compare" / f"{keys['old']}-{keys['new']}.html"
    assert done.stdout.strip() == f"compare: {path}"
    fixed = preset(path.read_text())
    assert fixed["keys"] == [keys["old"], keys["new"]]
    (label, files), *_ = fixed["groups"]["code"].items()
    assert label.startswith("files changed ") and files == "M\tm.py", "git's name-status, as diff lists it"
    assert (root / "trials" / "report" / "index.html").is_file(), "the report is refreshed first"


def test_compare_data_holds_the_diff_groups_of_each_trial(repo: tuple[Path, dict[str, str]]) -> None:
    root, keys = repo
    assert mitosis(root, "report").returncode == 0
    chunk = (root / "trials" / "report" / "data" / f"{keys['new'][-2:]}.js").read_text()
    assert chunk.startswith(f"// keys: {keys['new']}\n"), "a file per last two key digits"
    entries = json.loads(chunk.split("mitosisTrials(", 1)[1].rsplit(");", 1)[0])
    new = next(t for t in entries if t["key"] == keys["new"])
    assert set(new["groups"]) == {"code", "parameters", "seed"}
    assert new["groups"]["parameters"] == {"s.rate": "r1 = 'r1'", "s.width": "w1 = 'w1'"}
    assert new["groups"]["seed"] == {"seed": "8"}
    assert new["results"] == {"main": 0.4, "loss": "series of 2 points, last 0.3", "acc": 0.8}
    assert new["series"] == {"loss": [[0.0, 1.0], [0.8, 0.3]]}
    env = (root / "trials" / "report" / "data" / f"env-{new['environment']}.js").read_text()
    assert '"package numpy":"2.1"' in env and '"hostname":"\\"alpha\\""' in env


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["compare", "aa000001"], "compare needs two or more different trial keys; got aa000001."),
        (["compare", "aa000001", "aa000001"], "compare needs two or more different trial keys; got aa000001 aa000001."),
        (["compare", "aa000001", "ffff"], "no trial has a key starting with 'ffff'"),
    ],
)
def test_compare_refuses_what_it_cannot_compare(
    repo: tuple[Path, dict[str, str]], args: list[str], message: str
) -> None:
    root, _ = repo
    done = mitosis(root, *args)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith(f"pytest-mitosis: {message}")


def test_the_index_offers_a_host_filter_and_compare_boxes(repo: tuple[Path, dict[str, str]], tmp_path: Path) -> None:
    root, keys = repo
    index = build(root / "trials", tmp_path / "site").read_text()
    assert "<select data-filter='host'" in index
    assert "<option value='alpha'>alpha</option><option value='beta'>beta</option>" in index
    assert index.count("data-host='beta'") == 1
    assert f"<input type='checkbox' value='{keys['other']}'" in index
    assert "<script src='assets/report.js'></script>" in index
    assert (tmp_path / "site" / "assets" / "plotly.min.js").stat().st_size > 1_000_000


def _experiment(tmp_path: Path, table: str) -> str:
    """The experiment page of three identities (main 0.2, 0.5, 0.9) under a pyproject saying ``table``."""
    root = write_investigation(
        tmp_path / "p", f"[tool.mitosis.steps]\nacc = ['m:f']\n{table}", {"m": "def f(): pass\n"}
    )
    store = SQLiteStore(root / "trials")
    for i, main in enumerate((0.2, 0.5, 0.9)):
        record_trial(store, i, experiment="acc", rate=f"r{i}", width="w", main=main)
    store.close()
    build(root / "trials")
    return (root / "trials" / "report" / "experiments" / "acc.html").read_text()


@pytest.mark.parametrize(
    ("table", "best", "direction"),
    [
        ("", "0.2", "lower is better"),
        ("[tool.mitosis.experiments]\nacc = { steps = ['acc'], higher-is-better = true }\n", "0.9", "higher is better"),
        ("[tool.mitosis.experiments]\nacc = { steps = ['acc'], expect = 'main > 0.1' }\n", "0.9", "higher is better"),
        ("[tool.mitosis.experiments]\nacc = { steps = ['acc'], expect = 'main < 0.3' }\n", "0.2", "lower is better"),
    ],
)
def test_the_best_row_follows_the_experiments_direction(tmp_path: Path, table: str, best: str, direction: str) -> None:
    page = _experiment(tmp_path, table)
    assert f"main: {direction}" in page
    marked = re.findall(r"<tr class='best'>(.*?)</tr>", page)
    assert len(marked) == 1 and f"data-v='{best}'>{best}<br><small class='at'>at " in marked[0], "and its commit"
    assert "<th>s.rate</th>" in page and "<th>s.width</th>" not in page, "only the parameters that vary are columns"


def test_a_million_point_series_is_down_sampled(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "trials")
    key = record_trial(store, 1, metrics={"loss": [float(i % 1000) for i in range(1_000_000)]})
    store.close()
    build(tmp_path / "trials")
    page = tmp_path / "trials" / "report" / "trials" / f"{key}.html"
    assert page.stat().st_size < 200_000
    assert "loss (1,000,000 points, 2,000 drawn)" in page.read_text()


def test_a_failed_trials_page_wraps_its_message_and_the_index_marks_it(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "trials")
    message = "ValueError: " + "x" * 500 + "\n<script>alert(1)</script>"
    key = record_trial(store, 1, status="failed", message=message, main=None)
    store.close()
    index = build(tmp_path / "trials").read_text()
    assert "<tr class='failed' data-experiment='exp'" in index
    page = (tmp_path / "trials" / "report" / "trials" / f"{key}.html").read_text()
    assert "<h1>trial_exp-r1-w0-1<span class='badge failed'>failed</span></h1>" in page
    assert "<h2>Failure</h2><pre class='wrap'>ValueError: xxx" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page and "<script>alert" not in page


def test_a_report_of_an_older_layout_gets_its_trial_pages_again(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "trials")
    key = record_trial(store, 1)
    store.close()
    report = tmp_path / "trials" / "report"
    build(tmp_path / "trials")
    page = report / "trials" / f"{key}.html"
    page.write_text("a page of an older pytest-mitosis")
    build(tmp_path / "trials")
    assert page.read_text() == "a page of an older pytest-mitosis", "a finished trial's page is written once"
    (report / "assets" / "format").write_text("1\n")
    build(tmp_path / "trials")
    assert "<h2>Parameters</h2>" in page.read_text()


def test_a_refresh_rewrites_only_the_summaries_whose_trials_changed(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "trials")
    record_trial(store, 1, experiment="one")
    record_trial(store, 2, experiment="two")
    store.close()
    report = tmp_path / "trials" / "report"
    build(tmp_path / "trials")
    pages = [report / "index.html", report / "experiments" / "one.html", report / "experiments" / "two.html"]
    for page in pages:
        page.write_text("as the last refresh left it")
    build(tmp_path / "trials")
    assert [p.read_text() for p in pages] == ["as the last refresh left it"] * 3, "nothing changed: nothing rewritten"
    store = SQLiteStore(tmp_path / "trials")
    record_trial(store, 3, experiment="two")
    store.close()
    build(tmp_path / "trials")
    index, one, two = (p.read_text() for p in pages)
    assert "3</span> of 3 trials shown" in index and "<h1>Experiment two</h1>" in two
    assert one == "as the last refresh left it"


def test_the_trial_page_shows_each_steps_png_and_svg_figures_from_the_notebook(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "trials")  # the store first: trial folders without one are refused
    folder = tmp_path / "trials" / "trial_exp-r1-w0-1_00000001"
    folder.mkdir(parents=True)
    png = base64.b64decode(
        "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
    )
    svg = "<svg xmlns='http://www.w3.org/2000/svg' width='10' height='10'><rect width='10' height='10'/></svg>"
    outputs = [
        {"output_type": "display_data", "data": {"image/png": base64.b64encode(png).decode(), "text/plain": "fig"}},
        {"output_type": "display_data", "data": {"image/svg+xml": svg}},
    ]
    cells = [
        {"cell_type": "markdown", "source": "header"},
        {"cell_type": "code", "source": "setup", "outputs": []},
        {"cell_type": "code", "source": "step s", "outputs": outputs},
        {"cell_type": "code", "source": "result", "outputs": []},
    ]
    (folder / "trial_exp-r1-w0-1.ipynb").write_text(json.dumps({"cells": cells}))
    key = record_trial(store, 1, folder=str(folder))
    store.close()
    build(tmp_path / "trials")
    report = tmp_path / "trials" / "report"
    page = (report / "trials" / f"{key}.html").read_text()
    assert re.findall(r"<img src='\.\./(figures/[^']+)' alt='([^']+)'", page) == [
        (f"figures/{key}-1-s.png", "step s, figure 1"),
        (f"figures/{key}-2-s.svg", "step s, figure 2"),
    ]
    assert (report / "figures" / f"{key}-1-s.png").read_bytes() == png
    assert (report / "figures" / f"{key}-2-s.svg").read_text() == svg
