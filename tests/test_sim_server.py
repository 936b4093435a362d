"""The simulator's servers in real time: a pty and TCP, each answering HELLO for
drivers.host.HandpieceConnection and serving a host that comes back; the Pacer's UART timing.

Every wait is bounded. Timing assertions are lower bounds only: a busy machine may be slow,
never fast.
"""

from __future__ import annotations

import os
import select
import socket
import threading
import time
import tty
from collections.abc import Callable, Iterator

import pytest

from drivers.host import HandpieceConnection
from drivers.protocol import (
    PROTOCOL_VERSION,
    DeviceState,
    FrameDecoder,
    GetStatus,
    Hello,
    HelloInfo,
    Status,
    encode_frame,
)
from drivers.protocol.framing import ProtocolError
from drivers.protocol.messages import decode_message
from drivers.sim.firmware import SimulatedHandpiece
from drivers.sim.server import Pacer, PtyServer, TcpServer

BAUD = 115200
HELLO = encode_frame(Hello.TYPE, 1, Hello(PROTOCOL_VERSION, PROTOCOL_VERSION).pack())


def start(server: PtyServer | TcpServer) -> Callable[[], None]:
    thread = threading.Thread(target=server.serve_forever, name="sim server", daemon=True)
    thread.start()

    def stop() -> None:
        server.stop.set()
        thread.join(timeout=2.0)
        assert not thread.is_alive(), "server thread did not stop"
        server.close()

    return stop


def simulator(handpiece: str = "fractional-1550", seed: int = 5) -> SimulatedHandpiece:
    return SimulatedHandpiece(handpiece, seed=seed, now=time.monotonic())


@pytest.fixture
def pty_server() -> Iterator[PtyServer]:
    server = PtyServer(simulator())
    stop = start(server)
    yield server
    stop()


@pytest.fixture
def tcp_server() -> Iterator[TcpServer]:
    server = TcpServer(simulator("ndyag-1064", seed=6))
    stop = start(server)
    yield server
    stop()


def hello_over(url: str, expected_serial: str) -> int:
    """Connect, identify, read STATUS, disconnect; returns the boot_id the device reported."""
    with HandpieceConnection(url, reconnect=False, hello_timeout=3.0) as conn:
        assert conn.info is not None
        assert conn.info.serial == expected_serial
        assert conn.info.simulated
        status = conn.call(GetStatus(), timeout=2.0)
        assert isinstance(status, Status)
        assert status.body.state == DeviceState.NOT_TESTED
        return conn.info.boot_id


def read_frames(fd: int, until: type, timeout: float = 3.0) -> list[object]:
    """Decode what arrives on a raw fd until a message of type `until` (bounded wait)."""
    decoder = FrameDecoder()
    seen: list[object] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], 0.05)
        if not readable:
            continue
        decoder.feed(os.read(fd, 4096))
        while (item := decoder.next()) is not None:
            if isinstance(item, ProtocolError):
                continue
            message = decode_message(item.type, item.payload)
            seen.append(message)
            if isinstance(message, until):
                return seen
    raise AssertionError(f"no {until.__name__} within {timeout} s; saw {seen}")


