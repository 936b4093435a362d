"""Shared test configuration: hypothesis profiles (bounded for CI, long for `make soak`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "soak",
    max_examples=20_000,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile("dev", max_examples=100, deadline=None)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture
def pty_sim() -> Iterator[str]:
    """A fractional handpiece simulator in its own process on a pty; yields the pty path."""
    laserctl = str(Path(sys.executable).with_name("laserctl"))
    proc = subprocess.Popen(
        [laserctl, "sim", "--handpiece", "fractional-1550", "--listen", "pty"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline().strip()
        assert line.startswith("pty: "), line
        yield line.removeprefix("pty: ")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - defensive
            proc.kill()
            proc.wait()


# A real PostgreSQL for the fleet tests: `pg_server` (per run) and `pg_url` (a database per test).
from tests.pg import pg_server, pg_url  # noqa: E402, F401
