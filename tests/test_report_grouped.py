"""The experiment page's grouped views: main by each parameter, a heatmap of two, main against a number.

One investigation of two varying parameters (a model by name, a noise level by number) runs
at three commits; its report is built by ``python -m pytest_mitosis report`` and read twice:
as the data the page embeds, and in a real Chromium, where the page's script aggregates it
(the numbers users see are checked there, where they are computed).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from .conftest import Run, clean_env, git, git_init, run_pytest, write_investigation
from .test_report import browser, needs_browser, screenshots  # noqa: F401 (browser: a fixture)

try:
    from selenium.webdriver.common.by import By
except ImportError:  # the browser test skips
    pass

# the lookup dicts' orders are neither alphabetical (model) nor numeric (noise) on purpose
MODULE = """
lookup = {"model": {"ridge": 1, "lasso": 2, "tree": 3}, "noise": {"2": 2, "1": 1, "4": 4}}
SHIFT = 0


def run(model, noise):
    if model == 3 and noise == 4:
        raise ValueError("the tree does not fit at noise 4")
    return {"main": model * noise + SHIFT}
"""

PYPROJECT = """
[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""

MODELS, NOISES = ["ridge", "lasso", "tree"], ["1", "2", "4"]
MODEL_VALUE = {"ridge": 1, "lasso": 2, "tree": 3}


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run], list[str]]:
    """Commit A: the whole sweep (tree at noise 4 raises); B and C: ridge again, shifted by 0.5 and 2;
    then at C lasso at noise 1, failed by the drift gate (main 4 against 2): it measured main, so it is
    aggregated like a passed trial, and lasso's only trial at C (issue #25's follow-up)."""
    root = git_init(write_investigation(tmp_path_factory.mktemp("grouped") / "study", PYPROJECT, {"exp": MODULE}))
    runs = {"a": run_pytest(root, "--mitosis")}
    assert runs["a"].ret == 1 and "1 failed, 8 passed" in runs["a"].out, runs["a"].out  # the tree at noise 4
    for name, shift in (("b", "0.5"), ("c", "2")):
        (root / "exp.py").write_text(MODULE.replace("SHIFT = 0", f"SHIFT = {shift}").lstrip())
        git(root, "commit", "-qam", f"shift by {shift}")
        runs[name] = run_pytest(root, "--mitosis", "-k", "ridge")
        assert runs[name].ret == 0, runs[name].out
    runs["gated"] = run_pytest(
        root, "--mitosis", "--mitosis-compare=last", "--mitosis-compare-fail=main:5%", "pyproject.toml::exp[lasso-1]"
    )
    assert runs["gated"].ret == 1 and "by more than the allowed 5%" in runs["gated"].out, runs["gated"].out
    built = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "report"], cwd=root, env=clean_env(), capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    commits = [git(root, "rev-parse", f"HEAD~{n}").strip() for n in (2, 1, 0)]
    return root, runs, commits


def _page(root: Path) -> str:
    return (root / "trials" / "report" / "experiments" / "exp.html").read_text()


def _embedded(page: str) -> dict[str, Any]:
    found = re.search(r"<script>mitosisGrouped\((.*?)\)</script>", page)
    assert found, "the grouped views' data"
    data: dict[str, Any] = json.loads(found.group(1))
    return data


def _key(run: Run, model: str, noise: str) -> str:
    return run.properties(f"exp[{model}-{noise}]")["mitosis.key"]


