"""What a user who gets a store URL wrong is told: redacted URLs, bad URLs, a wrong password, a
missing database, a server that is not there, a missing grant, psycopg not installed.

Every message is one line naming the store with its password replaced by ``***``, and what to do.
The failures are real: a real server refuses the password or the grant; a socket folder without
a server is not reached.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pytest_mitosis.store import StoreError, make_store, parse_url

from .pg_server import PASSWORD, PgServer

# -- URLs ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("postgresql://alice:s3cret@db.lab:5433/trials", "postgresql://alice:***@db.lab:5433/trials"),
        ("postgres://alice@db.lab/trials", "postgresql://alice@db.lab/trials"),
        ("postgresql://alice@/trials?host=/run/postgresql", "postgresql://alice@/trials?host=/run/postgresql"),
        (
            "postgresql://bob@h/db?password=hunter2&sslmode=require",
            "postgresql://bob@h/db?password=***&sslmode=require",
        ),
    ],
)
def test_a_postgresql_url_is_shown_with_its_password_redacted(text: str, shown: str) -> None:
    url = parse_url(text)
    assert (url.kind, str(url), url.redacted) == ("postgresql", shown, shown)
    assert "s3cret" not in repr(url) and "hunter2" not in repr(url)


def test_a_relative_sqlite_url_is_read_from_the_base_folder(tmp_path: Path) -> None:
    url = parse_url("sqlite:///local/mitosis.sqlite", tmp_path)
    assert url.path == tmp_path / "local" / "mitosis.sqlite"
    assert str(url) == f"sqlite:///{tmp_path}/local/mitosis.sqlite"
    assert parse_url(f"sqlite:///{tmp_path}/x.sqlite").path == tmp_path / "x.sqlite"


@pytest.mark.parametrize(
    ("text", "said"),
    [
        ("mysql://root:pw@h/db", "the store URL 'mysql://root:***@h/db' is not one pytest-mitosis knows; expected"),
        ("sqlite:relative.db", "the store URL 'sqlite:relative.db' names no file; expected sqlite:///PATH"),
        ("postgresql://alice:pw@h:port/db", "the store URL 'postgresql://alice:***@h:port/db' cannot be parsed"),
        ("postgresql://alice:pw@host", "the store URL 'postgresql://alice:***@host' names no database"),
    ],
)
def test_a_bad_store_url_is_one_clear_error_without_its_password(text: str, said: str) -> None:
    with pytest.raises(StoreError) as caught:
        parse_url(text)
    assert said in str(caught.value)
    assert ":pw@" not in str(caught.value)


# -- connection errors ---------------------------------------------------------------------------


def _refusal(url: str) -> str:
    with pytest.raises(StoreError) as caught:
        make_store(url, Path("/x"))
    return str(caught.value)


def test_a_wrong_password_is_one_line_naming_the_redacted_url(pg_server: PgServer) -> None:
    url = pg_server.createdb(owner="alice")
    database = url.split("/")[3].split("?")[0]
    wrong = pg_server.url(database, "alice", "not-the-password")
    said = _refusal(wrong)
    shown = pg_server.url(database, "alice", "***")
    assert said.startswith(f"mitosis: the trial store {shown} cannot be reached: ")
    assert 'password authentication failed for user "alice"' in said
    assert said.endswith(
        "The server refused the user or password: check them (put the password in ~/.pgpass or PGPASSWORD "
        "rather than in the URL, where shell history keeps it)."
    )
    assert "not-the-password" not in said
    store = make_store(pg_server.url(database, "alice", PASSWORD), Path("/x"))  # the right one works
    store.close()


def test_a_missing_database_and_a_server_that_is_not_there_say_what_to_do(pg_server: PgServer, tmp_path: Path) -> None:
    said = _refusal(pg_server.url("no_such_db", "alice", PASSWORD))
    assert 'database "no_such_db" does not exist' in said and PASSWORD not in said
    assert said.endswith(
        "The server has no such database: create it (createdb DATABASE, as a user allowed to) and run again."
    )
    gone = _refusal(f"postgresql://alice:{PASSWORD}@/db?host={tmp_path}")
    assert gone.startswith(f"mitosis: the trial store postgresql://alice:***@/db?host={tmp_path} cannot be reached: ")
    assert gone.endswith(
        "Check that the server is running and reachable from this host (host, port or ?host=/socket/dir in the "
        "URL; pg_isready -h HOST tells), then run again."
    )
    assert PASSWORD not in gone


def test_a_user_who_may_not_create_tables_is_told_which_grant_is_missing(pg_server: PgServer) -> None:
    url = pg_server.createdb()  # owned by postgres: since PostgreSQL 15 others may not create tables in public
    database = url.split("/")[3].split("?")[0]
    said = _refusal(pg_server.url(database, "alice", PASSWORD))
    assert said == (
        f"mitosis: the trial store {pg_server.url(database, 'alice', '***')} refused: permission denied for schema "
        "public. Nothing was written. Let this user create and write the store's tables (GRANT CREATE ON SCHEMA "
        "public TO USER, needed since PostgreSQL 15; or createdb --owner USER), or use the database owner's account."
    )
    assert pg_server.execute("SELECT count(*) FROM pg_tables WHERE schemaname='public'", database) == [(0,)]


def test_a_user_who_may_not_write_existing_tables_is_told_the_grant_on_them(pg_server: PgServer) -> None:
    """The tables exist (the owner's first session made them): CREATE ON SCHEMA is not the missing right."""
    from pytest_mitosis.store import NewSession, NewTrial

    url = pg_server.createdb()
    database = url.split("/")[3].split("?")[0]
    make_store(url, Path("/x")).close()  # the owner's first session
    alice = pg_server.url(database, "alice", PASSWORD)
    said = _refusal(alice)
    assert said.startswith(f"mitosis: the trial store {pg_server.url(database, 'alice', '***')} refused: permission ")
    assert said.endswith(
        ". Nothing was written. Let this user read and write the store's tables, which exist already: as their owner, "
        "GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO USER; or use the tables' owner's "
        "account."
    )
    assert "CREATE ON SCHEMA" not in said
    # the grant as said is enough for every write a session makes
    pg_server.execute("GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO alice", database)
    store = make_store(alice, Path("/x"))
    try:
        store.begin_session(NewSession("5e55104a", "pytest --mitosis", None, False, False))  # type: ignore[attr-defined]
        trial = NewTrial(
            "a11ce000", "exp", "[]", "a", "trial_exp-a", "pyproject.toml::exp[a]", False, {"commit": None}, 1, {},
            [{"name": "exp", "function": "m:f", "lookup": None}], [], session="5e55104a",
        )  # fmt: skip
        assert store.begin(trial, ()) == 1
        store.beat("trial", "a11ce000", "5e55104a", {"phase": "running"})  # type: ignore[attr-defined]
        store.finish("a11ce000", status="passed", main=1, metrics={}, folder=None, message=None)
        store.end_session("5e55104a", 0)  # type: ignore[attr-defined]
    finally:
        store.close()
    assert pg_server.execute("SELECT status FROM trials", database) == [("passed",)]


def test_without_psycopg_a_postgresql_url_says_which_extra_to_install(tmp_path: Path) -> None:
    code = (
        "import sys; sys.modules['psycopg'] = None\n"  # what an install without the extra finds
        "from pathlib import Path\n"
        "from pytest_mitosis.store import StoreError, make_store\n"
        "try:\n"
        "    make_store('postgresql://alice:pw@db.lab/study', Path('.'))\n"
        "except StoreError as err:\n"
        "    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert done.stdout == (
        "mitosis: the trial store postgresql://alice:***@db.lab/study is a PostgreSQL database, which needs psycopg 3: "
        "pip install 'pytest-mitosis[postgresql]' (or pip install 'psycopg[binary]').\n"
    ), done.stderr
