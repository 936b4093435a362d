"""`laserctl fleet push` against a real PostgreSQL: consoles ship their logs, batches are
idempotent, the store checks each chain on arrival and refuses forks, forged and truncated
logs, naming console, table and row (docs/fleet.md)."""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import psycopg
import pytest

from laserctl.auth.console_key import ConsoleKey
from laserctl.fleet import central
from laserctl.fleet.central import CentralError, FleetRefused
from laserctl.fleet.push import Hooks, push
from laserctl.records.schema import TABLE_NAMES

from .fleet import forge, key, key_for, make_log, pushed_log, truncate


def local_rows(path: Path) -> dict[str, list[tuple[int, bytes]]]:
    db = sqlite3.connect(path)
    try:
        return {
            t: [(int(i), bytes(h)) for i, h in db.execute(f"SELECT id, hash FROM {t} ORDER BY id")]
            for t in TABLE_NAMES
        }
    finally:
        db.close()


def stored_rows(url: str, console: str) -> dict[str, list[tuple[int, bytes]]]:
    with psycopg.connect(url) as conn:
        rows = conn.execute(
            "SELECT tbl, row_id, hash FROM fleet_rows WHERE console_id = %s ORDER BY tbl, row_id",
            (console,),
        ).fetchall()
    out: dict[str, list[tuple[int, bytes]]] = {t: [] for t in TABLE_NAMES}
    for tbl, row_id, digest in rows:
        out[tbl].append((int(row_id), bytes(digest)))
    return out


def refusals(url: str) -> list[tuple[str, str | None, int | None, str]]:
    with psycopg.connect(url) as conn:
        return [
            (str(c), t, r, str(w))
            for c, t, r, w in conn.execute(
                "SELECT console_id, tbl, row_id, what FROM fleet_refusals ORDER BY id"
            )
        ]


def test_two_consoles_ship_to_one_store_and_nothing_is_sent_twice(
    pg_url: str, tmp_path: Path
) -> None:
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    make_log(a_db, shots=30, patient="P-0001")
    make_log(b_db, shots=12, patient="P-0002")
    a, b = key_for(a_db), key_for(b_db)
    first = push(a_db, pg_url, key=a, batch=7)
    push(b_db, pg_url, key=b, batch=1000)
    assert first.shipped["shots"] == 30 and first.batches > len(TABLE_NAMES)
    assert stored_rows(pg_url, a.console_id) == local_rows(a_db)
    assert stored_rows(pg_url, b.console_id) == local_rows(b_db)
    again = push(a_db, pg_url, key=a, batch=7)
    assert again.shipped == {} and again.batches == 0
    make_log(a_db, shots=5, patient="P-0003", first=31)  # a later session on console a
    later = push(a_db, pg_url, key=a, batch=7)
    assert later.shipped["shots"] == 5 and later.resent == {}
    assert stored_rows(pg_url, a.console_id) == local_rows(a_db)
    with psycopg.connect(pg_url) as conn:
        consoles = conn.execute("SELECT console_id, public_key FROM consoles").fetchall()
    assert sorted(consoles) == sorted(
        [(a.console_id, a.public_text()), (b.console_id, b.public_text())]
    )
    assert refusals(pg_url) == []


