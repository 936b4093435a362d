"""Tamper evidence beyond the chain (SR-12, issue 14): what an attacker with the file, the
sqlite3 shell and knowledge of the scheme can do (drop the triggers, delete or rewrite rows,
recompute the chain, fix `chain_heads`, restore the triggers) is caught by the signed
checkpoints: those in the log, and one shipped off the console even after the attacker
deleted the log's own."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import sqlite3
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from laserctl.auth import console_key
from laserctl.cli import main
from laserctl.records import open_store
from laserctl.records.checkpoints import parse

from .fleet import CONTEXT, shot, tamper

PER_SESSION = 10  # two sessions: a checkpoint after shot 10 and one after shot 20


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "log.db"
    clock = iter(range(1_765_000_000, 1_765_100_000, 60))
    store = open_store(path, tz=dt.UTC, clock=lambda: float(next(clock)))
    for session in range(2):
        sid = store.begin_session(f"P-000{session}", "thigh", context=lambda: CONTEXT)
        store.record_many(shot(sid, session * PER_SESSION + n) for n in range(1, PER_SESSION + 1))
        store.end_session(sid)
    assert [cp.sizes["shots"] for cp in store.checkpoints()] == [PER_SESSION, 2 * PER_SESSION]
    store.close()
    return path


def attack(path: Path, *statements: str) -> None:
    """The attacker's steps (tests/fleet.py tamper): drop the append-only triggers, run
    `statements`, set chain_heads to each table's new tail, put the triggers back."""

    def run(db: sqlite3.Connection) -> None:
        for statement in statements:
            db.execute(statement)

    tamper(path, run)


def recompute_shots(path: Path, edit_row: int) -> None:
    """Someone who knows the scheme edits one shot and recomputes every hash after it."""
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT id, body FROM shots ORDER BY id").fetchall()
    conn.close()
    last = hashlib.sha256(b"laserctl shot log v1 shots").digest()
    statements = []
    for row_id, original in rows:
        body = (
            original.replace('"measured":', '"measured":1', 1) if row_id == edit_row else original
        )
        digest = hashlib.sha256(last + body.encode()).digest()
        statements.append(
            f"UPDATE shots SET prev = x'{last.hex()}', hash = x'{digest.hex()}',"
            f" body = '{body}' WHERE id = {row_id}"
        )
        last = digest
    attack(path, *statements)


def verify(path: Path, *args: str) -> Result:
    return CliRunner().invoke(main, ["log", "verify", "--db", str(path), *args])


def chain_only_problems(path: Path) -> list[str]:
    """What verify says apart from the checkpoints: what `log verify` said before issue 14."""
    store = open_store(path, readonly=True)
    report = store.verify()
    store.close()
    return [str(p) for p in report.problems if "checkpoint" not in p.what]


@pytest.mark.req("SR-12")
def test_an_untouched_log_verifies_intact_with_its_checkpoints(db: Path) -> None:
    result = verify(db)
    assert result.exit_code == 0, result.output
    assert result.output.startswith("intact: ") and "held to 2 checkpoint(s)" in result.output


@pytest.mark.req("SR-12")
def test_the_attackers_truncation_is_named_by_table_and_rows(db: Path) -> None:
    """Issue 14's attack: delete the last shots with sqlite3, set chain_heads to the new tail,
    restore the triggers. The chains alone say intact; the checkpoint does not."""
    store = open_store(db, readonly=True)
    last = store.checkpoints()[-1]
    store.close()
    attack(db, f"DELETE FROM shots WHERE id > {2 * PER_SESSION - 3}")
    assert chain_only_problems(db) == []  # what made `log verify` say "intact" before
    result = verify(db)
    assert result.exit_code == 1
    assert result.output.startswith(f"NOT INTACT: 1 problem(s) in {db}")
    assert (
        f"  shots row 18: deleted: rows 18..20 are gone: the checkpoint {last.made_at} of "
        f"laserctl/{last.console_id} signed 20 records" in result.output
    )
    assert "signed 20 records, the log holds 17 (truncated)" in result.output


@pytest.mark.req("SR-12")
def test_a_rewrite_with_a_recomputed_chain_is_named_with_the_rows_it_lies_in(db: Path) -> None:
    recompute_shots(db, edit_row=15)
    assert chain_only_problems(db) == []
    result = verify(db)
    assert result.exit_code == 1
    assert "shots row 20: rewritten: row 20 no longer hashes to what the checkpoint" in (
        result.output
    )
    assert "the change lies in rows 11..20" in result.output  # the first checkpoint still holds


@pytest.mark.req("SR-12")
def test_an_early_rewrite_is_bracketed_by_the_first_checkpoint(db: Path) -> None:
    recompute_shots(db, edit_row=3)
    result = verify(db, "--json")
    assert result.exit_code == 1
    (problem,) = json.loads(result.output)["problems"]
    assert (problem["table"], problem["row"]) == ("shots", PER_SESSION)
    assert "the change lies in rows 1..10 (1 more checkpoint(s) say so too)" in problem["what"]


