"""A store is a file a colleague can hand you: reading it never runs or writes anything it should not.

One real session records trials; every case copies that investigation (git repository, trials
folder, store), crafts the store with sqlite3 as an adversary would, runs a reader (the
command line, the report, the Python API or ``--mitosis-reproduce``) in a real process, and
asserts that nothing ran (a marker file a crafted command would create does not exist), that
a file outside keeps its bytes, and that nothing outside the trials folder changed.
"""

from __future__ import annotations

import hashlib
import json
import pickle
import re
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from .conftest import Run, clean_env, git, git_init, run_pytest, write_investigation

MODULE = """
lookup = {"frequency": {"a": 1, "b": 2}}


def run(frequency, scale=1.0, label="plain"):
    return {"main": frequency * scale, "metrics": {"label_length": len(label)}}
"""

PYPROJECT = """
[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""

SCRIPT = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def recorded(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run, Run]:
    root = git_init(write_investigation(tmp_path_factory.mktemp("hostile") / "study", PYPROJECT, {"exp": MODULE}))
    first = run_pytest(root, "--mitosis", "--mitosis-seed", "3")
    assert first.ret == 0, first.out
    named = run_pytest(root, "--mitosis", "-k", "a", f"--mitosis-eval=+exp.label='{SCRIPT}'")
    assert named.ret == 0, named.out
    return root, first, named


def test_a_hostile_eval_text_is_escaped_in_the_notebook_and_its_html(recorded: tuple[Path, Run, Run]) -> None:
    _, _, named = recorded
    html = Path(named.properties("exp[a]")["mitosis.html"])
    notebook = json.loads(html.with_suffix(".ipynb").read_text())
    header = "".join(notebook["cells"][0]["source"])
    # the expression as entities; its value in a code span, which markdown shows as text
    assert "| &#39;&#60;script&#62;alert(1)&#60;/script&#62;&#39; | `'<script>alert(1)</script>'` |" in header
    page = html.read_text()
    assert "<script>alert(1)" not in page, "the eval text became HTML"
    assert "alert(1)" in page, "the text is still shown"


# -- the table of hostile stores -------------------------------------------------------------------


@dataclass
class Study:
    """A copy of the recorded investigation, the paths an attack aims at, and the store."""

    root: Path
    trials: Path
    outside: Path  # a file outside the trials folder that must keep its bytes
    marker: Path  # a file a crafted command would create
    keys: dict[str, str]  # "a", "b" -> keys of the first session's trials; "named": the newest trial of a

    @property
    def store(self) -> Path:
        return self.trials / "mitosis.sqlite"

    def update(self, target: str, **columns: object) -> None:
        db = sqlite3.connect(self.store)
        for column, value in columns.items():
            db.execute(f'UPDATE trials SET "{column}" = ? WHERE key = ?', (value, target))
        db.commit()
        db.close()

    def row(self, key: str) -> dict[str, object]:
        db = sqlite3.connect(self.store)
        db.row_factory = sqlite3.Row
        found = dict(db.execute("SELECT * FROM trials WHERE key = ?", (key,)).fetchone())
        db.close()
        return found

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest_mitosis", *args],
            cwd=self.root,
            capture_output=True,
            text=True,
            env=clean_env(),
            timeout=120,
        )

    def reproduce(self, key: str, *extra: str) -> Run:
        return run_pytest(self.root, "--mitosis", "--mitosis-reproduce", key, *extra, junit=False)


def _snapshot(top: Path, skip: Path) -> dict[str, str]:
    """Every file and folder under ``top`` except the trials folder and git's own bookkeeping."""
    found = {}
    for path in sorted(top.rglob("*")):
        if path == skip or skip in path.parents or ".git" in path.relative_to(top).parts:
            continue
        found[str(path.relative_to(top))] = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "dir"
    return found


def _params(study: Study, key: str) -> list[dict[str, object]]:
    return json.loads(str(study.row(key)["params"]))


def git_option_commit_in_diff(s: Study) -> str:
    s.update(s.keys["a"], commit=f"--output={s.outside}")
    out = s.cli("diff", s.keys["a"], s.keys["b"]).stdout
    assert "is not a git object name: not passed to git" in out, out
    return out


def git_option_commit_in_reproduce(s: Study) -> str:
    s.update(s.keys["a"], commit=f"--output={s.outside}")
    run = s.reproduce(s.keys["a"])
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.out
    assert (
        "which is not a git object name (hex digits): the store was edited or is not ours. Nothing was run." in run.out
    )
    return run.out


