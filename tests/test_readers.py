"""What a person reads back: history, show, diff, backup, the report, the Python API, the notebook header.

One module-scoped story of real sessions (two variants, two eval values, a reproduction)
serves every assertion; the readers run as the user runs them, in subprocesses.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest

from .conftest import Run, clean_env, git_init, run_pytest, write_investigation
from .pg_server import PgServer

MODULE = """
lookup = {
    "frequency": {"a": 1, "b": 2},
    "options": {"wide": {"width": 3, "kernel": list(range(60)), "note": "x" * 300, "last": "the field that differs"}},
}


def run(frequency, options=None, scale=1.0):
    return {"main": frequency * scale, "metrics": {"size": 2}}
"""

PYPROJECT = """
[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""


def cli(cwd: Path, *args: str, umask: int | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        env=clean_env(),
        timeout=120,
        preexec_fn=(lambda: os.umask(umask)) if umask is not None else None,
    )  # noqa: PLW1509


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Run]]:
    root = git_init(write_investigation(tmp_path_factory.mktemp("readers") / "study", PYPROJECT, {"exp": MODULE}))
    runs = {"first": run_pytest(root, "--mitosis", "--mitosis-seed", "5")}
    for scale in ("0.2", "2.0"):
        runs[scale] = run_pytest(
            root,
            "--mitosis",
            "--mitosis-param=exp.frequency=a",
            f"--mitosis-eval=exp.scale={scale}",
            "--mitosis-seed",
            "5",
        )
    original = runs["first"].properties("exp[a-wide]")["mitosis.key"]
    runs["reproduced"] = run_pytest(root, "--mitosis", "--mitosis-reproduce", original)
    for name, run in runs.items():
        assert run.ret == 0, f"{name}: {run.out}"
    return root, runs


def key(run: Run, name: str = "exp[a-wide]") -> str:
    return run.properties(name)["mitosis.key"]


def only(run: Run) -> str:
    (case,) = [c.get("name", "") for c in run.junit.iter("testcase")]  # type: ignore[union-attr]
    return run.properties(case)["mitosis.key"]


def session_of(run: Run) -> str:
    """The session key every trial of ``run`` carries in the junit XML (one key per run)."""
    assert run.junit is not None
    (found,) = {p.get("value") for p in run.junit.iter("property") if p.get("name") == "mitosis.session"}
    assert found is not None
    return found


def test_history_session_lists_every_session_newest_first(story: tuple[Path, dict[str, Run]]) -> None:
    import socket

    root, runs = story
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout[:8]
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    started = dict(db.execute("SELECT key, started FROM sessions").fetchall())
    ended = dict(db.execute("SELECT key, ended FROM sessions").fetchall())
    db.close()
    done = cli(root, "history", "--session")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert re.split(r"  +", lines[0]) == ["key", "started", "duration", "host", "commit", "status", "trials", "command"]
    xml = root.parent / "study-junit.xml"
    expected = []
    for name, trials, args in [
        ("reproduced", "1 passed", f"--mitosis --mitosis-reproduce {key(runs['first'])}"),
        ("2.0", "1 passed", "--mitosis --mitosis-param=exp.frequency=a --mitosis-eval=exp.scale=2.0 --mitosis-seed 5"),
        ("0.2", "1 passed", "--mitosis --mitosis-param=exp.frequency=a --mitosis-eval=exp.scale=0.2 --mitosis-seed 5"),
        ("first", "2 passed", "--mitosis --mitosis-seed 5"),
    ]:
        k = session_of(runs[name])
        seconds = round(ended[k] - started[k])
        expected.append(
            [
                k,
                datetime.fromtimestamp(started[k]).strftime("%Y-%m-%d %H:%M:%S"),
                f"{seconds}s" if seconds < 60 else f"{seconds // 60}m {seconds % 60:02d}s",
                socket.gethostname(),
                head,
                "exit 0 (ok)",
                trials,
                f"python -m pytest -p no:cacheprovider {args} --junitxml={xml}",
            ]
        )
    assert [re.split(r"  +", line, maxsplit=7) for line in lines[1:]] == expected
    # the terminal summary named each session, and how to find it again
    k = session_of(runs["first"])
    assert (
        f"mitosis session {k}: 2 trials (2 passed); python -m pytest_mitosis history --session {k}" in runs["first"].out
    )


