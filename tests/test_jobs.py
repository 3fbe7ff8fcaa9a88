"""The batch job that ran a trial (issue 27: a Slurm array task) in its record and in every view.

No Slurm here: the records are written through the real stores' API with the job dict the Slurm
executor fills (as ``tests/test_store.py`` writes records), on SQLite and on the real PostgreSQL
server, and read back by the real command line in a subprocess, the report, the Python API,
``status`` and the progress line of a real pytest session. The wire's refusals of a crafted job
are in ``tests/test_hostile_worker.py``, a crafted store's job in ``tests/test_hostile_store.py``.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from pytest_mitosis.store import SCHEMA_VERSION

from .conftest import clean_env, run_pytest
from .pg_server import PgServer
from .test_store import Backend

JOB = {
    "executor": "slurm",
    "job": "1234_5",
    "array_job": "1234",
    "task": 5,
    "node": "node01",
    "partition": "debug",
    "allocation": "cpu=1,mem=500M,node=1",
    "restarts": 1,
    "state": "COMPLETED",
}
#: a task that never ran anywhere: what Slurm leaves unknown is null (or empty, as sacct prints it)
QUEUED = {**JOB, "job": "1234_6", "task": 6, "node": None, "partition": None, "allocation": "", "restarts": 0}
JOB_LINE = "job:      slurm 1234_5 on node01 (partition debug; cpu=1,mem=500M,node=1), requeued 1 time"


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Backend:
    if request.param == "sqlite":
        return Backend("sqlite", None)
    server: PgServer = request.getfixturevalue("pg_server")
    return Backend("postgresql", server.createdb("jobs"))


def _trial(key: str, experiment: str = "exp", variant: str = "a") -> Any:
    from pytest_mitosis.store import NewTrial

    return NewTrial(
        key, experiment, f'[["exp", "v", "lookup", "{variant}"]]', variant, f"trial_{experiment}-{variant}",
        f"pyproject.toml::{experiment}[{variant}]", False, {"commit": None}, 1, {"hostname": "login1"},
        [{"name": "exp", "function": "m:f", "lookup": None}], [],
    )  # fmt: skip


def _record(store: Any, key: str, job: dict[str, Any] | None, **trial: str) -> None:
    """A trial begun and finished through the store's API, as the controller records a job's outcome."""
    store.begin(_trial(key, **trial), ())
    store.finish(key, status="passed", main=1.5, metrics={}, folder=None, message=None, job=job)


def _cli(trials: Path, backend: Backend, *args: str) -> subprocess.CompletedProcess[str]:
    store = ["--store", backend.url] if backend.url else []
    return subprocess.run(
        [sys.executable, "-m", "pytest_mitosis", "--trials-folder", str(trials), *store, *args],
        cwd=trials.parent,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def _out(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_a_trial_s_job_is_recorded_and_read_back_by_show_history_json_and_migrate(
    tmp_path: Path, backend: Backend
) -> None:
    from pytest_mitosis.store import Reader, make_store
    from pytest_mitosis.store.migrate import migrate
    from pytest_mitosis.store.url import parse

    trials = tmp_path / "trials"
    store = make_store(backend.url, trials)
    _record(store, "0000aaaa", JOB)
    _record(store, "0000bbbb", QUEUED, variant="b")
    _record(store, "0000cccc", None, experiment="local")  # a trial of the session's own processes
    store.close()
    (row_a, row_b, row_c) = backend.rows(trials)
    assert json.loads(row_a["job"]) == JOB and json.loads(row_b["job"]) == QUEUED and row_c["job"] is None
    with Reader(trials, backend.url) as reader:
        assert {r.key: r.job for r in reader.trials()} == {"0000aaaa": JOB, "0000bbbb": QUEUED, "0000cccc": None}

    shown = _out(_cli(trials, backend, "show", "0000aaaa")).splitlines()
    assert JOB_LINE in shown and shown.index(JOB_LINE) == shown.index("seed: 1") + 1, shown
    queued = _out(_cli(trials, backend, "show", "0000bbbb")).splitlines()
    assert "job:      slurm 1234_6" in queued, "no node, partition, allocation or requeue to speak of"
    assert not [line for line in _out(_cli(trials, backend, "show", "0000cccc")).splitlines() if "job" in line]
    as_json = json.loads(_out(_cli(trials, backend, "show", "0000aaaa", "--json")))
    assert (as_json["key"], as_json["job"], as_json["host"]) == ("0000aaaa", JOB, "login1")

    history = _out(_cli(trials, backend, "history")).splitlines()
    assert re.split(r"\s{2,}", history[0]) == [
        "key", "experiment", "variants", "iteration", "status", "main", "seed", "commit", "host", "job", "date",
    ]  # fmt: skip
    rows = {line[:8]: re.split(r"\s{2,}", line) for line in history[1:]}
    assert [rows[k][9] for k in ("0000aaaa", "0000bbbb", "0000cccc")] == ["1234_5@node01", "1234_6", "-"]
    local = _out(_cli(trials, backend, "history", "local")).splitlines()
    assert "job" not in local[0].split() and len(local) == 2, "no job column when no listed trial ran as a job"
    listed = {r["key"]: r["job"] for r in json.loads(_out(_cli(trials, backend, "history", "--json")))}
    assert listed == {"0000aaaa": JOB, "0000bbbb": QUEUED, "0000cccc": None}

    copy = tmp_path / "copy.sqlite"
    source = parse(backend.url) if backend.url else parse(f"sqlite:///{trials / 'mitosis.sqlite'}")
    migrate(source, parse(f"sqlite:///{copy}"))
    with Reader(tmp_path, f"sqlite:///{copy}") as reader:
        assert {r.key: r.job for r in reader.trials()} == {"0000aaaa": JOB, "0000bbbb": QUEUED, "0000cccc": None}


def test_a_store_of_version_4_is_read_as_it_is_then_gains_the_job_column(tmp_path: Path, backend: Backend) -> None:
    """Schema 4 → 5: a reader leaves a version-4 store as it is (its trials have no job); a writer adds the
    column in the transaction that checks the version, the old trial keeps every value, and a new trial's
    job is recorded."""
    from pytest_mitosis.store import Reader, make_store

    trials = tmp_path / "trials"
    store = make_store(backend.url, trials)
    _record(store, "0ld0ld00", None)
    store.close()
    backend.execute(
        trials, "ALTER TABLE trials DROP COLUMN job", "UPDATE meta SET value='4' WHERE name='schema_version'"
    )
    (before,) = backend.rows(trials)
    assert "job" not in before
    for _ in range(2):
        with Reader(trials, backend.url) as reader:
            assert reader._source.version == 4, "reading never upgrades"
            assert [(r.key, r.job) for r in reader.trials()] == [("0ld0ld00", None)]
    assert _out(_cli(trials, backend, "show", "0ld0ld00")).count("job") == 0
    store = make_store(backend.url, trials)
    _record(store, "0000aaaa", JOB, variant="b")
    store.close()
    old, new = backend.rows(trials)
    assert old == {**before, "job": None}, "the old trial is kept as it was"
    assert json.loads(new["job"]) == JOB
    with Reader(trials, backend.url) as reader:
        assert reader._source.version == SCHEMA_VERSION
        assert reader.get("0000aaaa").job == JOB


def test_a_kept_outcome_records_its_job_when_the_store_is_back_and_an_older_kept_file_still_records(
    tmp_path: Path,
) -> None:
    """``.pending/``: a trial's outcome kept while the store was away carries its job, recorded later; a file
    kept by a version before jobs (no ``job`` among its fields) is recorded as it was."""
    from pytest_mitosis.recording.pending import PENDING, keep_outcome, record_kept
    from pytest_mitosis.store import Reader, SQLiteStore

    trials = tmp_path / "trials"
    store = SQLiteStore(trials)
    store.begin(_trial("0000aaaa"), ())
    store.begin(_trial("0000bbbb", variant="b"), ())
    fields = {"status": "passed", "main": 2.0, "metrics": {}, "folder": None, "message": None, "verdict": None}
    keep_outcome(trials, "0000aaaa", "trial_exp-a-1", {**fields, "job": JOB})
    keep_outcome(trials, "0000bbbb", "trial_exp-b-1", fields)
    assert "job" not in json.loads((trials / PENDING / "trial-0000bbbb.json").read_text())["finish"]
    done, problems = record_kept(store, trials)
    store.close()
    assert problems == [] and len(done) == 2, (done, problems)
    assert not (trials / PENDING).exists()
    with Reader(trials) as reader:
        assert {r.key: (r.status, r.main, r.job) for r in reader.trials()} == {
            "0000aaaa": ("passed", 2.0, JOB),
            "0000bbbb": ("passed", 2.0, None),
        }


def test_the_report_shows_the_job_on_the_trial_page_and_a_job_column_only_once_a_trial_has_one(
    tmp_path: Path,
) -> None:
    from pytest_mitosis.store import SQLiteStore

    trials = tmp_path / "trials"
    store = SQLiteStore(trials)
    _record(store, "0000cccc", None)
    report = tmp_path / "site"

    def build() -> tuple[str, list[str]]:
        _out(_cli(trials, Backend("sqlite", None), "report", "-o", str(report)))
        index = (report / "index.html").read_text()
        return index, re.findall(r"<th>([^<]*)</th>", index)

    index, head = build()
    assert "job" not in head, head
    _record(store, "0000aaaa", JOB, variant="b")
    store.close()
    index, head = build()  # the kept row of the first trial is built again, with the new column
    assert head[head.index("host") :][:3] == ["host", "job", "date"], head
    rows = re.findall(r"<tr class=[^>]*>.*?</tr>", index, re.S)
    assert len(rows) == 2 and all(row.count("<td") == len(head) for row in rows), rows
    assert "<td>login1</td><td>1234_5@node01</td>" in index
    assert "<td>login1</td><td>-</td>" in index
    page = (report / "trials" / "0000aaaa.html").read_text()
    assert JOB_LINE.replace("job:      ", " · job ") in " ".join(page.split()), "the job where host, seed, session are"
    assert "· job" not in (report / "trials" / "0000cccc.html").read_text()


def test_to_dataframe_has_the_job_as_the_scheduler_names_it(tmp_path: Path) -> None:
    pandas = pytest.importorskip(
        "pandas", reason="to_dataframe() needs pandas, an optional dependency not installed here"
    )
    import pytest_mitosis
    from pytest_mitosis.store import SQLiteStore

    trials = tmp_path / "trials"
    store = SQLiteStore(trials)
    _record(store, "0000aaaa", JOB)
    _record(store, "0000cccc", None, variant="b")
    store.close()
    frame = pytest_mitosis.load_trials(trials_folder=trials).to_dataframe()
    jobs = frame.set_index("key")["job"]
    assert jobs["0000aaaa"] == "1234_5" and pandas.isna(jobs["0000cccc"]), jobs  # missing, as pandas says it


def test_status_shows_a_pending_task_s_reason_and_a_running_task_s_node(tmp_path: Path) -> None:
    """The Slurm controller's heartbeat of a queued task (``phase: pending`` with Slurm's reason) and of a task
    running on a node, as ``status`` and ``status --json`` show them."""
    from pytest_mitosis.store import SQLiteStore

    trials = tmp_path / "trials"
    store = SQLiteStore(trials)
    store.begin(_trial("0000aaaa"), ())
    store.begin(_trial("0000bbbb", variant="b"), ())
    store.beat("trial", "0000aaaa", None, {"phase": "pending", "reason": "Priority", "job": "1234_5"})
    running = {"phase": "step", "step": "fit", "node": "node01", "job": "1234_6", "line": "epoch 3", "elapsed": 4.0}
    store.beat("trial", "0000bbbb", None, running)
    try:
        shown = _out(_cli(trials, Backend("sqlite", None), "status")).splitlines()
        assert re.split(r"\s{2,}", shown[0])[4] == "step"
        rows = {re.split(r"\s{2,}", line)[3]: re.split(r"\s{2,}", line) for line in shown[1:]}
        assert rows["0000aaaa"][2:5] == ["exp[a]", "0000aaaa", "pending (Priority)"], shown
        assert rows["0000bbbb"][2:5] == ["exp[b]", "0000bbbb", "fit on node01"], shown
        assert rows["0000bbbb"][-1] == "epoch 3"
        listed = json.loads(_out(_cli(trials, Backend("sqlite", None), "status", "--json")))
        states = {
            t["key"]: {k: t.get(k) for k in ("phase", "reason", "job", "node", "alive")} for t in listed["trials"]
        }
        assert states == {
            "0000aaaa": {"phase": "pending", "reason": "Priority", "job": "1234_5", "node": None, "alive": True},
            "0000bbbb": {"phase": "step", "reason": None, "job": "1234_6", "node": "node01", "alive": True},
        }
    finally:
        store.close()


PROGRESS_TEST = """
from pytest_mitosis.pytest_layer.progress import Progress