def step_os_system(s: Study) -> str:
    steps = [{"name": "exp", "function": "os:system", "lookup": None}]
    params = [
        {
            "step": "exp",
            "name": "command",
            "kind": "eval",
            "text": repr(f"touch {s.marker}"),
            "tracked": True,
            "repr": "",
            "fingerprint": "x",
            "value": None,
        }
    ]
    s.update(s.keys["a"], steps=json.dumps(steps), params=json.dumps(params))
    run = s.reproduce(s.keys["a"])
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.out
    assert (
        f"cannot reproduce trial trial_exp-a-1 (key {s.keys['a']}): step 'exp' is exp:run with exp:lookup there, "
        "but the record says 'os:system'. A reproduction runs only the steps that pyproject.toml declares at "
        "commit "
    ) in run.out, run.out
    return run.out


def lookup_swapped(s: Study) -> str:
    steps = [{"name": "exp", "function": "exp:run", "lookup": "os:environ"}]
    s.update(s.keys["a"], steps=json.dumps(steps))
    run = s.reproduce(s.keys["a"])
    assert "but the record says 'exp:run' with 'os:environ'" in run.out, run.out
    return run.out


def eval_text_runs_a_command(s: Study) -> str:
    params = _params(s, s.keys["a"])
    params.append(
        {
            "step": "exp",
            "name": "scale",
            "kind": "eval",
            "tracked": True,
            "repr": "1",
            "text": f"__import__('os').system('touch {s.marker}') or 1",
            "fingerprint": "x",
            "value": None,
        }
    )
    s.update(s.keys["a"], params=json.dumps(params))
    run = s.reproduce(s.keys["a"])
    assert run.ret == pytest.ExitCode.TESTS_FAILED, run.out
    assert (
        "is not declared for experiment 'exp' there and is not a plain literal, so it is not evaluated from a store"
        in run.out
    )
    return run.out


def parameter_name_is_code(s: Study) -> str:
    params = _params(s, s.keys["a"])
    params[0] = {**params[0], "name": f"x')]; __import__('os').system('touch {s.marker}'); ('"}
    s.update(s.keys["a"], params=json.dumps(params))
    run = s.reproduce(s.keys["a"])
    assert "is not one pytest-mitosis writes" in run.out, run.out
    return run.out


def name_escapes_the_trials_folder(s: Study) -> str:
    s.update(s.keys["a"], name="trial_x/../../../../escaped-1")
    run = s.reproduce(s.keys["a"])
    assert "is not a trial name (trial_..., no '/')" in run.out, run.out
    return run.out


def report_key_escapes_the_report_folder(s: Study) -> str:
    s.update(s.keys["a"], key="../../../../x")
    done = s.cli("report")
    assert done.returncode == 0, done.stderr
    index = (s.trials / "report" / "index.html").read_text()
    assert "../../../../x (not a key: no page)" in index.replace("&#39;", "'").replace("&amp;", "&")
    return index


def report_folder_is_a_javascript_link(s: Study) -> str:
    s.update(s.keys["a"], folder="javascript:alert(document.cookie)//")
    done = s.cli("report")
    assert done.returncode == 0, done.stderr
    pages = "".join(p.read_text() for p in (s.trials / "report").rglob("*.html"))
    assert "javascript:" not in pages.replace("javascript:alert(document.cookie)// (not found inside", "")
    return pages


def report_folder_lists_another_directory(s: Study) -> str:
    secret = s.outside.parent / "private"
    secret.mkdir()
    (secret / "id_rsa_of_someone").write_text("secret")
    s.update(s.keys["a"], folder=str(secret))
    done = s.cli("report")
    shown = s.cli("show", s.keys["a"]).stdout
    pages = "".join(p.read_text() for p in (s.trials / "report").rglob("*.html"))
    assert done.returncode == 0, done.stderr
    assert "id_rsa_of_someone" not in pages and "id_rsa_of_someone" not in shown, shown
    assert f"{secret} (not found inside {s.trials})" in shown
    return shown


#: the batch job of a trial (a Slurm array task), as the store keeps it
JOB = {
    "executor": "slurm",
    "job": "1234_5",
    "array_job": "1234",
    "task": 5,
    "node": "node01",
    "partition": "debug",
    "allocation": "cpu=1",
    "restarts": 0,
    "state": "COMPLETED",
}