def drain(fd: int, quiet: float = 0.1, limit: float = 2.0) -> None:
    """Read and drop whatever arrives until the line has been quiet for `quiet` seconds."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        readable, _, _ = select.select([fd], [], [], quiet)
        if not readable:
            return
        os.read(fd, 4096)
    raise AssertionError(f"the line did not go quiet within {limit} s")


def timed_hello(fd: int) -> tuple[float, int]:
    """Write HELLO and wait for HELLO_INFO; returns (seconds taken, HELLO_INFO frame size)."""
    drain(fd)  # BOOT and STATUS_CHANGED from power-up, paced like everything else
    start = time.monotonic()
    os.write(fd, HELLO)
    info = read_frames(fd, HelloInfo)[-1]
    elapsed = time.monotonic() - start
    assert isinstance(info, HelloInfo)
    return elapsed, len(encode_frame(HelloInfo.TYPE, 1, info.pack()))


def uart_time(n_bytes: int, baud: int = BAUD) -> float:
    return n_bytes * 10 / baud  # 8N1: ten bit times a byte


# ---- pty ----------------------------------------------------------------------------------------
def test_pty_answers_hello(pty_server: PtyServer) -> None:
    assert pty_server.path.startswith("/dev/")
    hello_over(pty_server.path, "FX-00005")


def test_pty_serves_a_host_that_reconnects(pty_server: PtyServer) -> None:
    first = hello_over(pty_server.path, "FX-00005")
    second = hello_over(pty_server.path, "FX-00005")
    assert second == first  # the same simulator, still running: no reboot


def test_pty_raw_fd_hello(pty_server: PtyServer) -> None:
    # A raw open of the slave, as a C host or a serial terminal program would do it.
    fd = os.open(pty_server.path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        os.write(fd, HELLO)
        info = read_frames(fd, HelloInfo)[-1]
        assert isinstance(info, HelloInfo)
        assert (info.serial, info.firmware) == ("FX-00005", "sim-1.0.0")
    finally:
        os.close(fd)


# ---- TCP ----------------------------------------------------------------------------------------
def test_tcp_answers_hello(tcp_server: TcpServer) -> None:
    assert tcp_server.url == f"socket://127.0.0.1:{tcp_server.port}"
    hello_over(tcp_server.url, "ND-00006")


def test_tcp_serves_a_host_that_reconnects(tcp_server: TcpServer) -> None:
    first = hello_over(tcp_server.url, "ND-00006")
    second = hello_over(tcp_server.url, "ND-00006")
    assert second == first


def test_in_process_sim_url_answers_hello() -> None:
    with HandpieceConnection("sim:ndyag-1064?seed=4", reconnect=False) as conn:
        assert conn.info is not None
        assert (conn.info.handpiece.slug, conn.info.serial) == ("ndyag-1064", "ND-00004")
        assert isinstance(conn.call(GetStatus(), timeout=2.0), Status)


# ---- pacing -------------------------------------------------------------------------------------
def test_pacer_delays_a_frame_by_its_uart_time() -> None:
    pacer = Pacer(BAUD)
    frame = bytes(100)
    pacer.push(frame, 10.0)
    due = 10.0 + uart_time(len(frame))
    assert pacer.next_due() == pytest.approx(due)
    assert pacer.pop_due(due - 1e-6) == b""
    assert pacer.pop_due(due) == frame
    # Back to back: the second frame waits for the first to be on the wire.
    pacer.push(b"a" * 50, 20.0)
    pacer.push(b"b" * 50, 20.0)
    assert pacer.pop_due(20.0 + uart_time(50)) == b"a" * 50
    assert pacer.pop_due(20.0 + uart_time(100)) == b"b" * 50


def test_pacer_without_baud_passes_bytes_at_once() -> None:
    pacer = Pacer(None)
    pacer.push(b"frame", 5.0)
    assert pacer.pop_due(5.0) == b"frame"


@pytest.mark.parametrize("baud", [BAUD, 9600])
def test_throttled_tcp_server_paces_both_directions(baud: int) -> None:
    server = TcpServer(simulator(), baud=baud)
    stop = start(server)
    try:
        with socket.create_connection(("127.0.0.1", server.port), timeout=2.0) as sock:
            elapsed, reply_size = timed_hello(sock.fileno())
    finally:
        stop()
    # HELLO is paced on its way in and HELLO_INFO on its way out; lower bound only.
    assert elapsed >= uart_time(len(HELLO) + reply_size, baud)


def test_throttled_pty_server_paces_both_directions() -> None:
    server = PtyServer(simulator(), baud=BAUD)
    stop = start(server)
    fd = os.open(server.path, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        elapsed, reply_size = timed_hello(fd)
    finally:
        os.close(fd)
        stop()
    assert elapsed >= uart_time(len(HELLO) + reply_size)
