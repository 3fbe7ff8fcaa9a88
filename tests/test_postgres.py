"""The PostgreSQL store against a real server: schema under an advisory lock, atomic iterations,
variant locks in the writing transaction, a reconnection, read-only readers, migrate.

These tests drive the store through its own interface (``make_store``, ``Reader``) from many
threads at once, each with its own connection: the races are the server's, not simulated.
The pytest sessions that run trials on PostgreSQL are in ``test_store.py`` (parametrized) and
``test_readers.py``; what a user who gets a URL wrong is told, in ``test_postgres_errors.py``.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pytest_mitosis.identity.locks import Lock
from pytest_mitosis.store import (
    KeyTaken,
    NewTrial,
    Reader,
    RecordsError,
    StoreError,
    VariantRedefined,
    make_store,
    new_key,
)
from pytest_mitosis.store.postgres import PostgresStore

from .conftest import PATIENCE, wait_until
from .pg_server import PgServer


def trial(identity: str = "id-a", debug: bool = False, key: str | None = None, packages: str = "1.0") -> NewTrial:
    return NewTrial(
        key=key or new_key(),
        experiment="exp",
        identity=identity,
        variants="a",
        slug="trial_exp-a",
        nodeid="pyproject.toml::exp[a]",
        debug=debug,
        git={"commit": "0" * 40},
        seed=7,
        environment={"packages": {"numpy": packages}},
        steps=[{"name": "exp"}],
        params=[{"step": "exp", "name": "frequency", "kind": "lookup", "text": "a", "value": 1}],
    )


def lock(value: int, name: str = "a") -> Lock:
    return Lock("exp", "exp", "frequency", "lookup", name, f"fp-{value}", value, "exp:lookup")


def at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """``work(i)`` in ``count`` threads released together; results (or exceptions) in order."""
    barrier = threading.Barrier(count)
    results: list[Any] = [None] * count

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as err:  # noqa: BLE001 - the test inspects what each thread met
            results[i] = err

    threads = [threading.Thread(target=run, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=PATIENCE)
        assert not thread.is_alive(), f"a thread still ran after {PATIENCE:g} s"
    return results


# -- the store -----------------------------------------------------------------------------------


def test_ten_sessions_starting_at_once_on_an_empty_database_create_the_schema_once(pg_server: PgServer) -> None:
    url = pg_server.createdb()
    stores = at_once(10, lambda i: make_store(url, Path("/nonexistent")))
    assert all(isinstance(s, PostgresStore) for s in stores), stores
    for store in stores:
        store.close()
    database = url.split("/")[3].split("?")[0]
    assert pg_server.execute("SELECT name, value FROM meta", database) == [("schema_version", "6")]
    tables = pg_server.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema='public' ORDER BY 1", database
    )
    assert [t for (t,) in tables] == [
        "acceptances",
        "beats",
        "counters",
        "environments",
        "locks",
        "meta",
        "sessions",
        "trials",
    ]


def test_concurrent_trials_of_one_identity_get_every_iteration_once(pg_server: PgServer) -> None:
    url = pg_server.createdb()
    make_store(url, Path("/x")).close()
    stores = [make_store(url, Path("/x")) for _ in range(12)]
    try:
        iterations = at_once(12, lambda i: stores[i].begin(trial(), [lock(1)]))
        assert sorted(iterations) == list(range(1, 13)), iterations
        assert stores[0].next_iteration("exp", "id-a") == 13
        assert stores[0].next_iteration("exp", "id-b") == 1
        assert stores[0].begin(trial(debug=True), [lock(99)]) is None  # a debug trial takes no number, no lock
    finally:
        for store in stores:
            store.close()


SERIALIZATION_FAILURE = "ERROR:  could not serialize access due to concurrent update"


def test_on_a_serializable_server_refused_transactions_are_retried(pg_server: PgServer) -> None:
    """A server whose transactions are SERIALIZABLE refuses the writers that waited on a row another
    transaction changed; they retry. The conflict is made, not hoped for: another connection holds
    the identity's counter row while five sessions start a trial, and commits once all five wait on it.
    The server's log shows that each was refused at least once."""
    import psycopg

    url = pg_server.createdb()
    database = url.split("/")[3].split("?")[0]
    pg_server.execute(f'ALTER DATABASE "{database}" SET default_transaction_isolation TO serializable')
    make_store(url, Path("/x")).close()
    stores = [make_store(url, Path("/x")) for _ in range(5)]
    results: list[Any] = []
    try:
        assert stores[0]._db.execute("SHOW transaction_isolation").fetchone() == ("serializable",)
        assert stores[0].begin(trial(), [lock(1)]) == 1  # the identity's counter row exists
        logged = pg_server.log.read_text(errors="replace").count(SERIALIZATION_FAILURE)
        with psycopg.connect(url) as holder:
            holder.execute("UPDATE counters SET last = last WHERE experiment = 'exp' AND identity = 'id-a'")
            racing = threading.Thread(
                target=lambda: results.extend(at_once(5, lambda i: stores[i].begin(trial(), [lock(1)])))
            )
            racing.start()
            waiting = "SELECT count(*) FROM pg_stat_activity WHERE datname = %s AND wait_event_type = 'Lock'"
            wait_until(
                "five sessions waiting on the held counter row",
                lambda: pg_server.execute(waiting, "postgres", (database,)) == [(5,)],
            )
            holder.commit()  # the row the five wait on changed under their snapshots: each is refused
        racing.join(timeout=PATIENCE)
        assert not racing.is_alive(), "the five sessions ended"
    finally:
        for store in stores:
            store.close()
    assert sorted(results) == [2, 3, 4, 5, 6], results
    refused = pg_server.log.read_text(errors="replace").count(SERIALIZATION_FAILURE) - logged
    assert refused >= 5, f"the server refused {refused} transactions (see {pg_server.log})"


