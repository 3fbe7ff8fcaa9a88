"""Metric series, the static report (opened in a real headless browser) and pytest-html links."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pytest_mitosis

from .conftest import Run, git, git_init, run_pytest, write_investigation

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
    index = root / "trials" / "report" / "index.html"
    assert f"report: {index}" in runs["second"].out
    text = index.read_text()
    assert text.count("<tr class=") == 4, "one row per (non-debug) trial"
    assert "http://" not in text and "https://" not in text, "nothing is fetched from the internet"
    for key in (runs[r].properties(n)["mitosis.key"] for r in ("first", "second") for n in ("exp[a]", "exp[b]")):
        assert (root / "trials" / "report" / "trials" / f"{key}.html").is_file()


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
    assert text.count("<tr class=") == 5
    assert "<tr class='debug'" in text


def test_the_trial_page_shows_series_and_the_difference_to_the_previous_trial(
    study: tuple[Path, dict[str, Run]],
) -> None:
    root, runs = study
    key = runs["second"].properties("exp[a]")["mitosis.key"]
    page = (root / "trials" / "report" / "trials" / f"{key}.html").read_text()
    assert page.count("<svg") == 2, "one plot per series"
    assert "Since the previous trial of this identity" in page
    assert "seed:" in page and "code: commit" in page


def test_pytest_html_rows_link_the_notebook_and_show_the_first_figure(study: tuple[Path, dict[str, Run]]) -> None:
    root, runs = study
    report = (root.parent / "pytest-html" / "report.html").read_text()
    html = runs["first"].properties("exp[a]")["mitosis.html"]
    assert html in report
    assert "first figure" in report and "image/png" in report


@pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER) and not os.environ.get("MITOSIS_REQUIRE_BROWSER"),
    reason="needs Debian's chromium and chromium-driver (.ci/run installs them)",
)
def test_the_report_in_a_real_headless_browser(study: tuple[Path, dict[str, Run]], tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    root, runs = study
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
        "--window-size=1200,900",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER or "/usr/bin/chromedriver"), options=options)
    shots = Path(os.environ.get("MITOSIS_ARTIFACTS", tmp_path)) / "screenshots"  # kept by CI as artifacts
    shots.mkdir(parents=True, exist_ok=True)
    try:
        driver.get((root / "trials" / "report" / "index.html").as_uri())
        rows = driver.find_elements(By.CSS_SELECTOR, "#trials tbody tr")
        assert len(rows) == 4
        driver.save_screenshot(str(shots / "index.png"))
        Select(driver.find_element(By.CSS_SELECTOR, "[data-filter='variants']")).select_by_value("b")
        visible = [r for r in rows if r.is_displayed()]
        assert len(visible) == 2 and all(r.find_elements(By.TAG_NAME, "td")[1].text == "b" for r in visible)
        driver.save_screenshot(str(shots / "filtered.png"))
        driver.find_element(By.LINK_TEXT, "exp").click()
        plots = driver.find_elements(By.TAG_NAME, "svg")
        assert len(plots) == 2
        assert all(plot.find_elements(By.TAG_NAME, "circle") for plot in plots), "every plot drew its points"
        driver.save_screenshot(str(shots / "experiment.png"))
        driver.back()
        key = runs["second"].properties("exp[a]")["mitosis.key"]
        driver.find_element(By.LINK_TEXT, key).click()
        driver.find_element(By.LINK_TEXT, "the executed notebook").click()
        assert driver.title.startswith("trial_exp-a-2")
        assert driver.find_elements(By.CSS_SELECTOR, "img[src^='data:image/png']"), "the notebook page shows its figure"
        driver.save_screenshot(str(shots / "notebook.png"))
    finally:
        driver.quit()
    print(f"screenshots: {shots}")