def terminal_escape_in_names(s: Study) -> str:
    s.update(s.keys["a"], name="trial_\x1b]0;owned\x07\x1b[2J", experiment="exp\x1b[31m", variants="a\rb")
    s.update(s.keys["a"], job=json.dumps({**JOB, "job": "1234\r5", "node": "node\x1b[2J", "partition": "x\ny"}))
    out = "".join(
        s.cli(*args).stdout for args in (["history"], ["show", s.keys["a"]], ["diff", s.keys["a"], s.keys["b"]])
    )
    assert "\x1b" not in out and "\x07" not in out and "\r" not in out
    assert "trial_\\x1b]0;owned\\x07\\x1b[2J" in out, out  # shown as escapes: what is there, without its effect
    assert "exp\\x1b[31m" in out and "a\\rb" in out
    assert "  1234\\r5@node\\x1b[2J  " in out, "the history's job column"
    assert "\njob:      slurm 1234\\r5 on node\\x1b[2J (partition x\\ny; cpu=1)\n" in out, "show's job line"
    return out


FAKE = "2026-01-01 00:00  fake  passed"


def newline_in_names_adds_no_row(s: Study) -> str:
    """A newline in a recorded name splits no row and adds no fake row: not to ``history``, its sessions, ``show``."""
    a, b = s.keys["a"], s.keys["b"]
    s.update(a, variants="a\nb", name=f"trial_x\n{FAKE}")
    s.update(b, variants=f"x\n{FAKE}", experiment="exp\tb")
    session = str(s.row(a)["session"])
    db = sqlite3.connect(s.store)
    db.execute("UPDATE sessions SET host = ?, command = ? WHERE key = ?", (f"lab\n{FAKE}", f"pytest\n{FAKE}", session))
    db.commit()
    trials = db.execute("SELECT count(*) FROM trials WHERE debug = 0").fetchone()[0]
    sessions = db.execute("SELECT count(*) FROM sessions").fetchone()[0]
    of_session = db.execute("SELECT count(*) FROM trials WHERE session = ?", (session,)).fetchone()[0]
    db.close()
    escaped = f"\\n{FAKE}"  # the newline as the two characters \\ and n, the fake row's text after it
    shown = {}
    for args in (["history"], ["history", "--session"], ["history", "--session", session], ["show", a]):
        done = s.cli(*args)
        assert done.returncode == 0, done.stderr
        lines = done.stdout.splitlines()
        assert not [line for line in lines if FAKE in line and escaped not in line], done.stdout
        assert not [line for line in lines if line.startswith(("2026", "fake", "passed"))], done.stdout
        shown[" ".join(args)] = lines
    history = shown["history"]
    assert len(history) == 1 + trials, "a header and one line per trial"
    row_a = [line for line in history if line.startswith(a)]
    row_b = [line for line in history if line.startswith(b)]
    assert len(row_a) == 1 and "  a\\nb  " in row_a[0] and "  passed  " in row_a[0], history
    assert len(row_b) == 1 and "  exp\\tb  " in row_b[0] and f"  x{escaped}  " in row_b[0], history
    listed = shown["history --session"]
    assert len(listed) == 1 + sessions, "a header and one line per session"
    assert [line for line in listed if line.startswith(session)][0].count(escaped) == 2, listed  # host, command
    own = shown[f"history --session {session}"]
    assert f"host lab{escaped}, commit " in own[0] and own[1] == f"command: pytest{escaped}", own
    assert own[2] == "" and len(own) == 3 + 1 + of_session, "two header lines, a blank, the trials' table"
    show = shown[f"show {a}"]
    assert show[0] == f"trial trial_x{escaped} (key {a})", show
    return "\n".join(history + listed + own + show)


#: a name that would close the ``<script>`` element of a page's chart data and open one of its own
BREAKOUT = "</script><script>alert(2)</script>"
#: every script element a report page may hold: our files, or a call of report.js with JSON
OURS = re.compile(
    r"<script src='(\.\./)?assets/(plotly\.min|report)\.js'></script>"
    r"|<script>(mitosisPlot|mitosisGrouped|document\.addEventListener)\([^<]*</script>"
)


