"""The PostgreSQL test harness itself: a real server, a fresh database per test, nothing left."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from scripts import pgserver
from tests.pg import PgCluster

_seen: list[str] = []


def test_each_test_gets_a_fresh_empty_database(pg_url: str) -> None:
    with psycopg.connect(pg_url) as conn:
        name = conn.execute("SELECT current_database()").fetchone()
        tables = conn.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'"
        ).fetchone()
        conn.execute("CREATE TABLE left_behind (x int)")
    assert name is not None and tables == (0,)
    assert name[0] not in _seen
    _seen.append(name[0])


def test_a_second_test_does_not_see_the_first_ones_tables(pg_url: str) -> None:
    test_each_test_gets_a_fresh_empty_database(pg_url)
    assert len(_seen) == 2


def test_the_database_is_dropped_after_the_test(pg_server: PgCluster) -> None:
    url = pg_server.create_database("harness_probe")
    pg_server.drop_database("harness_probe")
    with psycopg.connect(pg_server.admin_url) as conn:
        rows = conn.execute(
            "SELECT count(*) FROM pg_database WHERE datname = 'harness_probe'"
        ).fetchone()
    assert rows == (0,)
    assert "/harness_probe?" in url or url.endswith("/harness_probe")


def test_the_fixture_fails_and_does_not_skip_when_postgresql_cannot_start(tmp_path: Path) -> None:
    (tmp_path / "test_needs_pg.py").write_text("def test_x(pg_url):\n    pass\n", encoding="utf-8")
    (tmp_path / "conftest.py").write_text(
        "from tests.pg import pg_server, pg_url  # noqa: F401\n", encoding="utf-8"
    )
    root = Path(__file__).resolve().parents[1]
    env = dict(os.environ, LASERCTL_PG_BIN=str(tmp_path / "no-postgres"), PYTHONPATH=str(root))
    env.pop("LASERCTL_TEST_PG_URL", None)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout
    assert "1 error" in done.stdout and "skipped" not in done.stdout
    assert "PostgreSQL for the tests could not be started" in done.stdout


def test_a_killed_owner_leaves_no_server_behind() -> None:
    """pytest killed with SIGKILL: the watchdog stops the server and removes its directory."""
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        server = pgserver.start(owner=owner.pid)
        with psycopg.connect(server.url()) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        pid = int((server.data / "postmaster.pid").read_text().split()[0])
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and (server.root.exists() or _alive(pid)):
            time.sleep(0.1)
        assert not server.root.exists()
        assert not _alive(pid)
    finally:
        owner.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0]
    except OSError:
        return "Z"
