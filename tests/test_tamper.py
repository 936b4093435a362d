"""Tamper evidence (SR-12): a record edited, deleted, inserted or reordered with plain sqlite3
is detected by `log verify`, which names the table and row."""

from __future__ import annotations

import datetime as dt
import hashlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from laserctl.cli import main
from laserctl.records import Problem, open_store

from .fleet import CONTEXT, shot

SHOTS = 20


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "log.db"
    store = open_store(path, tz=dt.UTC)
    sid = store.begin_session("P-0007", "thigh", context=lambda: CONTEXT)
    store.record_many(shot(sid, n) for n in range(1, SHOTS + 1))
    store.log_event("fault", "door opened", session_id=sid)
    store.end_session(sid)
    assert store.verify().ok
    store.close()
    yield path


def tamper(path: Path, *statements: str, params: tuple[object, ...] = ()) -> None:
    """What someone with the file and the sqlite3 shell can do: drop the append-only triggers,
    then change rows."""
    db = sqlite3.connect(path)
    for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        db.execute(f"DROP TRIGGER {name}")
    for statement in statements:
        db.execute(statement, params if "?" in statement else ())
    db.commit()
    db.close()


def problems(path: Path, table: str = "shots", *, checkpoint: bool = False) -> list[Problem]:
    """The problems verify finds in `table`: those the chain itself shows, or (checkpoint)
    those the checkpoint made at the session end shows (tests/test_checkpoints_tamper.py)."""
    store = open_store(path, readonly=True)
    report = store.verify()
    store.close()
    assert not report.ok
    schema = [p for p in report.problems if p.what.startswith("schema:")]
    assert all("no_update" in p.what or "no_delete" in p.what for p in schema)
    return [
        p
        for p in report.problems
        if p.table == table and ("signed" in p.what and "checkpoint" in p.what) == checkpoint
    ]


def row(path: Path, table: str, row_id: int) -> tuple[bytes, bytes, str]:
    db = sqlite3.connect(path)
    prev, digest, body = db.execute(
        f"SELECT prev, hash, body FROM {table} WHERE id = ?", (row_id,)
    ).fetchone()
    db.close()
    return bytes(prev), bytes(digest), str(body)


@pytest.mark.req("SR-12")
def test_the_software_cannot_change_or_delete_a_record(db: Path) -> None:
    conn = sqlite3.connect(db)
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("UPDATE shots SET body = body WHERE id = 1")
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM events")
    conn.close()


@pytest.mark.req("SR-12")
def test_an_edited_value_is_named(db: Path) -> None:
    tamper(db, "UPDATE shots SET body = json_set(body, '$.measured', 12.0) WHERE id = 7")
    assert [(p.row_id, p.what.split(":")[0]) for p in problems(db)] == [(7, "modified")]


@pytest.mark.req("SR-12")
def test_an_edited_hash_is_named(db: Path) -> None:
    tamper(db, "UPDATE shots SET hash = randomblob(32) WHERE id = 12")
    assert [(p.row_id, p.what) for p in problems(db)] == [
        (12, "modified: its stored hash was changed")
    ]


@pytest.mark.req("SR-12")
def test_an_edited_event_is_named(db: Path) -> None:
    tamper(
        db, "UPDATE events SET body = replace(body, 'door opened', 'all fine') WHERE kind = 'fault'"
    )
    found = problems(db, "events")
    assert len(found) == 1 and found[0].what.startswith("modified")


@pytest.mark.req("SR-12")
def test_a_deleted_record_is_named(db: Path) -> None:
    tamper(db, "DELETE FROM shots WHERE id = 7")
    assert [(p.row_id, p.what.split(":")[0]) for p in problems(db)] == [
        (8, "deleted record(s) before it")
    ]
    assert "id 7" in problems(db)[0].what


@pytest.mark.req("SR-12")
def test_deleted_records_at_the_end_are_detected(db: Path) -> None:
    tamper(db, f"DELETE FROM shots WHERE id > {SHOTS - 2}")
    (found,) = problems(db)
    assert found.row_id == SHOTS and "2 record" not in found.what
    assert found.what.startswith("deleted: record(s) missing at the end")
    (signed,) = problems(db, checkpoint=True)
    assert signed.row_id == SHOTS - 1
    assert signed.what.startswith(f"deleted: rows {SHOTS - 1}..{SHOTS} are gone")


@pytest.mark.req("SR-12")
def test_a_record_inserted_in_the_middle_is_named(db: Path) -> None:
    prev, _, body = row(db, "shots", 10)
    tamper(
        db,
        "UPDATE shots SET id = id + 100 WHERE id > 10",
        "INSERT INTO shots (id, prev, hash, body) VALUES (11, ?, randomblob(32), ?)",
        params=(prev, body.replace('"shot":10', '"shot":99')),
    )
    assert [(p.row_id, p.what.split(":")[0]) for p in problems(db)] == [(11, "inserted")]
    # the checkpoint's last shot was row 20, renumbered away
    assert [(p.row_id, p.what.split(":")[0]) for p in problems(db, checkpoint=True)] == [
        (20, "deleted")
    ]