def test_a_batch_already_committed_is_resent_harmlessly(pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make_log(db, shots=10)
    k = key_for(db)
    push(db, pg_url, key=k)
    conn = sqlite3.connect(db)
    conn.execute("DELETE FROM fleet_outbox")  # as if every acknowledgement had been lost
    conn.commit()
    conn.close()
    again = push(db, pg_url, key=k, batch=4)
    assert again.shipped == {} and again.resent["shots"] == 10
    assert stored_rows(pg_url, k.console_id) == local_rows(db)


def test_a_connection_cut_mid_batch_loses_and_duplicates_nothing(
    pg_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "a.db"
    make_log(db, shots=40)
    k = key_for(db)
    batches: list[int] = []

    def cut(table: str, rows: list[object]) -> None:
        if table != "shots":
            return
        batches.append(len(rows))
        if len(batches) == 3:  # the third shots batch is in the store's transaction: cut it
            with psycopg.connect(pg_url, autocommit=True) as other:
                other.execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                    " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                )

    with pytest.raises(CentralError, match=r"connection lost during push.*push again"):
        push(db, pg_url, key=k, batch=10, hooks=Hooks(before_commit=cut))
    shipped = stored_rows(pg_url, k.console_id)
    assert [r for r, _ in shipped["shots"]] == list(range(1, 21))  # two batches, not the third
    resumed = push(db, pg_url, key=k, batch=10)
    assert resumed.shipped["shots"] == 20 and resumed.resent == {}
    assert stored_rows(pg_url, k.console_id) == local_rows(db)


def test_a_key_different_from_the_pinned_one_is_refused(pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make_log(db, shots=3)
    k = key_for(db)
    push(db, pg_url, key=k)
    impostor = ConsoleKey(k.console_id, key(tmp_path, "other").private)
    with pytest.raises(FleetRefused, match=f"console {k.console_id}: its public key"):
        push(db, pg_url, key=impostor)
    assert [(c, t) for c, t, _, _ in refusals(pg_url)] == [(k.console_id, None)]


@pytest.mark.req("SR-12")
def test_a_rewritten_and_rechained_log_is_refused_naming_console_table_and_row(
    pg_url: str, tmp_path: Path
) -> None:
    db, k = pushed_log(tmp_path, pg_url)
    forge(db, "shots", 5, "measured", 99.0)  # `log verify` says intact afterwards
    with pytest.raises(FleetRefused) as refused:
        push(db, pg_url, key=k)
    assert (refused.value.console_id, refused.value.table, refused.value.row_id) == (
        k.console_id,
        "shots",
        5,
    )
    assert f"console {k.console_id} table shots row 5" in str(refused.value)
    assert "fork" in str(refused.value)
    assert [(c, t, r) for c, t, r, _ in refusals(pg_url)] == [(k.console_id, "shots", 5)]


@pytest.mark.req("SR-12")
def test_a_forged_log_with_new_rows_is_refused_and_none_of_them_stored(
    pg_url: str, tmp_path: Path
) -> None:
    db, k = pushed_log(tmp_path, pg_url)
    before = stored_rows(pg_url, k.console_id)
    forge(db, "shots", 12, "measured", 1.0)
    make_log(db, shots=5, patient="P-0008", first=21)
    with pytest.raises(FleetRefused, match="table shots row 12"):
        push(db, pg_url, key=k)
    assert stored_rows(pg_url, k.console_id)["shots"] == before["shots"]


@pytest.mark.req("SR-12")
def test_a_truncated_log_is_refused(pg_url: str, tmp_path: Path) -> None:
    db, k = pushed_log(tmp_path, pg_url)
    truncate(db, "shots", 15)
    with pytest.raises(FleetRefused, match=r"table shots row 16.*deleted after they were shipped"):
        push(db, pg_url, key=k)
    assert [(t, r) for _, t, r, _ in refusals(pg_url)] == [("shots", 16)]


@pytest.mark.req("SR-12")
def test_a_truncated_log_with_new_rows_in_place_of_the_deleted_is_refused(
    pg_url: str, tmp_path: Path
) -> None:
    db, k = pushed_log(tmp_path, pg_url)
    truncate(db, "shots", 15)
    make_log(db, shots=2, patient="P-0009", first=100)  # shots 16, 17 anew: fewer than gone
    with pytest.raises(FleetRefused, match=r"table shots row 16.*fork"):
        push(db, pg_url, key=k)
    make_log(db, shots=10, patient="P-0010", first=200)  # now more rows than were deleted
    with pytest.raises(FleetRefused, match="table shots row 16"):
        push(db, pg_url, key=k)


def test_the_store_itself_refuses_rows_that_do_not_chain(pg_url: str, tmp_path: Path) -> None:
    """Verification on arrival is the store's own (a trigger): a client that skips laserctl's
    checks still cannot store a row that does not chain, nor change a stored one."""
    db = tmp_path / "a.db"
    make_log(db, shots=3)
    k = key_for(db)
    push(db, pg_url, key=k)
    with psycopg.connect(pg_url) as conn:
        with pytest.raises(psycopg.Error, match=f"console {k.console_id} table shots row 4"):
            conn.execute(
                "INSERT INTO fleet_rows (console_id, tbl, row_id, body, hash, prev)"
                " VALUES (%s, 'shots', 4, '{}', sha256(%s || convert_to('{}', 'UTF8')), %s)",
                (k.console_id, b"x" * 32, b"x" * 32),
            )
        conn.rollback()
        gap = "table shots row 6: row 5 before it was never shipped"
        with pytest.raises(psycopg.Error, match=gap):
            conn.execute(
                "INSERT INTO fleet_rows (console_id, tbl, row_id, body, hash, prev)"
                " SELECT console_id, tbl, 6, body, hash, prev FROM fleet_rows"
                " WHERE console_id = %s AND tbl = 'shots' AND row_id = 3",
                (k.console_id,),
            )
        conn.rollback()
        with pytest.raises(psycopg.Error, match="fleet_rows is append-only"):
            conn.execute("UPDATE fleet_rows SET body = '{}' WHERE row_id = 1")
        conn.rollback()
        with pytest.raises(psycopg.Error, match="fleet_rows is append-only"):
            conn.execute("DELETE FROM fleet_rows")


def test_an_unreachable_store_is_named_without_its_password(tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make_log(db, shots=1)
    url = "postgresql://clinic:s3cret@127.0.0.1:1/chain"
    with pytest.raises(
        CentralError, match=re.escape("central store postgresql://clinic@127.0.0.1:1/chain")
    ) as e:
        push(db, url, key=key_for(db))
    assert "s3cret" not in str(e.value)


def test_migrate_twice_runs_nothing_the_second_time(pg_url: str) -> None:
    with central.connect(pg_url) as store:
        assert store.migrate() == len(central.MIGRATIONS)
        assert store.migrate() == 0


def test_consoles_pushing_at_the_same_time_and_one_console_twice_at_once(
    pg_url: str, tmp_path: Path
) -> None:
    """Two consoles at once, and one console's CLI push racing its own background push: the
    pushes of one console take turns (a row lock), nothing is refused, nothing is doubled."""
    import threading

    dbs = [tmp_path / f"{name}.db" for name in ("a", "b")]
    for n, db in enumerate(dbs):
        make_log(db, shots=300, patient=f"P-000{n + 1}")
    with central.connect(pg_url) as store:
        store.migrate()  # the schema first: two first pushes would both wait for it anyway
    errors: list[BaseException] = []

    def run(db: Path) -> None:
        try:
            push(db, pg_url, key=key_for(db), batch=20)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(db,)) for db in (*dbs, dbs[0])]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    for db in dbs:
        assert stored_rows(pg_url, key_for(db).console_id) == local_rows(db)
    assert refusals(pg_url) == []
