"""The whole system against a device URL.

By default every test gets a fresh simulator in its own process on a pty (`laserctl sim`);
`pytest hil_tests --device URL` runs the same tests against another device URL instead
(socket://..., usb:..., or a real handpiece on a bench: docs/hil.md says which tests are safe
on hardware).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LASERCTL = [sys.executable, "-m", "laserctl"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default=None, help="device URL; default: a fresh `laserctl sim`")
    parser.addoption(
        "--handpiece",
        default="fractional-1550",
        help="handpiece type of the default simulator",
    )


class SimProcess:
    """`laserctl sim --listen pty|tcp:0` in its own process; `url` is what a host opens."""

    def __init__(self, handpiece: str, listen: str = "pty", *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*LASERCTL, "sim", "--handpiece", handpiece, "--listen", listen, *extra],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        assert self.proc.stdout is not None
        first = self.proc.stdout.readline().strip()
        kind, _, value = first.partition(": ")
        if kind not in ("pty", "url"):
            self.stop()
            raise RuntimeError(f"laserctl sim printed {first!r} as its first line")
        self.url = value

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def sim_process(request: pytest.FixtureRequest) -> Iterator[SimProcess]:
    sim = SimProcess(request.config.getoption("--handpiece"))
    yield sim
    sim.stop()


@pytest.fixture
def device_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = request.config.getoption("--device")
    if url:
        yield url
        return
    sim = SimProcess(request.config.getoption("--handpiece"))
    yield sim.url
    sim.stop()


def run_laserctl(*args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    return subprocess.run(
        [*LASERCTL, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=env,
    )
