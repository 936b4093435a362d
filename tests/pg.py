"""pytest fixtures for a real PostgreSQL: `pg_server` (one per test run) and `pg_url` (one fresh
database per test).

The server is the one `scripts/pg-test-server` starts (scripts/pgserver.py): Debian's
PostgreSQL 15 on a private unix socket, stopped at the end of the session, and by a watchdog if
pytest is killed. With LASERCTL_TEST_PG_URL set (`scripts/pg-test-server run -- pytest ...`)
that server is used instead. When PostgreSQL cannot be started the tests that need it FAIL,
they never skip.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Iterator
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest

from scripts import pgserver

_counter = itertools.count(1)


@dataclass(frozen=True)
class PgCluster:
    admin_url: str  # the `postgres` database, for CREATE/DROP DATABASE

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path="/" + name))

    def create_database(self, name: str) -> str:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.database_url(name)

    def drop_database(self, name: str) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgCluster]:
    given = os.environ.get("LASERCTL_TEST_PG_URL")
    if given:
        yield PgCluster(admin_url=given)
        return
    try:
        server = pgserver.start()
    except pgserver.PgStartFailed as e:
        pytest.fail(f"PostgreSQL for the tests could not be started: {e}", pytrace=False)
    try:
        yield PgCluster(admin_url=server.url())
    finally:
        pgserver.stop(server.root)


@pytest.fixture
def pg_url(pg_server: PgCluster) -> Iterator[str]:
    """The URL of a fresh, empty database of its own for this test."""
    name = f"t{os.getpid()}_{next(_counter)}"
    url = pg_server.create_database(name)
    try:
        yield url
    finally:
        pg_server.drop_database(name)
