"""A PostgreSQL store with pytest-xdist workers on other hosts: every host writes the database itself.

The PostgreSQL store says it is ``shared`` (see remote.py), so a worker in another checkout, on
another host name, records its trials straight into the database, and each trial's folder stays
in the trials folder of the host that ran it, while the controller's readers see every trial.
"""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import clean_env, git, git_init, run_pytest, write_investigation
from .pg_server import PgServer
from .test_readers import cli
from .test_remote import EXP, SIZES, clone, python_on_host

PYPROJECT = """
[tool.mitosis]
trials-folder = "trials"
store = "{store}"

[tool.mitosis.steps]
exp = ["exp:run", "exp:lookup"]

[tool.pytest.ini_options]
"""


def test_remote_workers_write_a_postgresql_store_directly_and_keep_their_folders(
    pg_server: PgServer, tmp_path: Path
) -> None:
    url = pg_server.createdb("remote")
    root = write_investigation(tmp_path / "controller", PYPROJECT.format(store=url), {"exp": EXP})
    (root / "sizes.json").write_text(json.dumps(SIZES), encoding="utf-8")
    git_init(root)
    git(root, "rm", "-q", "--cached", "sizes.json")
    (root / ".gitignore").write_text("__pycache__/\n.pytest_cache/\nsizes.json\n", encoding="utf-8")
    git(root, "commit", "-q", "-am", "sizes.json is written on each host")
    host = clone(root, tmp_path / "host-b")
    python, name = python_on_host(tmp_path, "mitosis-pg-host")
    run = run_pytest(root, "--mitosis", "-d", f"--tx=popen//python={python}//chdir={host}", env=clean_env())
    assert run.ret == 0, run.out
    rows = {r[0]: r for r in pg_server.execute("SELECT variants, iteration, status, folder FROM trials", url_db(url))}
    assert sorted(rows) == ["big", "small"]
    for _, iteration, status, folder in rows.values():
        assert (iteration, status) == (1, "passed")
        assert Path(folder).parent == host / "trials", "the folder stays on the host that ran the trial"
    assert not list((root / "trials").glob("trial_*")), "nothing travelled to the controller"
    listed = cli(root, "history")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.count("\n") == 3 and listed.stdout.count(f" {name} ") == 2, listed.stdout


def url_db(url: str) -> str:
    return url.split("/")[3].split("?")[0]