def test_ticks(request):
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    progress = Progress(reporter, every=0.0)
    progress.plan(["exp", "exp"])
    progress.tick("0000aaaa", "trial_exp-a-1", {"phase": "pending", "reason": "Priority", "job": "1234_5"})
    progress.tick("0000bbbb", "trial_exp-b-1", {"phase": "step", "step": "fit", "node": "node01", "elapsed": 12.5})
    progress.tick("0000cccc", "trial_exp-c-1", {"phase": "pending", "reason": "Resources\\x1b[2J", "elapsed": 3})
    with open("status.txt", "w") as stream:  # the text a terminal's status line draws
        stream.write(progress.status())
"""


def test_the_progress_line_shows_a_pending_task_s_reason_and_a_running_task_s_node(tmp_path: Path) -> None:
    """The session's own progress, off a terminal (a line per running trial) and the status line's text, in a real
    pytest session fed the states the Slurm controller's heartbeats carry."""
    (tmp_path / "test_ticks.py").write_text(PROGRESS_TEST)
    run = run_pytest(tmp_path, "test_ticks.py", junit=False)
    assert run.ret == 0, run.out
    assert "mitosis trial_exp-a-1 (0000aaaa): waiting in Slurm's queue, pending (Priority)\n" in run.out
    assert "mitosis trial_exp-b-1 (0000bbbb): still running after 12s, step fit on node01\n" in run.out
    assert "pending (Resources\\x1b[2J)" in run.out and "\x1b[2J" not in run.out, "a crafted reason stays visible text"
    status = (tmp_path / "status.txt").read_text()
    assert status.startswith(
        "mitosis 0/2 (0 passed, 0 failed) · trial_exp-a-1 [0000aaaa] pending (Priority) 0.0s · "
        "trial_exp-b-1 [0000bbbb] step fit on node01 12s · "
    ), status
