"""`laserctl log verify --central URL`: the log held to the checkpoints its console shipped to
the central store. The attack of issue 14 (rows deleted or rewritten with sqlite3, chain_heads
fixed, the local checkpoints deleted) passes a local verify; the central checkpoints catch it."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from laserctl.cli import main
from laserctl.fleet.push import push

from .fleet import forge, key_for, make_log, pushed_log, truncate


def verify(db: Path, *extra: str) -> tuple[int, str]:
    done = CliRunner().invoke(main, ["log", "verify", "--db", str(db), *extra])
    return done.exit_code, done.output


@pytest.mark.req("SR-12")
def test_a_truncated_log_passes_locally_and_fails_against_the_central_checkpoints(
    pg_url: str, tmp_path: Path
) -> None:
    db, k = pushed_log(tmp_path, pg_url)
    code, out = verify(db, "--central", pg_url, "--console-key", k.public_text())
    assert code == 0, out
    assert f"1 checkpoint(s) of console {k.console_id}" in out and "intact" in out
    truncate(db, "shots", 17)
    assert verify(db)[0] == 0  # what the attacker wanted
    code, out = verify(db, "--central", pg_url, "--console-key", k.public_text())
    assert code == 1, out
    assert "NOT INTACT" in out and "shots" in out


@pytest.mark.req("SR-12")
def test_a_rewritten_log_fails_against_the_central_checkpoints(pg_url: str, tmp_path: Path) -> None:
    db, k = pushed_log(tmp_path, pg_url)
    forge(db, "shots", 3, "measured", 50.0)
    assert verify(db)[0] == 0
    code, out = verify(db, "--central", pg_url, "--console-key", k.public_text())
    assert code == 1 and "shots" in out, out


def test_the_console_is_found_from_the_logs_own_checkpoints(pg_url: str, tmp_path: Path) -> None:
    db = tmp_path / "a.db"
    make_log(db, shots=2)
    k = key_for(db)
    push(db, pg_url, key=k)
    code, out = verify(db, "--central", pg_url)
    assert code == 0, out
    assert f"console {k.console_id}" in out


def test_a_console_the_central_store_never_saw_is_an_error(pg_url: str, tmp_path: Path) -> None:
    db, other = tmp_path / "a.db", tmp_path / "b.db"
    make_log(db, shots=2)
    make_log(other, shots=2)
    push(other, pg_url, key=key_for(other))
    code, out = verify(db, "--central", pg_url)
    assert code == 1
    assert f"console {key_for(db).console_id} never pushed there" in out
