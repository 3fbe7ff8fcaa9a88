"""Metric series, the static report (opened in a real headless browser) and pytest-html links."""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import pytest_mitosis
from pytest_mitosis.store import SQLiteStore
from pytest_mitosis.views.report import build

from .conftest import Run, clean_env, git, git_init, run_pytest, write_investigation
from .test_compare import record_trial

try:
    from selenium.webdriver.common.by import By
except ImportError:  # the browser tests skip
    pass

MODULE = """
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

lookup = {"rate": {"a": 1, "b": 2}}
SHIFT = 0


def run(rate):
    plt.plot([0, 1, 2], [0, rate, 0])
    loss = [0.9 / rate + SHIFT, 0.5 / rate + SHIFT, 0.31 / rate + SHIFT]
    return {"main": loss[-1], "metrics": {"loss": loss, "accuracy": {"step": [10, 20], "value": [0.5, 0.7]}}}
"""

PYPROJECT = """
[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    base = tmp_path_factory.mktemp("report")
    root = git_init(write_investigation(base / "study", PYPROJECT, {"exp": MODULE}))
    runs = {
        "first": run_pytest(
            root, "--mitosis", f"--html={base / 'pytest-html' / 'report.html'}", "--self-contained-html"
        )
    }
    (root / "exp.py").write_text(MODULE.replace("SHIFT = 0", "SHIFT = 0.01"))
    git(root, "commit", "-qam", "shift the loss")
    runs["second"] = run_pytest(root, "--mitosis")
    runs["debug"] = run_pytest(root, "--mitosis", "--mitosis-debug", "-k", "a")
    for name, run in runs.items():
        assert run.ret == 0, f"{name}: {run.out}"
    (root / "exp.py").write_text(MODULE.replace("SHIFT = 0", "SHIFT = 5"))
    git(root, "commit", "-qam", "a shift too far")
    runs["gated"] = run_pytest(root, "--mitosis", "--mitosis-compare=last", "--mitosis-compare-fail=main:5%", "-k", "a")
    assert runs["gated"].ret == 1 and "by more than the allowed 5%" in runs["gated"].out, runs["gated"].out
    return root, runs


def test_series_are_recorded_shown_and_loaded(study: tuple[Path, dict[str, Run]]) -> None:
    root, runs = study
    props = runs["first"].properties("exp[b]")
    assert props["mitosis.metrics.loss"] == "0.155", "junit carries a series' last value"
    key = props["mitosis.key"]
    assert pytest_mitosis.load_metric(key, "loss", root / "trials") == [0.45, 0.25, 0.155]
    assert pytest_mitosis.load_metric(key, "accuracy", root / "trials") == {"step": [10, 20], "value": [0.5, 0.7]}
    out = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "show", key], cwd=root, capture_output=True, text=True
    ).stdout
    assert "  loss = series of 3 points, last 0.155" in out
    assert "  accuracy = series of 2 points, last 0.7 at step 20" in out


def test_the_report_is_refreshed_after_each_session(study: tuple[Path, dict[str, Run]]) -> None:
    root, runs = study
    report = root / "trials" / "report"
    index = report / "index.html"
    assert "\nreport: trials/report/index.html\n" in runs["second"].out  # relative to where pytest ran
    text = index.read_text()
    assert text.count("<tr class=") == 5, "one row per (non-debug) trial"
    assert "<span class='count' id='count'>5</span> of 5 trials shown" in text
    for key in (runs[r].properties(n)["mitosis.key"] for r in ("first", "second") for n in ("exp[a]", "exp[b]")):
        assert (report / "trials" / f"{key}.html").is_file()


def test_every_page_loads_only_files_of_the_report_folder(study: tuple[Path, dict[str, Run]]) -> None:
    """Offline: each script and stylesheet is a relative path to a file that exists; nothing names a host."""
    root, _ = study
    report = root / "trials" / "report"
    pages = [
        report / "index.html",
        report / "compare.html",
        *report.glob("experiments/*.html"),
        *report.glob("trials/*.html"),
    ]
    for page in pages:
        text = page.read_text()
        assert "http://" not in text and "https://" not in text, page
        for src in re.findall(r"<(?:script src|link rel='stylesheet' href)='([^']+)'", text):
            assert not src.startswith("/") and (page.parent / src).is_file(), (page, src)
    assert "plotly.js v" in (report / "assets" / "plotly.min.js").read_text(encoding="utf-8")[:200]


def test_debug_trials_appear_only_on_request(study: tuple[Path, dict[str, Run]], tmp_path: Path) -> None:
    root, runs = study
    debug_key = runs["debug"].properties("exp[a]")["mitosis.key"]
    assert debug_key not in (root / "trials" / "report" / "index.html").read_text()
    done = subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "report", "--debug", "-o", str(tmp_path / "all")],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"report: {tmp_path / 'all' / 'index.html'}"
    text = (tmp_path / "all" / "index.html").read_text()
    assert text.count("<tr class=") == 6
    assert "<tr class='debug'" in text and "<span class='badge debug'>debug</span>" in text


def _rows(index: Path) -> dict[str, str]:
    """The index's rows by trial key: ``status main``."""
    found = re.findall(
        r"<tr class='[^']*'[^>]*data-status='(\w+)'[^>]*>.*?<td class='num' data-v='[^']*'>([^<]*)</td>.*?"
        r"<a href='trials/([0-9a-f]{8})\.html'>",
        index.read_text(),
    )
    return {key: f"{status} {main}" for status, main, key in found}