def test_two_sessions_locking_one_variant_to_two_values_at_once_one_wins(pg_server: PgServer) -> None:
    url = pg_server.createdb()
    make_store(url, Path("/x")).close()
    for round_ in range(5):  # a race is a race: several rounds, each on a fresh variant name
        stores = [make_store(url, Path("/x")) for _ in range(2)]
        try:
            name = f"v{round_}"
            results = at_once(
                2, lambda i, stores=stores, name=name: stores[i].begin(trial(identity=f"{name}-{i}"), [lock(i, name)])
            )
        finally:
            for store in stores:
                store.close()
        won = [r for r in results if isinstance(r, int)]
        lost = [r for r in results if isinstance(r, VariantRedefined)]
        assert (len(won), len(lost)) == (1, 1), results
        assert f"the variant {name!r} of parameter 'frequency' now means a different value" in str(lost[0])
    database = url.split("/")[3].split("?")[0]
    assert pg_server.execute("SELECT count(*) FROM locks", database) == [(5,)]
    assert pg_server.execute("SELECT count(*) FROM trials", database) == [(5,)]  # the loser left no row


@pytest.fixture(params=["sqlite", "postgresql"])
def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new store's URL on either backend."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/trials/mitosis.sqlite"
    server: PgServer = request.getfixturevalue("pg_server")
    return server.createdb()


def test_both_stores_record_finish_and_warn_alike(any_store: str) -> None:
    url = any_store
    store = make_store(url, Path("/x"))
    try:
        first = trial()
        assert store.begin(first, [lock(1)]) == 1
        assert (
            store.finish(first.key, status="passed", main=0.5, metrics={"m": [1, 2]}, folder="/t/a", message=None) == []
        )
        again = trial(packages="2.0")
        assert store.begin(again, [lock(1)]) == 2
        warnings = store.finish(again.key, status="passed", main=0.7, metrics={}, folder="/t/b", message=None)
        assert warnings == [
            "installed packages changed since trial_exp-a-1 (key " + first.key + "): numpy 1.0 -> 2.0",
            f"non-determinism: trial_exp-a-1 (key {first.key}) had the same parameters, commit and seed but "
            "main = 0.5; this trial's main = 0.7",
        ]
        previous = store.previous("exp", "id-a", before=again.key)
        assert previous is not None and (previous.key, previous.main, previous.seed) == (first.key, 0.5, 7)
        with pytest.raises(VariantRedefined) as caught:
            store.check_locks([lock(2)])
        assert "stored:    1   (locked by trial trial_exp-a-1 (key " in str(caught.value)
        assert store.statuses([first.key, "ffffffff"]) == {first.key: "passed"}
        taken = trial(key=first.key)
        with pytest.raises(KeyTaken, match=first.key):
            store.begin(taken, [lock(1)])
        assert store.next_iteration("exp", "id-a") == 3  # the refused key took no number
    finally:
        store.close()
    with Reader(Path("/nonexistent"), url) as reader:
        records = reader.trials()
        assert reader.experiments() == ["exp"]
        assert [(r.key, r.iteration, r.main, r.status) for r in records] == [
            (again.key, 2, 0.7, "passed"),
            (first.key, 1, 0.5, "passed"),
        ]
        assert reader.get(first.key[:6].upper()).metrics == {"m": [1, 2]}
        assert reader.environment(records[0]) == {"packages": {"numpy": "2.0"}}
        assert reader.location == url.removeprefix("sqlite:///")  # messages name a SQLite store by its file


def test_a_store_whose_connection_was_cut_reconnects_and_records_the_trial(pg_server: PgServer) -> None:
    url = pg_server.createdb()
    database = url.split("/")[3].split("?")[0]
    store = make_store(url, Path("/x"))
    try:
        first = trial()
        assert store.begin(first, [lock(1)]) == 1
        cut = pg_server.execute(  # what a server restart or an idle-connection reaper does to a long sweep
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname=%s AND pid <> pg_backend_pid()",
            args=(database,),
        )
        assert cut == [(True,)]
        store.finish(first.key, status="passed", main=1, metrics={}, folder=None, message=None)
    finally:
        store.close()
    assert pg_server.execute("SELECT status FROM trials", database) == [("passed",)]