def test_history_of_one_session_lists_its_trials_and_a_bad_key_is_one_line(story: tuple[Path, dict[str, Run]]) -> None:
    root, runs = story
    k = session_of(runs["first"])
    done = cli(root, "history", "--session", k[:6])
    assert done.returncode == 0, done.stderr
    header, command, blank, titles, *rows = done.stdout.splitlines()
    assert header.startswith(f"session {k}: started ") and header.endswith(", exit 0 (ok), 2 passed")
    assert command.startswith("command: python -m pytest -p no:cacheprovider --mitosis --mitosis-seed 5 --junitxml=")
    assert (blank, titles.split()[0]) == ("", "key")
    assert sorted(r.split()[0] for r in rows) == sorted([key(runs["first"]), key(runs["first"], "exp[b-wide]")])
    assert cli(root, "show", k).stdout == done.stdout, "show names a session by its key too"
    as_json = json.loads(cli(root, "history", "--session", k, "--json").stdout)
    assert (as_json["session"]["key"], as_json["session"]["exitstatus"], as_json["session"]["trials"]) == (
        k,
        0,
        {"passed": 2},
    )
    assert {t["session"] for t in as_json["trials"]} == {k} and len(as_json["trials"]) == 2
    bad = cli(root, "history", "--session", "zz")
    assert bad.returncode == 2 and bad.stdout == ""
    assert bad.stderr == (
        f"pytest-mitosis: no session has a key starting with 'zz' in {root / 'trials' / 'mitosis.sqlite'}; "
        "`python -m pytest_mitosis history --session` lists the sessions.\n"
    )


def test_the_report_filters_by_session_named_by_key_and_date(
    story: tuple[Path, dict[str, Run]], tmp_path: Path
) -> None:
    root, runs = story
    assert cli(root, "report", "-o", str(tmp_path / "site")).returncode == 0
    index = (tmp_path / "site" / "index.html").read_text()
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    started = db.execute("SELECT key, started FROM sessions ORDER BY started DESC").fetchall()
    db.close()
    options = "".join(
        f"<option value='{k}'>{k} {datetime.fromtimestamp(t):%Y-%m-%d %H:%M}</option>" for k, t in started
    )
    assert (
        "<label>session<select data-filter='session' onchange='filterRows()'><option value=''>all</option>"
        f"{options}</select></label>"
    ) in index
    first = session_of(runs["first"])
    tagged = re.findall(r"<tr [^>]*data-session='([0-9a-f]{8})'>.*?<a href='trials/([0-9a-f]{8})\.html'>", index)
    assert sorted(t for s, t in tagged if s == first) == sorted([key(runs["first"]), key(runs["first"], "exp[b-wide]")])
    page = (tmp_path / "site" / "trials" / f"{key(runs['first'])}.html").read_text()
    assert f"session <a href='../index.html#session={first}'>{first}</a>" in page


def test_reproductions_are_marked_in_history_show_json_and_the_report(story: tuple[Path, dict[str, Run]]) -> None:
    root, runs = story
    original, reproduction = key(runs["first"]), only(runs["reproduced"])
    table = cli(root, "history").stdout.splitlines()
    assert table[0].split()[-1] == "reproduces"
    (line,) = [row for row in table if row.startswith(reproduction)]
    assert line.endswith(f"{original} (reproduced)")
    assert all(row.endswith(" -") for row in table[1:] if not row.startswith(reproduction))
    rows = {r["key"]: r for r in json.loads(cli(root, "history", "--json").stdout)}
    assert (rows[reproduction]["reproduces"], rows[reproduction]["verdict"]) == (original, "reproduced")
    assert rows[original]["reproduces"] is None
    assert f"\nreproduces: trial {original} (reproduced)\n" in cli(root, "show", reproduction).stdout
    assert cli(root, "report").returncode == 0
    index = (root / "trials" / "report" / "index.html").read_text()
    assert f"<a href='trials/{original}.html'>{original}</a> (reproduced)" in index
    assert re.search(rf"<tr class='reproduction'[^>]*>.*?<a href='trials/{reproduction}\.html'>", index)
    page = (root / "trials" / "report" / "trials" / f"{reproduction}.html").read_text()
    assert "(reproduction)</h1>" in page and f"A reproduction of trial <a href='{original}.html'>{original}</a>" in page