def test_a_refresh_follows_trials_that_end_arrive_and_leave_the_store(tmp_path: Path) -> None:
    """Each refresh reads whole only the trials that are new or changed, and still shows every change."""
    folder = tmp_path / "trials"
    store = SQLiteStore(folder)
    done = [record_trial(store, i, main=0.1 * i) for i in range(3)]
    running = record_trial(store, 3, running=True)
    index = build(folder)
    report = index.parent
    text = index.read_text()
    assert "<span class='count' id='count'>4</span> of 4 trials shown" in text
    assert _rows(index)[done[1]] == "passed 0.1" and "data-status='running'" in text
    assert all((report / "trials" / f"{key}.html").is_file() for key in done)
    assert not (report / "trials" / f"{running}.html").exists(), "a running trial gets its page when it ends"
    assert not any(running in data.read_text() for data in (report / "data").glob("*.js"))

    store.finish(running, status="passed", main=0.25, metrics={"m": 3}, folder=None, message=None)
    build(folder)
    assert _rows(index)[running] == "passed 0.25", "the trial that ended shows its outcome"
    assert (report / "trials" / f"{running}.html").is_file()
    assert f'"key":"{running}"' in (report / "data" / f"{running[-2:]}.js").read_text(), "and is in the compare data"

    arrived = [record_trial(store, i, main=0.5) for i in (4, 5)]
    (report / "assets" / "trials.json").write_text("{", encoding="utf-8")  # damaged: read everything again
    build(folder)
    rows = _rows(index)
    assert len(rows) == 6 and all(rows[key] == "passed 0.5" for key in arrived)
    assert rows[done[2]] == "passed 0.2"

    kept = json.loads((report / "assets" / "trials.json").read_text(encoding="utf-8"))
    kept["trials"][0][kept["fields"].index("params")] = [{"kind": 1}]  # crafted: not what a build writes
    (report / "assets" / "trials.json").write_text(json.dumps(kept), encoding="utf-8")
    late = record_trial(store, 6, main=0.75)
    build(folder)
    assert _rows(index)[late] == "passed 0.75" and len(_rows(index)) == 7, "the cache is set aside, not trusted"
    experiment = (report / "experiments" / "exp.html").read_text()
    assert "7 trials of this experiment" in experiment
    store.close()

    other = tmp_path / "other"
    other_key = record_trial(SQLiteStore(other), 9, main=0.9)
    build(other, out=report)  # another store written into the same folder: the trials it lacks leave the index
    assert _rows(index) == {other_key: "passed 0.9"}
    assert "<span class='count' id='count'>1</span> of 1 trials shown" in index.read_text()