@pytest.mark.kernel
def test_the_page_embeds_every_trial_with_its_outcome_commit_and_values_in_order(
    sweep: tuple[Path, dict[str, Run], list[str]],
) -> None:
    root, runs, commits = sweep
    page = _page(root)
    data = _embedded(page)
    assert data["higher"] is False and data["commits"] == commits, "the commit filter's columns, oldest first"
    assert data["params"] == [
        {"name": "exp.model", "values": MODELS, "numeric": False},  # the lookup dict's order
        {"name": "exp.noise", "values": NOISES, "numeric": True},  # ordered as numbers, not as run (2, 1, 4)
    ]
    expected = []
    for model in MODELS:
        for noise in NOISES:
            failed = (model, noise) == ("tree", "4")
            main = None if failed else MODEL_VALUE[model] * int(noise)
            expected.append(
                [_key(runs["a"], model, noise), 0, main, "failed (error)" if failed else "passed", [model, noise]]
            )
    for column, (name, shift) in enumerate((("b", 0.5), ("c", 2)), start=1):
        expected += [[_key(runs[name], "ridge", n), column, int(n) + shift, "passed", ["ridge", n]] for n in NOISES]
    # the gate judged the change (lasso 2 * 1 + 2 = 4 against 2 at A), not the measurement: its main is handed on
    expected.append([_key(runs["gated"], "lasso", "1"), 2, 4, "failed (drift gate)", ["lasso", "1"]])
    rows = [[k, c, m, o, [MODELS[v[0]], NOISES[v[1]]]] for k, c, m, o, v in data["trials"]]
    assert sorted(rows, key=str) == sorted(expected, key=str), "a raised trial's main never is, a gate-failed one's is"

    pickers = {
        name: re.findall(r"<option value='([^']*)'[^>]*>([^<]*)</option>", select)
        for name, select in re.findall(r"<select id='([a-z-]+)' onchange='mitosisGroupedDraw\(\)'>(.*?)</select>", page)
    }
    assert pickers["aggregate"] == [(a, a) for a in ("mean", "median", "best", "count")]
    assert pickers["heat-y"] == pickers["heat-x"] == [("0", "exp.model"), ("1", "exp.noise")]
    assert pickers["line-x"] == [("1", "exp.noise")], "only a parameter whose values are all numbers is an x axis"
    assert "<option value='0' selected>exp.model</option>" in page.split("id='line-by'")[1], "a line per model"
    assert all(f"<div class='chart' id='{c}'></div>" in page for c in ("grouped-0", "grouped-1", "heatmap", "lines"))