def test_reproducing_an_experiment_picks_the_original_trials_not_earlier_reproductions(
    story: tuple[Path, dict[str, Run]],
) -> None:
    root, runs = story
    listed = run_pytest(root, "--mitosis", "--mitosis-reproduce", "exp", "--collect-only", "-q", junit=False)
    found = sorted(re.findall(r"reproduce\[([0-9a-f]{8})\]", listed.out))
    originals = sorted([key(runs["first"]), key(runs["first"], "exp[b-wide]"), only(runs["0.2"]), only(runs["2.0"])])
    assert found == originals, listed.out


def test_the_trials_folder_option_is_accepted_before_and_after_the_subcommand(
    story: tuple[Path, dict[str, Run]], tmp_path: Path
) -> None:
    root, _ = story
    before = cli(tmp_path, "--trials-folder", str(root / "trials"), "history")
    after = cli(tmp_path, "history", "--trials-folder", str(root / "trials"))
    assert after.returncode == 0, after.stderr
    assert after.stdout == before.stdout and after.stdout.count("\n") == 6


def test_history_of_an_unknown_experiment_says_so_and_lists_the_experiments(story: tuple[Path, dict[str, Run]]) -> None:
    root, _ = story
    done = cli(root, "history", "nosuch")
    assert done.returncode == 1
    assert done.stdout == ""
    assert (
        done.stderr
        == f"pytest-mitosis: no experiment 'nosuch' in {root / 'trials' / 'mitosis.sqlite'}; its experiments: exp\n"
    )


def test_diff_shows_main_once_and_an_eval_value_once(story: tuple[Path, dict[str, Run]]) -> None:
    root, runs = story
    out = cli(root, "diff", only(runs["0.2"]), only(runs["2.0"])).stdout
    assert "\n  exp.scale: 0.2  ->  2.0\n" in out, out
    assert out.count("main") == 1 and "\n  main: 0.2 -> 2.0\n" in out, out


def test_history_into_a_closed_pipe_exits_quietly(story: tuple[Path, dict[str, Run]], tmp_path: Path) -> None:
    root, _ = story
    many = tmp_path / "many"
    many.mkdir()
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    db.execute(f"VACUUM INTO '{many / 'mitosis.sqlite'}'")
    db.close()
    db = sqlite3.connect(many / "mitosis.sqlite")
    columns = [r[1] for r in db.execute("PRAGMA table_info(trials)")]
    row = db.execute("SELECT * FROM trials LIMIT 1").fetchone()
    at, iteration = columns.index("key"), columns.index("iteration")
    copies = []
    for i in range(1, 4000):
        copy = list(row)
        copy[at], copy[iteration] = f"{i:08x}", 1000 + i
        copies.append(copy)
    db.executemany(f"INSERT INTO trials VALUES ({','.join('?' * len(columns))})", copies)
    db.commit()
    db.close()
    script = f'{sys.executable} -m pytest_mitosis --trials-folder {many} history | head -1; echo "status=${{PIPESTATUS[0]}}" >&2'
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, env=clean_env(), timeout=120)
    assert done.stdout.startswith("key ")
    assert done.stderr == "status=141\n", done.stderr