REPO = Path(__file__).resolve().parent.parent

#: a report built by the package installed from the wheel, in a process of its own
BUILD = """
import sys
from pathlib import Path
import pytest_mitosis
from pytest_mitosis.views.report import build
print(pytest_mitosis.__file__)
print(build(Path(sys.argv[1])))
"""


def test_a_wheel_carries_the_templates_and_its_report_is_built(tmp_path: Path) -> None:
    """The pages are package data: a regular (non-editable) install of the wheel renders every kind of page."""
    source = tmp_path / "source"
    source.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, source / name)
    shutil.copytree(REPO / "pytest_mitosis", source / "pytest_mitosis", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check"]
    built = subprocess.run(
        [*pip, "wheel", "--no-deps", "-q", "-w", str(tmp_path / "wheel"), str(source)], capture_output=True, text=True
    )
    assert built.returncode == 0, built.stdout + built.stderr
    (wheel,) = (tmp_path / "wheel").glob("pytest_mitosis-*.whl")
    site = tmp_path / "site"
    installed = subprocess.run(
        [*pip, "install", "--no-deps", "-q", "--target", str(site), str(wheel)], capture_output=True, text=True
    )
    assert installed.returncode == 0, installed.stdout + installed.stderr
    templates = sorted(p.name for p in (REPO / "pytest_mitosis" / "views" / "report" / "templates").glob("*.html.j2"))
    assert sorted(p.name for p in (site / "pytest_mitosis" / "views" / "report" / "templates").iterdir()) == templates
    store = SQLiteStore(tmp_path / "trials")
    for i in range(3):
        record_trial(store, i, main=0.5 + i, metrics={"loss": [1.0, 0.5, 0.25]})
    store.close()
    done = subprocess.run(
        [sys.executable, "-c", BUILD, str(tmp_path / "trials")],
        cwd=tmp_path,
        env=clean_env(PYTHONPATH=str(site)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    module, index = done.stdout.split()
    assert Path(module) == site / "pytest_mitosis" / "__init__.py", "the installed package, not the source"
    report = Path(index).parent
    assert "id='count'>3</span> of 3 trials shown" in (report / "index.html").read_text()
    assert "<h1>Experiment exp</h1>" in (report / "experiments" / "exp.html").read_text()
    assert "mitosisPlot(" in (report / "trials" / f"{0:08x}.html").read_text(), "the series' chart"
    assert "comparePage(" in (report / "compare.html").read_text()


def test_a_template_variable_the_page_is_not_given_fails_the_render() -> None:
    """StrictUndefined: a name a template uses and its caller forgot is an error (a test meets it), never an empty text."""
    from jinja2 import UndefinedError

    from pytest_mitosis.views.report.render import environment

    page = environment().get_template("compare.html.j2")
    with pytest.raises(UndefinedError, match="'preset' is undefined"):
        page.render(title="Compare trials", prefix="", charts=True)
    shown = page.render(title="<b>", prefix="", charts=True, preset={"keys": ["</script>"]})
    assert "<title>&lt;b&gt;</title>" in shown and '"keys":["\\u003c/script\\u003e"]' in shown


#: a build in a process of its own (one thread, so it may fork), sharing its pages with a child from
#: ``argv[3]`` new pages on; ``argv[4]`` "child-fails" makes the child leave at once, writing nothing
FORKED_BUILD = """
import os, sys
from pathlib import Path
from pytest_mitosis.views.report import pages
from pytest_mitosis.views.report.build import build

pages.PARALLEL = int(sys.argv[3])
if sys.argv[4] == "child-fails":
    pages._child = lambda site, items: os._exit(1)
fork, forks = os.fork, []
os.fork = lambda: forks.append(1) or fork()
build(Path(sys.argv[1]), out=Path(sys.argv[2]))
print("forks:", len(forks))
"""


def test_pages_shared_with_a_forked_child_are_the_pages_one_process_writes(tmp_path: Path) -> None:
    folder = tmp_path / "trials"
    store = SQLiteStore(folder)
    for i in range(30):  # 10 identities, 3 trials each: every page but the first links its previous trial
        record_trial(store, i, width="w", main=0.01 * i)
    store.close()
    written = {}
    for case, threshold in (("serial", 10**6), ("forked", 2), ("child-fails", 2)):
        out = tmp_path / case
        done = subprocess.run(
            [sys.executable, "-c", FORKED_BUILD, str(folder), str(out), str(threshold), case],
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"forks: {0 if case == 'serial' else 1}"
        assert not [n for n in os.listdir(out / "trials") if not n.endswith(".html")], "no temporary file left"
        written[case] = {
            p.relative_to(out).as_posix(): p.read_bytes() for p in (out / "trials").iterdir() if p.is_file()
        }
    assert len(written["serial"]) == 30
    left, recent = (
        tmp_path / "serial" / "trials" / ".00000001.html.0a1b2c.tmp",
        tmp_path / "serial" / "trials" / ".x.tmp",
    )
    left.write_text("<html>half a page")  # what a build killed while writing a page leaves
    recent.write_text("<html>another build is writing this")
    os.utime(left, (time.time() - 7200, time.time() - 7200))
    build(folder, out=tmp_path / "serial")
    assert not left.exists() and recent.exists(), "a leftover an hour old is removed, a page being written is not"
    assert written["forked"] == written["serial"], "the child's pages and this process's, as one process writes them"
    assert written["child-fails"] == written["serial"], "what the child did not write is written after it"
    assert b"previous trial of this identity" in written["serial"]["trials/00000014.html"]


def test_the_trial_page_shows_figures_series_parameters_and_the_previous_trial(
    study: tuple[Path, dict[str, Run]],
) -> None:
    root, runs = study
    first, key = (runs[r].properties("exp[a]")["mitosis.key"] for r in ("first", "second"))
    report = root / "trials" / "report"
    page = (report / "trials" / f"{key}.html").read_text()
    assert page.count("mitosisPlot(") == 2, "one chart per series"
    figures = re.findall(r"<img src='\.\./(figures/[^']+)'", page)
    assert figures == [f"figures/{key}-1-exp.png"], "the step's figure, from the executed notebook"
    assert (report / figures[0]).read_bytes().startswith(b"\x89PNG")
    assert "<td>exp</td><td>rate</td><td>1</td><td>variant a</td>" in page
    assert "<details><summary>" in page and " packages</summary>" in page, "the package list is folded away"
    assert f"<a href='{first}.html'>previous trial of this identity ({first})</a>" in page
    assert f"<a href='../compare.html#{first},{key}'>compare with it</a>" in page
    assert "Since the previous trial of this identity" in page and "code: commit" in page


def _figure(page: str, element: str) -> dict[str, Any]:
    """The plotly figure a page hands to ``mitosisPlot`` for ``element``, as plotly.js receives it."""
    found = re.search(rf"mitosisPlot\(\"{element}\",(.*?)\)</script>", page)
    assert found, element
    return json.loads(found.group(1))


def test_latest_and_best_say_their_commit_and_failed_trials_are_counted_and_drawn(
    study: tuple[Path, dict[str, Run]],
) -> None:
    """After a commit whose only trial the drift gate failed, the page says so next to the older value."""
    root, runs = study
    commits = [git(root, "rev-parse", c).strip() for c in ("HEAD~2", "HEAD~1", "HEAD")]
    second_a, gated = (
        runs["second"].properties("exp[a]")["mitosis.key"],
        runs["gated"].properties("exp[a]")["mitosis.key"],
    )
    page = (root / "trials" / "report" / "experiments" / "exp.html").read_text()
    assert "<p class='outcomes'>5 trials: 4 passed, 1 failed (drift gate). At the newest commit, " in page
    assert f"<span title='{commits[2]}'>{commits[2][:8]}</span>" in page
    assert "1 trial: 0 passed, 1 failed (drift gate).</p>" in page
    row = re.search(r"<tr[^>]*><td>a</td>(.*?)</tr>", page)
    assert row, page
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))
    latest, best, trials = cells[0], cells[1], cells[2]
    assert latest.startswith("0.32<br><small class='at'>at <a href='../trials/" + second_a + ".html'")
    assert f">{commits[1][:8]} 20" in latest and f"title='commit {commits[1]}, trial {second_a}," in latest
    assert best.startswith("0.31<br><small class='at'>at ") and f">{commits[0][:8]} 20" in best, "a's best is its first"
    assert trials == "3 trials: 2 passed, 1 failed (drift gate)"
    assert f"{gated}</a> <span class='badge failed'>failed: drift gate</span>" in cells[-1]
    assert f">{commits[2][:8]} 20" in cells[-1], "the latest trial, whatever its outcome, at its commit"
    assert f"{commits[0][:8]} → {commits[1][:8]}" in cells[3], "the trend says which commits it compares"

    options = re.findall(r"<option value='(\d)' title='([0-9a-f]{40})'>([^<]*)</option>", page)
    assert [(v, c) for v, c, _ in options] == [("2", commits[2]), ("1", commits[1]), ("0", commits[0])]
    assert options[0][2].startswith(commits[2][:8]) and options[0][2].endswith(
        "1 trial: 0 passed, 1 failed (drift gate)"
    )
    newest = page.split("id='identities-2'")[1].split("</table>")[0]
    assert newest.count("<tr") == 2 and "<td>a</td><td class='num' data-v=''>–</td>" in newest, "its table: a failed"

    figure = _figure(page, "over-commits")
    failed = [t for t in figure["data"] if t["name"] == "failed (drift gate)"]
    assert len(failed) == 1 and failed[0]["marker"]["symbol"] == "x" and failed[0]["visible"] is True
    assert failed[0]["y"] == [pytest.approx(0.31 + 5)] and round(failed[0]["x"][0]) == 2, "at the third commit"
    assert failed[0]["customdata"] == [f"../trials/{gated}.html"]
    lines = [t for t in figure["data"] if t["mode"] == "lines+markers"]
    assert [t["visible"] for t in lines] == [True, True]
    ticks = figure["layout"]["xaxis"]["ticktext"]
    assert ticks[1].endswith("<br>2 passed") and ticks[2].endswith("<br>0 passed, <b>1 failed</b>"), ticks


NAMES = ("mid", "low", "huge", "high")  # a lookup dict's order, not an alphabetical one


def words_and_numbers(folder: Path) -> Path:
    """A store with a string parameter (as ``-e data.group="lorenz"`` records it) and a numeric one; its report."""
    store = SQLiteStore(folder)
    for i, rate in enumerate(NAMES * 2):
        group = '"lorenz"' if i < 4 else '"rossler & <co>"'
        record_trial(store, i, experiment="words", rate=rate, width=group, main=0.1 + 0.01 * i)
    for i, rate in enumerate(("0.5", "10", "2")):
        record_trial(store, 10 + i, experiment="numbers", rate=rate, width="w", main=0.2 + i)
    store.close()
    return build(folder)


def test_chart_texts_are_raw_and_axes_keep_the_run_order(tmp_path: Path) -> None:
    """``-e data.group="lorenz"`` shows as ``"lorenz"``; categories in the order first run, numbers on a number axis."""
    names = NAMES
    index = words_and_numbers(tmp_path / "trials")
    page = (index.parent / "experiments" / "words.html").read_text()
    for element in ("parameters", "over-commits"):
        script = re.search(rf"mitosisPlot\(\"{element}\",(.*?)\)</script>", page)
        assert script and "&quot;" not in script.group(1) and "&amp;quot;" not in script.group(1), element
    figure = _figure(page, "parameters")
    rate, width = figure["data"][0]["dimensions"][:2]
    assert rate["label"] == "s.rate" and rate["ticktext"] == list(names) and rate["tickvals"] == [3, 2, 1, 0]
    assert width["ticktext"] == ['"lorenz"', '"rossler & <co>"'], "plotly shows parcoords ticks as plain text"
    legend = [t["name"] for t in _figure(page, "over-commits")["data"]]
    assert 'rate=mid width="lorenz"' in legend and 'rate=mid width="rossler &amp; &lt;co&gt;"' in legend
    assert "<td>&#34;lorenz&#34;</td>" in page, "in HTML it is escaped, once"
    grouped = re.search(r"<script>mitosisGrouped\((.*?)\)</script>", page)
    assert grouped and "&quot;" not in grouped.group(1), "the grouped views' data: raw, escaped by the script"
    rate, width = json.loads(grouped.group(1))["params"]
    assert rate["values"] == list(names) and width["values"] == ['"lorenz"', '"rossler & <co>"'], "in the run order"
    numbers = _figure((index.parent / "experiments" / "numbers.html").read_text(), "parameters")
    axis = numbers["data"][0]["dimensions"][0]
    assert axis["values"] == [0.5, 10.0, 2.0] and "ticktext" not in axis, "a numeric parameter on a numeric axis"


def test_pytest_html_rows_link_the_notebook_and_show_the_first_figure(study: tuple[Path, dict[str, Run]]) -> None:
    root, runs = study
    report = (root.parent / "pytest-html" / "report.html").read_text()
    html = runs["first"].properties("exp[a]")["mitosis.html"]
    assert html in report
    assert "first figure" in report and "image/png" in report


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM or "/usr/bin/chromium"
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1400,1000",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or "/usr/bin/chromedriver"), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def screenshots(tmp_path: Path) -> Path:
    shots = Path(os.environ.get("MITOSIS_ARTIFACTS", tmp_path)) / "screenshots"  # kept by CI as artifacts
    shots.mkdir(parents=True, exist_ok=True)
    return shots


def shown(driver: Any) -> int:
    return int(driver.find_element(By.ID, "count").text)


needs_browser = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("MITOSIS_REQUIRE_BROWSER"),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)


@needs_browser
def test_the_report_in_a_real_headless_browser(
    study: tuple[Path, dict[str, Run]], browser: Any, tmp_path: Path
) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.support.ui import Select, WebDriverWait

    root, runs = study
    driver, shots = browser, screenshots(tmp_path)
    wait = WebDriverWait(driver, 20)
    first, second = (runs[r].properties("exp[a]")["mitosis.key"] for r in ("first", "second"))
    driver.get((root / "trials" / "report" / "index.html").as_uri())
    rows = driver.find_elements(By.CSS_SELECTOR, "#trials tbody tr")
    assert len(rows) == 5 and shown(driver) == 5
    driver.save_screenshot(str(shots / "index.png"))
    Select(driver.find_element(By.CSS_SELECTOR, "[data-filter='variants']")).select_by_value("b")
    visible = [r for r in rows if r.is_displayed()]
    assert len(visible) == 2 and all(r.find_elements(By.TAG_NAME, "td")[2].text == "b" for r in visible)
    assert shown(driver) == 2, "the count follows the filters"
    driver.save_screenshot(str(shots / "filtered.png"))
    Select(driver.find_element(By.CSS_SELECTOR, "[data-filter='variants']")).select_by_value("")
    hosts = Select(driver.find_element(By.CSS_SELECTOR, "[data-filter='host']"))
    assert [o.text for o in hosts.options] == ["all", socket.gethostname()]
    hosts.select_by_index(1)
    assert shown(driver) == 5
    hosts.select_by_index(0)
    sessions = Select(driver.find_element(By.CSS_SELECTOR, "[data-filter='session']"))
    keys = [runs[r].properties("exp[a]")["mitosis.session"] for r in ("gated", "second", "first")]  # newest first
    assert [o.get_attribute("value") for o in sessions.options] == ["", *keys]
    assert all(o.text.startswith(f"{k} 20") for o, k in zip(sessions.options[1:], keys)), "key and date"
    sessions.select_by_value(keys[2])
    visible = [r for r in rows if r.is_displayed()]
    assert shown(driver) == 2 and {r.find_elements(By.TAG_NAME, "td")[11].text for r in visible} == {
        runs["first"].properties(f"exp[{v}]")["mitosis.key"] for v in "ab"
    }, "the first session's two trials"
    sessions.select_by_value("")

    # the experiment page: the table, the charts, hover text, a click that opens the trial
    driver.find_element(By.LINK_TEXT, "exp").click()
    assert len(driver.find_elements(By.CSS_SELECTOR, "#identities tbody tr")) == 2
    assert driver.find_element(By.CSS_SELECTOR, "#identities tr.best td").text == "b", "lower is better: b's main"
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#over-commits .scatterlayer .point"))
    assert driver.find_elements(By.CSS_SELECTOR, "#parameters .parcoords") or driver.find_elements(
        By.CSS_SELECTOR, "#parameters svg"
    )
    commit_filter = Select(driver.find_element(By.ID, "commit-filter"))
    assert [o.get_attribute("value") for o in commit_filter.options] == ["", "2", "1", "0"], "newest first"
    assert commit_filter.options[1].text.endswith("1 trial: 0 passed, 1 failed (drift gate)")
    commit_filter.select_by_value("2")
    newest = driver.find_elements(By.CSS_SELECTOR, "#identities-2 tbody tr")
    assert [r.is_displayed() for r in newest] == [True] and not driver.find_element(By.ID, "identities").is_displayed()
    assert newest[0].text.startswith("a –"), newest[0].text
    x_range = "return document.getElementById('over-commits').layout.xaxis.range"
    assert driver.execute_script(x_range) == [pytest.approx(1.4), pytest.approx(2.6)], "zoomed to its column"
    driver.save_screenshot(str(shots / "experiment-commit.png"))
    commit_filter.select_by_value("")
    assert driver.find_element(By.ID, "identities").is_displayed()
    assert driver.execute_script(x_range) == [pytest.approx(-0.6), pytest.approx(2.6)]
    point = driver.find_elements(By.CSS_SELECTOR, "#over-commits .scatterlayer .trace:first-child .point")[-1]
    ActionChains(driver).move_to_element(point).perform()
    hover = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#over-commits .hoverlayer .hovertext"))
    text = hover.text
    assert "main " in text and "commit " in text and "trial " in text, text
    assert re.search(r"commit [0-9a-f]{8}", text) and re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", text), text
    driver.save_screenshot(str(shots / "experiment-hover.png"))
    traces = len(driver.find_elements(By.CSS_SELECTOR, "#over-commits .scatterlayer .trace"))
    driver.find_element(By.CSS_SELECTOR, "#over-commits .legend .traces:last-child .legendtoggle").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#over-commits .scatterlayer .trace")) == traces - 1)
    driver.find_element(By.CSS_SELECTOR, "#over-commits .legend .traces:last-child .legendtoggle").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#over-commits .scatterlayer .trace")) == traces)
    ActionChains(driver).move_to_element(point).click().perform()
    wait.until(lambda d: "/trials/" in d.current_url)
    hovered = re.search(r"trial ([0-9a-f]{8})", text)
    assert hovered and driver.current_url.endswith(f"/trials/{hovered.group(1)}.html"), (
        "the click opens the hovered trial"
    )

    # the trial page: figures from the notebook, the series charts
    driver.get((root / "trials" / "report" / "trials" / f"{second}.html").as_uri())
    image = driver.find_element(By.CSS_SELECTOR, ".figures img")
    assert driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth", image) > 100
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, ".chart .main-svg")) >= 2)
    driver.save_screenshot(str(shots / "trial.png"))
    driver.find_element(By.LINK_TEXT, "the executed notebook").click()
    assert driver.title.startswith("trial_exp-a-2")

    # compare two trials picked in the index
    driver.get((root / "trials" / "report" / "index.html").as_uri())
    for key in (first, second):
        driver.find_element(By.CSS_SELECTOR, f"input[type=checkbox][value='{key}']").click()
    button = driver.find_element(By.ID, "compare")
    assert button.text == "compare 2 trials"
    button.click()
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#comparison table"))
    table = driver.find_element(By.CSS_SELECTOR, "#comparison table").text
    assert "parameters: identical" in table and "seed" in table
    commits = [git(root, "rev-parse", c).strip()[:12] for c in ("HEAD~2", "HEAD~1")]
    assert f"commit {commits[0]} {commits[1]}" in table, table
    assert "main" in table and "loss" in table
    images = driver.find_elements(By.CSS_SELECTOR, "#comparison .side img")
    assert len(images) == 2 and all(driver.execute_script("return arguments[0].naturalWidth", i) > 100 for i in images)
    driver.save_screenshot(str(shots / "compare.png"))
    print(f"screenshots: {shots}")


