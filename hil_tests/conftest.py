"""The whole system against a device URL.

By default every test gets a fresh simulator in its own process on a pty (`laserctl sim`);
`pytest hil_tests --device URL` runs the same tests against another device URL instead
(socket://..., usb:..., or a real handpiece on a bench: docs/hil.md says which tests are safe
on hardware). `--real-timing` throttles every simulator to 115200 baud 8N1.

Markers: `hardware_safe` (the test never fires: it may run against a real handpiece; every
other test is skipped on one), `needs_persistent_device` (the device must outlive the process
that used it: skipped for `sim:` and the simulated `usb:`).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from drivers.protocol import DeviceInfo

    from .rig import Dut

ROOT = Path(__file__).resolve().parent.parent
LASERCTL = [sys.executable, "-m", "laserctl"]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default=None, help="device URL; default: a fresh `laserctl sim`")
    parser.addoption(
        "--handpiece",
        default="fractional-1550",
        help="handpiece type of the default simulator",
    )
    parser.addoption(
        "--real-timing",
        action="store_true",
        help="throttle every default simulator to 115200 baud 8N1 (laserctl sim --throttle)",
    )


REAL_TIMING_BAUD = 115200


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "hardware_safe: never fires; may run against a real handpiece (docs/hil.md)"
    )
    config.addinivalue_line(
        "markers",
        "needs_persistent_device: the device must outlive the process that used it",
    )


def throttle_args(config: pytest.Config) -> tuple[str, ...]:
    return ("--throttle", str(REAL_TIMING_BAUD)) if config.getoption("--real-timing") else ()


class SimProcess:
    """`laserctl sim --listen pty|tcp:0` in its own process; `url` is what a host opens."""

    def __init__(self, handpiece: str, listen: str = "pty", *extra: str) -> None:
        self.handpiece = handpiece
        self.extra = extra
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
    sim = SimProcess(request.config.getoption("--handpiece"), "pty", *throttle_args(request.config))
    yield sim
    sim.stop()


@pytest.fixture
def device_url(request: pytest.FixtureRequest) -> Iterator[str]:
    url = request.config.getoption("--device")
    if url:
        yield url
        return
    sim = SimProcess(request.config.getoption("--handpiece"), "pty", *throttle_args(request.config))
    yield sim.url
    sim.stop()


def run_laserctl(
    *args: str,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    preexec_fn: Callable[[], None] | None = None,
) -> subprocess.CompletedProcess[str]:
    """`laserctl ARGS` as a user runs it, from the repository root; env: this process's
    environment unless given."""
    return subprocess.run(
        [*LASERCTL, *args],
        check=False,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env=dict(os.environ if env is None else env),
        preexec_fn=preexec_fn,
    )


# ---- the device under test of the scenarios (hil_tests/rig.py) ----------------------------------
@pytest.fixture(scope="session")
def service_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Environment for laserctl processes: a throwaway service account (laserctl service setup)
    in a config directory of this test run, used by `laserctl calibrate`."""
    from .rig import SERVICE_PASSWORD, SERVICE_USER

    home = tmp_path_factory.mktemp("service")
    env = dict(os.environ)
    env["LASERCTL_CONFIG_DIR"] = str(home / "config")
    env["LASERCTL_SERVICE_USER"] = SERVICE_USER
    env["LASERCTL_SERVICE_PASSWORD"] = SERVICE_PASSWORD
    done = run_laserctl(
        "service",
        "setup",
        "--user",
        SERVICE_USER,
        "--db",
        str(home / "setup.db"),
        timeout=60,
        env=env,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return env


_IDENTIFIED: dict[str, DeviceInfo] = {}


def identify(url: str) -> DeviceInfo:
    """Who the handpiece at `url` is (once per test run)."""
    if url not in _IDENTIFIED:
        from .rig import open_connection

        connection, info = open_connection(url)
        connection.close()
        _IDENTIFIED[url] = info
    return _IDENTIFIED[url]


def _device_under_test(
    request: pytest.FixtureRequest,
    service_env: dict[str, str],
    tmp_path: Path,
    *,
    throttle: tuple[str, ...],
) -> Iterator[Dut]:
    from .rig import Dut, per_process

    handpiece: str = request.param
    url = request.config.getoption("--device")
    if url is None:
        sim = SimProcess(handpiece, "pty", *throttle)
        serial = "FX-00001" if handpiece == "fractional-1550" else "ND-00001"
        device = Dut(sim.url, handpiece, serial, True, True, service_env, tmp_path, sim)
        try:
            yield device
        finally:
            sim.stop()
        return
    info = identify(url)
    if info.handpiece.slug != handpiece:
        pytest.skip(f"--device {url} is a {info.handpiece.slug}")
    if not info.simulated and request.node.get_closest_marker("hardware_safe") is None:
        pytest.skip("fires or injects faults: simulated handpieces only (docs/hil.md)")
    persistent = not per_process(url)
    if not persistent and request.node.get_closest_marker("needs_persistent_device"):
        pytest.skip(f"{url}: the simulator lives and dies with each process that opens it")
    device = Dut(url, handpiece, info.serial, info.simulated, persistent, service_env, tmp_path)
    device.restore()
    try:
        yield device
    finally:
        device.restore()


@pytest.fixture(params=["fractional-1550", "ndyag-1064"])
def dut(
    request: pytest.FixtureRequest, service_env: dict[str, str], tmp_path: Path
) -> Iterator[Dut]:
    """The device under test, once per handpiece type: a fresh `laserctl sim` process on a pty
    (throttled with --real-timing), or the --device URL when it is that type."""
    yield from _device_under_test(
        request, service_env, tmp_path, throttle=throttle_args(request.config)
    )


@pytest.fixture(params=["fractional-1550", "ndyag-1064"])
def timed_dut(
    request: pytest.FixtureRequest, service_env: dict[str, str], tmp_path: Path
) -> Iterator[Dut]:
    """Like `dut`, but the default simulator always runs in real time: 115200 baud 8N1."""
    yield from _device_under_test(
        request, service_env, tmp_path, throttle=("--throttle", str(REAL_TIMING_BAUD))
    )