def html_in_names_of_the_report(s: Study) -> str:
    """Recorded texts as HTML in every kind of page: escaped as text, never a tag; JSON never closes its script.

    The experiment's name, a trial's name and variants, an eval value (the ``named`` trial's
    ``label``, recorded as the session gave it), a metric's name and value, a series named to
    close its chart's ``<script>``, a failure message and a warning: on the index, the
    experiment page, each trial page, the compare page and the page of the ``compare`` command.
    """
    a, b, named = s.keys["a"], s.keys["b"], s.keys["named"]
    for key in (a, b, named):  # one experiment: its page shows the varying label and the grouped views
        s.update(key, experiment=SCRIPT)
    s.update(a, name=f"trial_{SCRIPT}", variants=SCRIPT, message=SCRIPT, warnings=json.dumps([SCRIPT]))
    s.update(b, metrics=json.dumps({SCRIPT: 1.5, "note": SCRIPT, BREAKOUT: [1.0, 2.0, 3.0]}))
    s.update(a, job=json.dumps({**JOB, "job": SCRIPT, "node": BREAKOUT, "partition": SCRIPT, "allocation": SCRIPT}))
    assert SCRIPT in json.dumps(_params(s, named)), "the named trial's eval value is the script"
    shutil.rmtree(s.trials / "report")  # the sessions' pages: a trial's page is written once, from the store as it was
    done = s.cli("report")
    assert done.returncode == 0, done.stderr
    compared = s.cli("compare", a, b)
    assert compared.returncode == 0, compared.stderr
    report = s.trials / "report"
    kinds = {
        "index": [report / "index.html"],
        "experiment": list((report / "experiments").glob("*.html")),
        "trial": [report / "trials" / f"{key}.html" for key in (a, b, named)],
        "compare": [report / "compare.html", *(report / "compare").glob("*.html")],
    }
    assert [len(pages) for pages in kinds.values()] == [1, 1, 3, 2], kinds
    escaped = "&lt;script&gt;alert(1)&lt;/script&gt;"
    for kind, pages in kinds.items():
        for page in pages:
            text = page.read_text()
            assert SCRIPT not in text and "alert(2)</script>" not in text, page
            assert OURS.sub("", text).count("<script") == 0, f"{page}: a script element that is not the report's"
            assert kind == "compare" or escaped in text, f"{page}: the recorded text is shown, as text"
    trial_a, trial_b, trial_named = (page.read_text() for page in kinds["trial"])
    assert f"<h1>trial_{escaped}</h1>" in trial_a, "a trial's name"
    assert f"<pre class='wrap'>{escaped}</pre>" in trial_a, "the failure message and the warning"
    breakout = "&lt;/script&gt;&lt;script&gt;alert(2)&lt;/script&gt;"
    job = f"· job slurm {escaped} on {breakout} (partition {escaped}; {escaped})"
    assert job in " ".join(trial_a.split()), "the job, where the trial's seed and session are"
    assert f"<td>{escaped}@{breakout}</td>" in kinds["index"][0].read_text(), "the index's job column"
    assert f"<td>{escaped}</td><td class='num'>1.5</td>" in trial_b, "a metric's name"
    assert f"<td>note</td><td class='num'>{escaped}</td>" in trial_b, "a metric's value"
    chart = "\\u0026lt;/script\\u0026gt;\\u0026lt;script\\u0026gt;alert(2)"  # escaped for plotly, then for the script
    assert chart in trial_b, "the series' name in its chart's JSON"
    assert f"<td>&#39;{escaped}&#39;</td>" in trial_named, "the eval value"
    experiment = kinds["experiment"][0].read_text()
    assert f"<td>&#39;{escaped}&#39;</td>" in experiment, "the eval value as the label column's cell"
    grouped = "\\u003cscript\\u003ealert(1)\\u003c/script\\u003e"  # raw in the data, which the script escapes
    assert "mitosisGrouped(" in experiment and grouped in experiment, "and in the grouped views' data"
    assert not list((s.trials / "report" / "experiments").glob("*<*")), "an experiment's page name is sanitised"
    return "".join(page.read_text() for pages in kinds.values() for page in pages)