@needs_browser
def test_the_report_reads_at_500_trials(browser: Any, tmp_path: Path) -> None:
    """500 trials of 50 identities over 10 commits: screenshots to judge, and the filters still count."""
    from selenium.webdriver.support.ui import Select, WebDriverWait

    store = SQLiteStore(tmp_path / "trials")
    for i in range(500):
        record_trial(
            store,
            i,
            commit=hashlib.sha1(b"%d" % (i // 50)).hexdigest(),  # a new commit every 50 trials
            host="alpha" if i % 3 else "beta",
            main=0.2 + 0.03 * (i % 10) + 0.05 * ((i // 10) % 5) - 0.01 * (i // 50) + random.Random(i).gauss(0, 0.01),
        )
    store.close()
    index = build(tmp_path / "trials")
    driver, shots = browser, screenshots(tmp_path)
    driver.get(index.as_uri())
    assert shown(driver) == 500
    Select(driver.find_element(By.CSS_SELECTOR, "[data-filter='host']")).select_by_value("beta")
    assert shown(driver) == 167
    driver.save_screenshot(str(shots / "index-500.png"))
    driver.get((index.parent / "experiments" / "exp.html").as_uri())
    rows = "#identities tbody tr"  # the page's script may still be sorting them when the page has loaded
    WebDriverWait(driver, 30).until(lambda d: len(d.find_elements(By.CSS_SELECTOR, rows)) >= 50)
    assert len(driver.find_elements(By.CSS_SELECTOR, rows)) == 50
    WebDriverWait(driver, 30).until(lambda d: d.find_elements(By.CSS_SELECTOR, "#over-commits .scatterlayer .point"))
    driver.save_screenshot(str(shots / "experiment-500.png"))
    driver.execute_script("document.getElementById('over-commits').scrollIntoView()")
    driver.save_screenshot(str(shots / "experiment-500-commits.png"))


@needs_browser
def test_chart_texts_show_as_written_in_a_real_browser(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    index = words_and_numbers(tmp_path / "trials")
    driver = browser
    driver.get((index.parent / "experiments" / "words.html").as_uri())
    wait = WebDriverWait(driver, 30)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#parameters .tick text"))
    elements = driver.find_elements(By.CSS_SELECTOR, "#parameters .tick text")
    ticks = [t.text for t in elements]
    assert '"lorenz"' in ticks and '"rossler & <co>"' in ticks, ticks
    rate = sorted((t.location["y"], t.text) for t in elements if t.text in NAMES)
    assert [text for _, text in rate] == list(NAMES), "the rate axis, top to bottom as first run"
    legend = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#over-commits .legendtext")]
    assert 'rate=mid width="lorenz"' in legend and 'rate=mid width="rossler & <co>"' in legend, legend
    assert not any("&quot;" in t or "&amp;" in t or "&lt;" in t for t in legend), legend
    groups = [t.text for t in driver.find_elements(By.CSS_SELECTOR, "#grouped-1 .xtick text")]
    assert groups == ['"lorenz"', '"rossler & <co>"'], "the grouped view's axis shows the values as written"
    driver.save_screenshot(str(screenshots(tmp_path) / "experiment-words.png"))