def test_load_trials_decodes_values_and_a_record_prints_as_a_summary(story: tuple[Path, dict[str, Run]]) -> None:
    root, runs = story
    code = (
        "import pytest_mitosis\n"
        f"records = pytest_mitosis.load_trials('exp', {str(root / 'trials')!r})\n"
        f"record = [r for r in records if r.key == {key(runs['first'])!r}][0]\n"
        "values = {p['name']: p['value'] for p in record.params if p['kind'] != 'seed'}\n"
        "print(repr(values['options']['kernel'][:3]), values['options']['width'], values['frequency'])\n"
        "print(repr(record))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert done.returncode == 0, done.stderr
    values, summary = done.stdout.splitlines()
    assert values == "[0, 1, 2] 3 1"
    assert re.fullmatch(
        rf"TrialRecord\(key='{key(runs['first'])}', name='trial_exp-a-wide-1', experiment='exp', status='passed', "
        r"main=1\.0, started='[0-9T:-]+'\)",
        summary,
    ), summary


def test_report_pages_respect_the_umask(story: tuple[Path, dict[str, Run]], tmp_path: Path) -> None:
    root, _ = story
    done = cli(root, "report", "-o", str(tmp_path / "site"), umask=0o022)
    assert done.returncode == 0, done.stderr
    pages = list((tmp_path / "site").rglob("*.html"))
    assert len(pages) > 5
    assert {oct(p.stat().st_mode & 0o777) for p in pages} == {"0o644"}


def test_the_notebook_header_shows_long_values_in_full_folded(story: tuple[Path, dict[str, Run]]) -> None:
    _, runs = story
    html = Path(runs["first"].properties("exp[a-wide]")["mitosis.html"])
    header = "".join(json.loads(html.with_suffix(".ipynb").read_text())["cells"][0]["source"])
    (row,) = [line for line in header.splitlines() if line.startswith("| exp | options |")]
    summary = re.search(r"<details><summary><code>(.*?)</code></summary><code>(.*?)</code></details>", row)
    assert summary is not None, row
    assert "&#39;last&#39;: &#39;the field that differs&#39;" in summary.group(1), (
        "every first-level key, in the summary"
    )
    assert "&#39;note&#39;: &#39;" + "x" * 300 + "&#39;" in summary.group(2), "the full value, folded"
    assert "<details>" in html.read_text()


# -- the same story on PostgreSQL: migrate, then every reader through --store ----------------------


@pytest.fixture(scope="module")
def pg_story(story: tuple[Path, dict[str, Run]], pg_database: str) -> tuple[Path, str, str]:
    """The story's SQLite store copied into a PostgreSQL database with ``migrate`` (run twice)."""
    root, _ = story
    first = cli(root, "migrate", "--from", "sqlite:///trials/mitosis.sqlite", "--to", pg_database)
    assert first.returncode == 0, first.stderr
    return root, pg_database, first.stdout


def test_migrate_copies_every_trial_once_and_a_second_run_copies_nothing(
    pg_story: tuple[Path, str, str], pg_server: PgServer
) -> None:
    root, url, said = pg_story
    assert said == (
        f"migrate: 5 trials copied, 2 environment records, 5 variant locks and 4 sessions added, from "
        f"sqlite:///{root / 'trials' / 'mitosis.sqlite'} to {url}. Artifact folders stay where they are: readers "
        "find each trial's folder by name in their trials folder.\n"
    )
    again = cli(root, "migrate", "--from", "sqlite:///trials/mitosis.sqlite", "--to", url)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith(
        "migrate: 0 trials copied (5 were there already), 0 environment records, 0 variant locks and 0 sessions added"
    )
    database = url.split("/")[3].split("?")[0]
    db = sqlite3.connect(root / "trials" / "mitosis.sqlite")
    columns = "key, experiment, identity, iteration, name, status, main, folder, reproduces, verdict"
    mine = sorted(db.execute(f"SELECT {columns} FROM trials").fetchall())
    locks = sorted(db.execute("SELECT * FROM locks").fetchall())
    sessions = sorted(db.execute("SELECT * FROM sessions").fetchall())
    trial_sessions = sorted(db.execute("SELECT session FROM trials").fetchall())
    assert len(sessions) == 4 and len({s for (s,) in trial_sessions}) == 4
    db.close()
    assert sorted(pg_server.execute(f"SELECT {columns} FROM trials", database)) == mine
    assert sorted(pg_server.execute("SELECT * FROM locks", database)) == locks
    assert sorted(pg_server.execute("SELECT * FROM sessions", database)) == sessions
    assert sorted(pg_server.execute("SELECT session FROM trials", database)) == trial_sessions


@pytest.mark.parametrize(
    "command",
    [
        ["history"],
        ["history", "--json", "--debug"],
        ["show", "FIRST"],
        ["diff", "LOW", "HIGH"],
        ["history", "nosuch"],
        ["history", "--session"],
        ["history", "--session", "--json"],
        ["history", "--session", "SESSION"],
        ["show", "SESSION"],
        ["history", "--session", "0000"],
    ],
)
def test_every_reader_shows_the_same_on_both_backends(
    pg_story: tuple[Path, str, str], story: tuple[Path, dict[str, Run]], command: list[str]
) -> None:
    (root, runs), url = story, pg_story[1]
    names = {
        "FIRST": key(runs["first"]),
        "LOW": only(runs["0.2"]),
        "HIGH": only(runs["2.0"]),
        "SESSION": session_of(runs["first"]),
    }
    args = [names.get(a, a) for a in command]
    on_sqlite = cli(root, *args)
    on_postgres = cli(root, "--store", url, *args)
    assert on_postgres.returncode == on_sqlite.returncode, on_postgres.stderr
    assert on_postgres.stdout == on_sqlite.stdout
    sqlite_path = str(root / "trials" / "mitosis.sqlite")
    assert on_postgres.stderr == on_sqlite.stderr.replace(sqlite_path, url)


def test_the_api_and_the_report_read_a_postgresql_store(pg_story: tuple[Path, str, str], tmp_path: Path) -> None:
    root, url, _ = pg_story
    code = (
        "import pytest_mitosis\n"
        "a = [(r.key, r.main, r.iteration) for r in pytest_mitosis.load_trials('exp')]\n"
        f"b = [(r.key, r.main, r.iteration) for r in pytest_mitosis.load_trials('exp', store={url!r})]\n"
        "assert a == b and len(a) == 5, (a, b)\n"
        f"print(pytest_mitosis.load_metric(a[-1][0], 'size', store={url!r}))\n"
        f"print(len(pytest_mitosis.load_trial_data(a[-1][0], store={url!r})))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, env=clean_env())
    assert done.returncode == 0, done.stderr
    assert done.stdout == "2\n1\n"
    report = cli(root, "report", "--store", url, "-o", str(tmp_path / "site"))
    assert report.returncode == 0, report.stderr
    pages = sorted(p.stem for p in (tmp_path / "site" / "trials").glob("*.html"))
    assert len(pages) == 5


def test_sessions_on_the_migrated_store_continue_its_numbering(
    pg_story: tuple[Path, str, str], story: tuple[Path, dict[str, Run]]
) -> None:
    root, url, _ = pg_story
    runs = story[1]
    check = run_pytest(root, "--mitosis", "--mitosis-check", f"--mitosis-store={url}", junit=False)
    same = run_pytest(root, "--mitosis", "--mitosis-check", junit=False)
    assert check.ret == same.ret == 0, check.out
    lines = [line for line in check.out.splitlines() if line.startswith("pyproject.toml::exp[")]
    assert lines and lines == [line for line in same.out.splitlines() if line.startswith("pyproject.toml::exp[")]
    listed = run_pytest(
        root, "--mitosis", f"--mitosis-store={url}", "--mitosis-reproduce", "exp", "--collect-only", "-q", junit=False
    )
    assert f"reproduce[{key(runs['first'])}]" in listed.out, listed.out
    ran = run_pytest(root, "--mitosis", f"--mitosis-store={url}", "-k", "b-wide", "--mitosis-compare=last")
    assert ran.ret == 0, ran.out
    assert ran.properties("exp[b-wide]")["mitosis.iteration"] == "2"
    assert f"\nmitosis: store {url}\n" in ran.out, "the header names the store"
    assert ran.values("exp[b-wide]", "mitosis.compare"), "compared with the migrated trial"
    history = cli(root, "--store", url, "history").stdout
    assert history.count("\n") == 7 and cli(root, "history").stdout.count("\n") == 6, "the SQLite store was not written"


def test_a_bad_store_url_or_password_is_one_line_on_the_command_line(pg_server: PgServer, tmp_path: Path) -> None:
    bad = cli(tmp_path, "--store", "mysql://root:hunter2@db/x", "history")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert bad.stderr.startswith(
        "pytest-mitosis: the store URL 'mysql://root:***@db/x' is not one pytest-mitosis knows;"
    )
    wrong = cli(tmp_path, "--store", pg_server.url("postgres", "alice", "hunter2"), "history")
    assert wrong.returncode == 2 and wrong.stderr.count("\n") == 1, wrong.stderr
    assert wrong.stderr.startswith(
        f"pytest-mitosis: the trial store {pg_server.url('postgres', 'alice', '***')} cannot"
    )
    assert "hunter2" not in wrong.stderr and "Traceback" not in wrong.stderr
    root = git_init(write_investigation(tmp_path / "study", PYPROJECT, {"exp": MODULE}))
    session = run_pytest(root, "--mitosis", "--mitosis-store=postgresql://alice:hunter2@/x?host=/nowhere", junit=False)
    assert session.ret == pytest.ExitCode.USAGE_ERROR, session.out
    assert "\nmitosis: store postgresql://alice:***@/x?host=/nowhere\n" in session.out
    assert "ERROR: mitosis: the trial store postgresql://alice:***@/x?host=/nowhere cannot be reached: " in session.out
    assert "hunter2" not in session.out and "Traceback" not in session.out