def test_a_reader_never_writes_a_postgresql_store(pg_server: PgServer) -> None:
    url = pg_server.createdb()
    store = make_store(url, Path("/x"))
    store.begin(trial(), [lock(1)])
    store.close()
    with Reader(Path("/x"), url) as reader:
        with pytest.raises(RecordsError, match="cannot execute DELETE in a read-only transaction"):
            reader._source.rows("DELETE FROM trials")
        assert len(reader.trials()) == 1
        with pytest.raises(RecordsError, match="back it up with pg_dump"):
            reader.backup(Path("/tmp"))


def test_a_reader_of_an_empty_database_says_how_to_fill_it(pg_server: PgServer) -> None:
    url = pg_server.createdb()
    with pytest.raises(RecordsError) as caught:
        Reader(Path("/x"), url)
    assert str(caught.value).startswith(f"no trial store in {url}: the database has no pytest-mitosis tables.")


def test_a_database_with_foreign_tables_named_like_ours_is_refused_untouched(pg_server: PgServer) -> None:
    url = pg_server.createdb()
    database = url.split("/")[3].split("?")[0]
    pg_server.execute("CREATE TABLE trials (id int)", database)
    with pytest.raises(StoreError) as caught:
        make_store(url, Path("/x"))
    assert str(caught.value) == (
        f"mitosis: the database {url} already has tables named trials that pytest-mitosis did not create; nothing "
        "was written to it. Give pytest-mitosis a database of its own (createdb mitosis) and point --mitosis-store at it."
    )
    assert [t for (t,) in pg_server.execute("SELECT tablename FROM pg_tables WHERE schemaname='public'", database)] == [
        "trials"
    ]


def test_a_store_from_a_newer_version_is_refused_on_postgresql(pg_server: PgServer) -> None:
    url = pg_server.createdb()
    make_store(url, Path("/x")).close()
    database = url.split("/")[3].split("?")[0]
    pg_server.execute("UPDATE meta SET value='99' WHERE name='schema_version'", database)
    with pytest.raises(StoreError, match="has schema version 99, written by a newer pytest-mitosis"):
        make_store(url, Path("/x"))
    with pytest.raises(RecordsError, match="has schema version 99, written by a newer pytest-mitosis"):
        Reader(Path("/x"), url)


def test_json_values_keep_their_exact_text_on_postgresql(pg_server: PgServer) -> None:
    """Values are stored as the JSON text the SQLite store keeps (NUL escapes included), not as jsonb."""
    url = pg_server.createdb()
    store = make_store(url, Path("/x"))
    try:
        t = trial()
        store.begin(t, [])
        main = {"text": "a\x00b", "big": 2**62, "float": 0.1}
        store.finish(t.key, status="passed", main=main, metrics={}, folder=None, message=None)
    finally:
        store.close()
    with Reader(Path("/x"), url) as reader:
        assert reader.get(t.key).main == main
    database = url.split("/")[3].split("?")[0]
    (stored,) = pg_server.execute("SELECT main FROM trials", database)
    assert json.loads(stored[0]) == main
    assert Counter(r[0] for r in pg_server.execute("SELECT status FROM trials", database)) == {"passed": 1}


def _sqlite_store(folder: Path, values: list[float]) -> list[str]:
    """A real SQLite store with one passed trial per value (same identity): their keys."""
    store = make_store(None, folder)
    keys = []
    try:
        for value in values:
            t = trial()
            store.begin(t, [lock(1)])
            store.finish(t.key, status="passed", main=value, metrics={}, folder=str(folder / t.key), message=None)
            keys.append(t.key)
    finally:
        store.close()
    return keys


def test_migrate_round_trips_and_never_merges_two_histories(pg_server: PgServer, tmp_path: Path) -> None:
    from pytest_mitosis.store.migrate import copy_store

    url = pg_server.createdb()
    ours = _sqlite_store(tmp_path / "ours", [0.1, 0.2])
    said = copy_store(f"sqlite:///{tmp_path}/ours/mitosis.sqlite", url)
    assert said.startswith(
        "migrate: 2 trials copied, 1 environment record, 1 variant lock and 0 sessions added, from sqlite:///"
    )
    store = make_store(url, Path("/x"))
    assert store.next_iteration("exp", "id-a") == 3, "the counter starts after the copied iterations"
    store.close()
    theirs = _sqlite_store(tmp_path / "theirs", [0.3])
    with pytest.raises(RecordsError) as refused:
        copy_store(f"sqlite:///{tmp_path}/theirs/mitosis.sqlite", url)
    assert str(refused.value) == (
        f"migrate: iteration 1 of experiment 'exp' is trial {ours[0]} in {url}, and trial trial_exp-a-1 (key "
        f"{theirs[0]}) in the source; the two stores hold different histories, and migrate never merges them (it "
        "would renumber trials). Copy into a new database; nothing was written."
    )
    back = tmp_path / "back" / "mitosis.sqlite"
    assert copy_store(url, f"sqlite:///{back}").startswith("migrate: 2 trials copied")
    with Reader(tmp_path / "ours") as original, Reader(tmp_path / "back") as copy:
        assert [r.to_dict() for r in copy.trials()] == [r.to_dict() for r in original.trials()]
    with pytest.raises(RecordsError, match="--from and --to are the same store"):
        copy_store(url, url)