@pytest.mark.kernel
def test_the_guides_pivot_gives_the_heatmaps_numbers(
    sweep: tuple[Path, dict[str, Run], list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The guide's pandas example, as written there (names changed to this sweep's), run in the investigation."""
    pytest.importorskip("pandas")
    root, _, _ = sweep
    guide = (Path(__file__).parent.parent / "docs" / "guide.md").read_text()
    found = re.search(r"```python\n(df = pytest_mitosis.load_trials\(\"fit\"\).*?)```", guide, re.S)
    assert found, "the pivot example in docs/guide.md"
    names = {'"fit"': '"exp"', '"s.model"': '"exp.model"', '"s.noise"': '"exp.noise"'}
    code = found.group(1).strip()
    for name, ours in names.items():
        code = code.replace(name, ours)
    *setup, last = code.splitlines()
    assert len(setup) == 3 and last.startswith("newest.pivot_table("), code
    monkeypatch.chdir(root)
    scope: dict[str, Any] = {}
    exec("\n".join(["import pytest_mitosis", *setup]), scope)
    newest = eval(last, scope)
    # at C ridge passed and lasso's one trial failed the drift gate, having measured 4: both are aggregated
    assert newest.loc[["ridge", "lasso"], NOISES].to_numpy().ravel().tolist() == pytest.approx(
        [3, 4, 6, 4, float("nan"), float("nan")], nan_ok=True
    ), "the heatmap's cells at C in the browser test"
    every = eval(last.replace("newest.", "df."), scope)
    # lasso at noise 1: the median of A's 2 and C's gate-failed 4, 3
    assert every.loc[MODELS, NOISES].to_numpy().ravel().tolist() == pytest.approx(
        [1.5, 2.5, 4.5, 3, 4, 8, 3, 6, float("nan")], nan_ok=True
    ), "every commit's: the heatmap's medians in the browser test"


def _plot(driver: Any, element: str) -> dict[str, Any]:
    """What plotly.js drew into ``element``: its data and layout, read back from the DOM."""
    found: dict[str, Any] = driver.execute_script(
        "const gd = document.getElementById(arguments[0]);"
        "return {data: gd.data.map(t => ({x: t.x, y: t.y, z: t.z, text: t.text, hovertext: t.hovertext,"
        " marker: t.marker, name: t.name})), title: gd.layout.title.text,"
        " annotations: (gd.layout.annotations || []).map(a => a.text)}",
        element,
    )
    return found


def _pick(driver: Any, element: str, value: str) -> None:
    from selenium.webdriver.support.ui import Select

    Select(driver.find_element(By.ID, element)).select_by_value(value)


@pytest.mark.kernel
@needs_browser
def test_grouped_views_aggregate_what_the_filters_leave_in_a_real_browser(
    sweep: tuple[Path, dict[str, Run], list[str]],
    browser: Any,  # noqa: F811 (the fixture imported above)
    tmp_path: Path,
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import WebDriverWait

    root, runs, commits = sweep
    driver, shots = browser, screenshots(tmp_path)
    wait = WebDriverWait(driver, 30)
    driver.get((root / "trials" / "report" / "experiments" / "exp.html").as_uri())
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lines .scatterlayer .point"))
    short = [c[:8] for c in commits]

    # mean by model over every commit: ridge 1,2,4 + 1.5,2.5,4.5 + 3,4,6; lasso 2,4,8 and its gate-failed 4 at C
    # (it measured main: (2 + 4 + 8 + 4) / 4 = 4.5, no longer 14 / 3); tree 3,6 (its noise-4 trial raised)
    by_model = _plot(driver, "grouped-0")
    bars = by_model["data"][0]
    assert bars["x"] == MODELS and bars["y"] == [pytest.approx(28.5 / 9), 4.5, 4.5]
    assert bars["text"] == ["★ 3.16667", "4.5", "4.5"], "lower is better: ridge is marked"
    assert bars["marker"]["color"] == ["#2a7d2a", "#1f77b4", "#1f77b4"]
    title = by_model["title"]
    # 15 trials: the 14 passed and the gate-failed one; only the trial that raised is not aggregated
    assert title.startswith("main by exp.model: mean over exp.noise<br><sup>15 trials at 3 commits (")
    assert all(c in title for c in short)
    assert " (1 failed the drift gate); not aggregated: 1 failed (error); ★ best, lower is better" in title
    assert bars["hovertext"][0].endswith("<br>best: trial " + _key(runs["a"], "ridge", "1") + f" at commit {short[0]}")
    lasso = bars["hovertext"][1]
    assert f"4 trials at 2 commits ({short[0]}, {short[2]}) (1 failed the drift gate)" in lasso
    assert "not aggregated" not in lasso, lasso
    assert "not aggregated: 1 failed (error)" in bars["hovertext"][2]
    by_noise = _plot(driver, "grouped-1")["data"][0]
    # noise 1: 1, 1.5, 3 (ridge), 2 and the gate-failed 4 (lasso), 3 (tree): 14.5 / 6, no longer 10.5 / 5
    assert by_noise["x"] == NOISES and by_noise["y"] == [pytest.approx(14.5 / 6), pytest.approx(3.7), 5.625]
    driver.execute_script("document.getElementById('grouped-pickers').scrollIntoView()")
    driver.save_screenshot(str(shots / "grouped-mean.png"))

    # the median, and a heatmap of noise (rows) by model (columns): the median of each cell
    _pick(driver, "aggregate", "median")
    # lasso: the median of 2, 4, 4, 8 is 4, as of 2, 4, 8 was; ridge's and tree's groups are unchanged
    assert _plot(driver, "grouped-0")["data"][0]["y"] == [3, 4, 4.5]
    _pick(driver, "heat-y", "1")
    _pick(driver, "heat-x", "0")
    heat = _plot(driver, "heatmap")
    cells = heat["data"][0]
    assert cells["y"] == NOISES and cells["x"] == MODELS
    # ridge: the median of its three commits; lasso at noise 1: of A's 2 and C's gate-failed 4, 3 (no longer 2)
    assert cells["z"] == [[1.5, 3, 3], [2.5, 4, 6], [4.5, 8, None]]
    assert cells["text"][0][0] == "★ 1.5" and sum("★" in t for row in cells["text"] for t in row) == 1
    assert "median of main by exp.noise and exp.model<br><sup>15 trials at 3 commits" in heat["title"]
    assert cells["hovertext"][2][2].startswith("exp.noise = 4, exp.model = tree<br>no measured trial"), cells
    assert cells["hovertext"][2][2].endswith("not aggregated: 1 failed (error)")
    assert "<b>median 1.5</b>" in cells["hovertext"][0][0] and "3 trials at 3 commits (" in cells["hovertext"][0][0]
    assert (
        "2 trials at 2 commits" in cells["hovertext"][0][1] and "(1 failed the drift gate)" in cells["hovertext"][0][1]
    )
    lines = _plot(driver, "lines")
    assert [t["name"] for t in lines["data"]] == [f"exp.model = {m}" for m in MODELS] + ["★ best"]
    assert [(t["x"], t["y"]) for t in lines["data"][:3]] == [
        ([1, 2, 4], [1.5, 2.5, 4.5]),
        ([1, 2, 4], [3, 4, 8]),  # lasso at noise 1: the median of 2 and the gate-failed 4
        ([1, 2, 4], [3, 6, None]),
    ], "main against the noise level as numbers, a line per model; a gap where no trial measured main"
    driver.execute_script("document.getElementById('heatmap').scrollIntoView()")
    cell = driver.find_elements(By.CSS_SELECTOR, "#heatmap .nsewdrag")[0]
    ActionChains(driver).move_to_element(cell).perform()  # the middle cell: noise 2, lasso
    hover = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#heatmap .hoverlayer .hovertext"))
    assert "exp.noise = 2, exp.model = lasso" in hover.text and "median 4" in hover.text, hover.text
    driver.save_screenshot(str(shots / "grouped-heatmap-median.png"))

    # the commit filter: at the newest commit, only ridge passed; lasso's one trial there was failed by the gate,
    # having measured 4: lasso keeps its bar and its cell (they were empty while only passed trials counted)
    _pick(driver, "commit-filter", "2")
    at_c = _plot(driver, "grouped-0")
    assert at_c["data"][0]["x"] == ["ridge", "lasso"] and at_c["data"][0]["y"] == [4, 4], "median: ridge 3, 4, 6"
    assert f"<sup>4 trials at commit {short[2]} (1 failed the drift gate); ★ best" in at_c["title"]
    assert at_c["annotations"] == [], "no group without a measured trial"
    gated = _key(runs["gated"], "lasso", "1")
    assert (
        f"best: trial {gated} at commit {short[2]}, which failed the drift gate: its main was measured"
        in (at_c["data"][0]["hovertext"][1])
    )
    assert _plot(driver, "heatmap")["data"][0]["z"] == [[3, 4], [4, None], [6, None]]
    driver.execute_script("document.getElementById('grouped-pickers').scrollIntoView()")
    driver.save_screenshot(str(shots / "grouped-commit.png"))
    _pick(driver, "commit-filter", "")
    _pick(driver, "aggregate", "count")
    counted = _plot(driver, "grouped-0")
    # lasso: its 3 passed trials and the gate-failed one
    assert counted["data"][0]["y"] == [9, 4, 2] and not any("★" in t for t in counted["data"][0]["text"])
    assert "no best: a count is not a score" in counted["title"]


@pytest.mark.kernel
@needs_browser
def test_a_variant_whose_only_trials_at_a_commit_failed_the_gate_keeps_its_bar_and_cell(
    sweep: tuple[Path, dict[str, Run], list[str]],
    browser: Any,  # noqa: F811 (the fixture imported above)
) -> None:
    """Issue #25's follow-up: at C the drift gate failed lasso's one trial (it ran to its end, main 4). Counting
    passed trials alone left lasso without a bar, a cell or a point there, and ranked the survivors."""
    from selenium.webdriver.support.ui import WebDriverWait

    root, runs, commits = sweep
    gated = _key(runs["gated"], "lasso", "1")
    row = next(r for r in _embedded(_page(root))["trials"] if r[0] == gated)
    assert row[1:4] == [2, 4, "failed (drift gate)"], "its main is handed to the page's script"
    driver = browser
    driver.get((root / "trials" / "report" / "experiments" / "exp.html").as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#lines .scatterlayer .point"))
    _pick(driver, "commit-filter", "2")
    bars = _plot(driver, "grouped-0")
    # mean at C: ridge (3 + 4 + 6) / 3, lasso its gate-failed 4 alone
    assert (bars["data"][0]["x"], bars["data"][0]["y"]) == (["ridge", "lasso"], [pytest.approx(13 / 3), 4])
    assert bars["annotations"] == [], "no red 'no measured trial' note"
    hover = bars["data"][0]["hovertext"][1]
    assert f"1 trial at commit {commits[2][:8]} (1 failed the drift gate)" in hover, hover
    assert (
        f"best: trial {gated} at commit {commits[2][:8]}, which failed the drift gate: its main was measured" in hover
    )
    # rows: model (ridge, lasso), columns: noise (1, 2, 4); lasso's cell at noise 1 is its gate-failed trial's
    assert _plot(driver, "heatmap")["data"][0]["z"] == [[3, 4, 6], [4, None, None]]
    lines = _plot(driver, "lines")["data"]
    assert [(t["name"], t["x"], t["y"]) for t in lines[:2]] == [
        ("exp.model = ridge", [1, 2, 4], [3, 4, 6]),
        ("exp.model = lasso", [1], [4]),
    ]
