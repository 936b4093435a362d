"""`laserctl identify` and `laserctl demo` against a device URL (a simulator process by default)."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from .conftest import SimProcess, run_laserctl


@pytest.mark.hardware_safe
def test_identify_json_names_the_handpiece(device_url: str) -> None:
    result = run_laserctl("identify", "--device", device_url, "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert {"handpiece", "serial", "firmware", "protocol", "capabilities"} <= data.keys()
    assert data["handpiece"] in ("fractional-1550", "ndyag-1064")
    assert data["protocol"] == 1
    assert data["serial"]
    for window in data["capabilities"].values():
        assert window["min"] < window["max"]


@pytest.mark.parametrize("handpiece", ["fractional-1550", "ndyag-1064"])
def test_identify_over_tcp_both_handpieces(handpiece: str) -> None:
    sim = SimProcess(handpiece, "tcp:0")
    try:
        assert sim.url.startswith("socket://127.0.0.1:")
        result = run_laserctl("identify", "--device", sim.url, "--json")
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["handpiece"] == handpiece
    finally:
        sim.stop()


def test_demo_streams_shots_from_a_simulator_process(sim_process: SimProcess) -> None:
    result = run_laserctl("demo", "--device", sim_process.url, "--seconds", "3", "--pulses", "3")
    assert result.returncode == 0, result.stderr
    shot_lines = [line for line in result.stdout.splitlines() if line.startswith("shot ")]
    assert len(shot_lines) == 3, result.stdout
    assert "GRANT_EXHAUSTED" in result.stdout
    assert "EMITTING" in result.stdout


@pytest.fixture
def silent_server() -> Iterator[str]:
    """Accepts a connection and never says a word."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.1)
        held: list[socket.socket] = []
        while not stop.is_set():
            try:
                conn, _ = server.accept()
                held.append(conn)
            except TimeoutError:
                continue
        for conn in held:
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"socket://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


@pytest.fixture
def garbage_server() -> Iterator[str]:
    """Answers every byte with random garbage (a wrong device, or the wrong baud rate)."""
    server = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()
    rng = random.Random(7)

    def serve() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conn.settimeout(0.05)
            with conn:
                while not stop.is_set():
                    try:
                        conn.sendall(bytes(rng.randrange(256) for _ in range(64)))
                        conn.recv(4096)
                    except TimeoutError:
                        continue
                    except OSError:
                        break

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"socket://127.0.0.1:{server.getsockname()[1]}"
    stop.set()
    thread.join()
    server.close()


def test_identify_silent_device_fails_clearly_within_seconds(silent_server: str) -> None:
    start = time.monotonic()
    result = run_laserctl("identify", "--device", silent_server, "--timeout", "1.5")
    elapsed = time.monotonic() - start
    assert result.returncode == 3
    assert "no answer to HELLO" in result.stderr
    assert silent_server in result.stderr
    assert elapsed < 15  # "within a few seconds": generous for a loaded machine


@pytest.mark.req("SR-16")
def test_identify_garbage_device_fails_clearly(garbage_server: str) -> None:
    result = run_laserctl("identify", "--device", garbage_server, "--timeout", "1.5")
    assert result.returncode == 3
    assert "no valid HELLO_INFO" in result.stderr
    assert "frames rejected" in result.stderr


def test_identify_missing_port_fails_clearly() -> None:
    result = run_laserctl("identify", "--device", "/dev/ttyDOESNOTEXIST0")
    assert result.returncode == 3
    assert "/dev/ttyDOESNOTEXIST0" in result.stderr