@pytest.mark.req("SR-12")
def test_a_shipped_checkpoint_still_catches_it_after_the_local_ones_are_deleted(
    db: Path, tmp_path: Path
) -> None:
    shipped = tmp_path / "shipped.txt"
    made = CliRunner().invoke(main, ["log", "checkpoint", "--db", str(db), "--out", str(shipped)])
    assert made.exit_code == 0, made.output
    assert parse(shipped.read_text()).sizes["shots"] == 2 * PER_SESSION
    assert shipped.read_text() in made.output
    # The thorough attacker: the last shots, every session end that says a checkpoint was made
    # with it (and everything after), and every checkpoint in the log.
    attack(
        db,
        f"DELETE FROM shots WHERE id > {2 * PER_SESSION - 2}",
        "DELETE FROM events WHERE id >= (SELECT min(id) FROM events WHERE kind = 'session_end')",
        "DELETE FROM checkpoints",
    )
    alone = verify(db)
    # Stated limit: with every local trace gone and nothing given, the log looks intact.
    assert alone.exit_code == 0 and "held to" not in alone.output, alone.output
    caught = verify(db, "--checkpoint", str(shipped))
    assert caught.exit_code == 1
    assert "shots row 19: deleted: rows 19..20 are gone" in caught.output
    assert "events row " in caught.output and "(truncated)" in caught.output


@pytest.mark.req("SR-12")
def test_deleting_only_the_local_checkpoints_is_itself_detected(db: Path) -> None:
    attack(db, f"DELETE FROM shots WHERE id > {2 * PER_SESSION - 1}", "DELETE FROM checkpoints")
    result = verify(db)
    assert result.exit_code == 1
    assert "this session end was stored with a checkpoint, and no checkpoint covering it is" in (
        result.output
    )


@pytest.mark.req("SR-12")
def test_a_forged_checkpoint_is_reported(db: Path, tmp_path: Path) -> None:
    """The attacker edits a shipped checkpoint to fit the truncated log: the signature fails."""
    store = open_store(db)
    genuine = store.checkpoint()
    store.close()
    attack(db, f"DELETE FROM shots WHERE id > {2 * PER_SESSION - 2}")
    conn = sqlite3.connect(db)
    (tail,) = conn.execute("SELECT hash FROM shots ORDER BY id DESC LIMIT 1").fetchone()
    conn.close()
    forged = genuine.text().replace(
        f"shots {2 * PER_SESSION} {base64.b64encode(genuine.heads['shots']).decode()}",
        f"shots {2 * PER_SESSION - 2} {base64.b64encode(tail).decode()}",
    )
    assert forged != genuine.text()
    file = tmp_path / "forged.txt"
    file.write_text(forged)
    result = verify(db, "--checkpoint", str(file))
    assert result.exit_code == 1
    assert (
        f"checkpoints: given checkpoint {genuine.made_at} of {genuine.origin}: the signature "
        "does not verify: the checkpoint was forged or altered" in result.output
    )


@pytest.mark.req("SR-12")
def test_a_checkpoint_of_another_console_is_reported(db: Path, tmp_path: Path) -> None:
    other_log = tmp_path / "other.db"
    other = open_store(other_log, console_key=lambda: console_key.load_or_create(tmp_path / "k"))
    foreign = other.checkpoint()
    other.close()
    file = tmp_path / "foreign.txt"
    file.write_text(foreign.text())
    result = verify(db, "--checkpoint", str(file))
    assert result.exit_code == 1
    assert f"made by console {foreign.console_id}, not by this log's console" in result.output
    # pinned to the console's key, even the log's own checkpoints must be signed with it
    pinned = verify(db, "--console-key", foreign.public_key)
    assert pinned.exit_code == 1
    assert pinned.output.count(f"not by this log's console {foreign.console_id}") == 2


def test_a_file_that_is_not_a_checkpoint_is_a_usage_error_naming_it(
    db: Path, tmp_path: Path
) -> None:
    file = tmp_path / "notes.txt"
    file.write_text("hello\n")
    result = verify(db, "--checkpoint", str(file))
    assert result.exit_code == 2
    assert f"not a checkpoint: {file}" in result.output
    missing = verify(db, "--checkpoint", str(tmp_path / "none.txt"))
    assert missing.exit_code == 2 and "cannot read checkpoint" in missing.output


def test_log_checkpoint_refuses_to_sign_a_log_that_does_not_verify(
    db: Path, tmp_path: Path
) -> None:
    attack(db, f"DELETE FROM shots WHERE id > {2 * PER_SESSION - 1}")
    out = tmp_path / "cp.txt"
    result = CliRunner().invoke(main, ["log", "checkpoint", "--db", str(db), "--out", str(out)])
    assert result.exit_code == 1
    assert "is not intact (1 problem(s), the first: shots row 20: deleted" in result.output
    assert "nothing signed" in result.output and not out.exists()
    missing = CliRunner().invoke(main, ["log", "checkpoint", "--db", str(tmp_path / "x.db")])
    assert missing.exit_code == 2 and "no shot log at" in missing.output
