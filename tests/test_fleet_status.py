"""Checkpoints shipped and checked on arrival; `laserctl fleet push` and `fleet status` on the
command line, against a real PostgreSQL."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner

from laserctl.auth import console_key
from laserctl.cli import main
from laserctl.fleet.central import FleetRefused
from laserctl.fleet.push import push
from laserctl.records import checkpoints

from .fleet import key, key_for, make_log
from .test_fleet_push import local_rows, refusals


def checkpoint(db: Path, signer_db: Path | None = None, *, k: console_key.ConsoleKey) -> int:
    """A checkpoint of `signer_db` (default: `db` itself) signed with `k`, saved in `db`'s
    log as `laserctl log checkpoint` does; its id there."""
    source = sqlite3.connect(signer_db or db)
    cp = checkpoints.make(source, k, time.time())
    source.close()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        return checkpoints.save(conn, cp)
    finally:
        conn.close()


def central_checkpoints(url: str) -> list[str]:
    with psycopg.connect(url) as conn:
        return [str(t) for (t,) in conn.execute("SELECT text FROM fleet_checkpoints")]


def test_the_session_ends_checkpoints_are_shipped_and_verified_on_arrival(
    pg_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "a.db"
    make_log(db, shots=10)  # its session end stored a checkpoint
    make_log(db, shots=4, patient="P-0002", first=11)  # and a second one
    k = key_for(db)
    report = push(db, pg_url, key=k)
    assert report.checkpoints == 2
    texts = central_checkpoints(pg_url)
    assert sorted(checkpoints.parse(t).sizes["shots"] for t in texts) == [10, 14]
    assert push(db, pg_url, key=k).checkpoints == 0  # acknowledged: not sent again


def test_a_checkpoint_signed_by_another_key_is_refused(pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make_log(db, shots=3)
    k = key_for(db)
    forged = checkpoint(db, k=key(tmp_path, "intruder"))
    with pytest.raises(
        FleetRefused, match=f"console {k.console_id} table checkpoints row {forged}"
    ):
        push(db, pg_url, key=k)
    assert [(t, r) for _, t, r, _ in refusals(pg_url)] == [("checkpoints", forged)]
    assert len(central_checkpoints(pg_url)) == 1  # the genuine one before it


def test_a_checkpoint_that_disagrees_with_the_stored_rows_is_refused(
    pg_url: str, tmp_path: Path
) -> None:
    db, other = tmp_path / "a.db", tmp_path / "other.db"
    make_log(db, shots=10)
    make_log(other, shots=10)  # the same shape, other bytes (times, values)
    k = key_for(db)
    checkpoint(db, other, k=k)  # signed by the right key, but of another log
    with pytest.raises(FleetRefused, match=r"row 1: checkpoint 2 .*differs from the stored row"):
        push(db, pg_url, key=k)


def test_push_and_status_on_the_command_line(pg_url: str, tmp_path: Path) -> None:
    a_db, b_db = tmp_path / "a.db", tmp_path / "b.db"
    make_log(a_db, shots=8)
    make_log(b_db, shots=4, patient="P-0002")
    a_key, b_key = tmp_path / "a.pem", tmp_path / "b.pem"
    runner = CliRunner()
    pushed = runner.invoke(
        main, ["fleet", "push", "--to", pg_url, "--db", str(a_db), "--key", str(a_key), "--json"]
    )
    assert pushed.exit_code == 0, pushed.output
    a_id = json.loads(pushed.output)["console"]
    assert json.loads(pushed.output)["shipped"]["shots"] == 8
    pushed = runner.invoke(
        main, ["fleet", "push", "--to", pg_url, "--db", str(b_db), "--key", str(b_key)]
    )
    assert pushed.exit_code == 0 and "shipped" in pushed.output
    make_log(a_db, shots=3, patient="P-0003", first=9)  # not shipped yet: pending

    shown = runner.invoke(
        main,
        ["fleet", "status", "--to", pg_url, "--db", str(a_db), "--key", str(a_key), "--json"],
    )
    assert shown.exit_code == 0, shown.output
    report = json.loads(shown.output)
    consoles = {c["console"]: c for c in report["consoles"]}
    assert len(consoles) == 2
    assert consoles[a_id]["shipped"]["shots"] == {"rows": 8, "last_row": 8}
    assert report["local"]["pending"]["shots"] == 3
    assert report["local"]["pending"]["checkpoints"] == 1
    assert consoles[a_id]["verified"]["checkpoints"] == 1
    assert consoles[a_id]["refusals"]["count"] == 0

    runner.invoke(main, ["fleet", "push", "--to", pg_url, "--db", str(a_db), "--key", str(a_key)])
    shown = runner.invoke(
        main, ["fleet", "status", "--to", pg_url, "--db", str(a_db), "--key", str(a_key)]
    )
    assert shown.exit_code == 0, shown.output
    rows = sum(len(r) for r in local_rows(a_db).values())
    assert f"console {a_id}: {rows} rows shipped" in shown.output
    assert "  shots: 11 rows (up to row 11)" in shown.output
    assert "verified: 2 checkpoints, last" in shown.output and "holds" in shown.output
    assert "pending in" in shown.output and ": nothing" in shown.output


def test_a_refusal_on_the_command_line_names_the_row_and_fails(pg_url: str, tmp_path: Path) -> None:
    from .fleet import truncate

    db = tmp_path / "a.db"
    make_log(db, shots=6)
    args = ["fleet", "push", "--to", pg_url, "--db", str(db), "--key", str(tmp_path / "a.pem")]
    runner = CliRunner()
    assert runner.invoke(main, args).exit_code == 0
    truncate(db, "shots", 4)
    refused = runner.invoke(main, args)
    assert refused.exit_code == 1
    assert "table shots row 5" in refused.output and "truncated" in refused.output
    shown = runner.invoke(main, ["fleet", "status", "--to", pg_url])
    assert "refused 1 time(s)" in shown.output


def test_status_of_an_unreachable_store_fails_naming_it(tmp_path: Path) -> None:
    shown = CliRunner().invoke(
        main, ["fleet", "status", "--to", "postgresql://nobody:pw@127.0.0.1:1/none"]
    )
    assert shown.exit_code == 1
    assert "central store postgresql://nobody@127.0.0.1:1/none: cannot connect" in shown.output