@pytest.mark.req("SR-12")
def test_a_well_forged_record_appended_at_the_end_is_named(db: Path) -> None:
    _, last, body = row(db, "shots", SHOTS)
    forged = body.replace(f'"shot":{SHOTS}', f'"shot":{SHOTS + 1}')
    digest = hashlib.sha256(last + forged.encode()).digest()  # correctly chained
    tamper(
        db,
        "INSERT INTO shots (id, prev, hash, body) VALUES (?, ?, ?, ?)",
        params=(SHOTS + 1, last, digest, forged),
    )
    (found,) = problems(db)
    assert found.row_id == SHOTS + 1 and found.what.startswith("inserted")


@pytest.mark.req("SR-12")
def test_a_copied_record_is_named(db: Path) -> None:
    # An exact copy is refused by the unique shot key; a copy given another shot number:
    tamper(
        db,
        f"INSERT INTO shots (id, prev, hash, body) SELECT {SHOTS + 1}, prev, hash,"
        " replace(body, '\"shot\":5', '\"shot\":99') FROM shots WHERE id = 5",
    )
    found = problems(db)
    assert (SHOTS + 1, "inserted: a copy of row 5") in [(p.row_id, p.what) for p in found]


@pytest.mark.req("SR-12")
def test_reordered_records_are_named(db: Path) -> None:
    tamper(
        db,
        "UPDATE shots SET id = -1 WHERE id = 7",
        "UPDATE shots SET id = 7 WHERE id = 8",
        "UPDATE shots SET id = 8 WHERE id = -1",
    )
    found = problems(db)
    assert [(p.row_id, p.what.split(":")[0]) for p in found] == [(7, "reordered"), (8, "reordered")]


@pytest.mark.req("SR-12")
def test_a_rewritten_chain_is_caught_by_an_anchor_kept_from_before(db: Path) -> None:
    # (and by the checkpoint made at the session end, while it is left: here it is deleted)
    store = open_store(db, readonly=True)
    anchors = store.verify().anchors
    store.close()
    shot_anchor = next(a for a in anchors if a.startswith("shots:"))
    # Someone who knows the scheme edits shot 3 and recomputes every later hash and the head.
    conn = sqlite3.connect(db)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'").fetchall():
        conn.execute(f"DROP TRIGGER {name}")
    rows = conn.execute("SELECT id, body FROM shots ORDER BY id").fetchall()
    last = hashlib.sha256(b"laserctl shot log v1 shots").digest()
    for row_id, original in rows:
        body = original.replace('"measured":12.03', '"measured":12.0') if row_id == 3 else original
        digest = hashlib.sha256(last + body.encode()).digest()
        conn.execute(
            "UPDATE shots SET prev = ?, hash = ?, body = ? WHERE id = ?",
            (last, digest, body, row_id),
        )
        last = digest
    conn.execute("UPDATE chain_heads SET hash = ? WHERE tbl = 'shots'", (last,))
    conn.execute("DELETE FROM checkpoints")
    conn.commit()
    conn.close()
    store = open_store(db, readonly=True)
    without = store.verify()
    with_anchor = store.verify([shot_anchor])
    store.close()
    assert [p.what.split(":")[0] for p in without.problems] == ["schema"] * (
        len(without.problems) - 1
    ) + ["this session end was stored with a checkpoint, and no checkpoint covering it is left"]
    anchored = next(p for p in with_anchor.problems if p.table == "shots")
    assert anchored.row_id == SHOTS and "anchor" in anchored.what and "rewritten" in anchored.what


@pytest.mark.req("SR-12")
def test_log_verify_exits_1_naming_the_record_and_0_when_intact(db: Path) -> None:
    intact = CliRunner().invoke(main, ["log", "verify", "--db", str(db)])
    assert intact.exit_code == 0, intact.output
    assert intact.output.startswith("intact: ") and "anchor shots:20:" in intact.output
    tamper(db, "UPDATE shots SET body = json_set(body, '$.fluence', 0.1) WHERE id = 4")
    broken = CliRunner().invoke(main, ["log", "verify", "--db", str(db)])
    assert broken.exit_code == 1
    assert "NOT INTACT" in broken.output
    assert "shots row 4: modified" in broken.output
    assert "schema: shots_no_update missing" in broken.output
    missing = CliRunner().invoke(main, ["log", "verify", "--db", str(db.with_name("x.db"))])
    assert missing.exit_code == 2 and "no shot log at" in missing.output