def pickle_outside_the_trials_folder(s: Study) -> str:
    elsewhere = s.outside.parent / "planted" / "results"
    elsewhere.mkdir(parents=True)

    class Plant:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (__import__("os").system, (f"touch {s.marker}",))

    (elsewhere / "step-1-exp.pickle").write_bytes(pickle.dumps(Plant()))
    s.update(s.keys["a"], folder=str(elsewhere.parent))
    code = (
        f"import pytest_mitosis\nfrom pytest_mitosis.store import RecordsError\ntry:\n    pytest_mitosis.load_trial_data({s.keys['a']!r}, {str(s.trials)!r})\n"
        "except RecordsError as err:\n    print(err)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=clean_env(), timeout=60)
    assert f"its folder {elsewhere.parent} is not inside {s.trials}" in done.stdout, done.stdout + done.stderr
    return done.stdout


def reproduction_of_a_forged_key(s: Study) -> str:
    s.update(s.keys["named"], key="zz; touch x")
    run = run_pytest(s.root, "--mitosis", "--mitosis-reproduce", "exp", junit=False)
    assert "holds a trial whose key 'zz; touch x' is not a pytest-mitosis key (8 hex digits)" in run.out, run.out
    return run.out


def seed_that_is_not_a_number(s: Study) -> str:
    s.update(s.keys["a"], seed="1; touch x")
    run = s.reproduce(s.keys["a"])
    assert "its seed '1; touch x' is not an integer" in run.out, run.out
    return run.out


CASES: dict[str, Callable[[Study], str]] = {
    f.__name__: f
    for f in (
        git_option_commit_in_diff,
        git_option_commit_in_reproduce,
        step_os_system,
        lookup_swapped,
        eval_text_runs_a_command,
        parameter_name_is_code,
        name_escapes_the_trials_folder,
        report_key_escapes_the_report_folder,
        report_folder_is_a_javascript_link,
        report_folder_lists_another_directory,
        terminal_escape_in_names,
        newline_in_names_adds_no_row,
        html_in_names_of_the_report,
        pickle_outside_the_trials_folder,
        reproduction_of_a_forged_key,
        seed_that_is_not_a_number,
    )
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_store_runs_nothing_and_writes_nothing_outside_the_trials_folder(
    case: str, recorded: tuple[Path, Run, Run], tmp_path: Path
) -> None:
    source, first, named = recorded
    top = tmp_path / "home"
    shutil.copytree(source, top / "study", symlinks=True)
    outside = top / "notes.txt"
    outside.write_text("a file of the user's that no reader may change\n")
    study = Study(
        top / "study",
        top / "study" / "trials",
        outside,
        top / "MARKER",
        {
            **{v: first.properties(f"exp[{v}]")["mitosis.key"] for v in ("a", "b")},
            "named": named.properties("exp[a]")["mitosis.key"],
        },
    )
    before = _snapshot(top, study.trials)
    CASES[case](study)
    assert not study.marker.exists(), "a crafted command ran"
    assert outside.read_text() == "a file of the user's that no reader may change\n"
    after = _snapshot(top, study.trials)
    assert after == before or set(after) - set(before) <= {
        "private",
        "private/id_rsa_of_someone",
        "planted",
        "planted/results",
        "planted/results/step-1-exp.pickle",
    }
    assert {k: v for k, v in after.items() if k in before} == before, "nothing outside the trials folder changed"
    assert git(study.root, "worktree", "list").count("\n") == 1, "no worktree was checked out for a refused record"
    changed = [line for line in git(study.root, "status", "--porcelain").splitlines() if line != "?? trials/"]
    assert changed == [], "the work tree is as it was"


@pytest.mark.parametrize(
    ("column", "value", "said"),
    [
        ("git", "{not json", "its git column: Expecting property name enclosed in double quotes"),
        ("started", "yesterday", "its started column:"),
        ("directions", "[1", "its directions column:"),
        ("params", '{"a": 1}', "its params is a dict, not a list"),
        ("job", '{"job": "1234_5"', "its job column:"),
        ("job", '["1234_5"]', "its job is a list, not a dict"),
    ],
)
def test_a_row_of_another_shape_is_an_error_naming_the_trial_never_a_traceback(
    tmp_path: Path, column: str, value: str, said: str
) -> None:
    """A store edited by hand (a column of another type, JSON that does not parse) is read by every reader
    as an error that names the trial and the column, with what to do; nothing is written."""
    from pytest_mitosis.store import NewTrial, SQLiteStore

    trials = tmp_path / "trials"
    store = SQLiteStore(trials)
    store.begin(
        NewTrial(
            "abcd1234", "exp", "[]", "a", "trial_exp-a", "pyproject.toml::exp[a]", False, {"commit": None}, 1, {},
            [{"name": "exp", "function": "m:f", "lookup": None}], [],
        ),
        (),
    )  # fmt: skip
    store.finish("abcd1234", status="passed", main=1, metrics={}, folder=None, message=None)
    store.close()
    db = sqlite3.connect(trials / "mitosis.sqlite")
    db.execute(f'UPDATE trials SET "{column}" = ?', (value,))
    db.commit()
    db.close()
    before = (trials / "mitosis.sqlite").read_bytes()
    for command in (["history"], ["show", "abcd"], ["best"], ["report", "-o", str(tmp_path / "site")]):
        done = subprocess.run(
            [sys.executable, "-m", "pytest_mitosis", "--trials-folder", str(trials), *command],
            capture_output=True,
            text=True,
            env=clean_env(),
        )
        assert done.returncode == 2, (command, done.stdout, done.stderr)
        assert done.stderr.startswith(
            f"pytest-mitosis: trial 'abcd1234' in {trials / 'mitosis.sqlite'} is not as pytest-mitosis records trials"
        ), done.stderr
        assert said in done.stderr and "Restore it from a backup, or move that row aside." in done.stderr
        assert "Traceback" not in done.stderr
    assert (trials / "mitosis.sqlite").read_bytes() == before, "nothing written"
