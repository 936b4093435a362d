"""drivers.host.HandpieceConnection over real sockets: identification, TCP_NODELAY, a pulled
cable and the reconnect that identifies the handpiece again before anything else is sent."""

from __future__ import annotations

import math
import queue
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from drivers.host import (
    CommandRefused,
    CommandTimeout,
    HandpieceConnection,
    LinkDown,
    Notification,
    Reconnected,
    TransportLost,
)
from drivers.protocol import (
    Ack,
    Arm,
    DeviceEvent,
    Disarm,
    GetStatus,
    LinkSilent,
    NakReason,
    SetParams,
    SimControl,
    Status,
)
from drivers.sim.firmware import SimulatedHandpiece
from drivers.sim.server import TcpServer
from drivers.transport import Transport, TransportError, open_transport

from .clocks import Steppable


@pytest.fixture
def tcp_sim() -> Iterator[TcpServer]:
    server = TcpServer(SimulatedHandpiece("ndyag-1064", seed=3, now=time.monotonic()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.close()
    thread.join(timeout=2)


def wait_for(events: queue.Queue[Notification], kind: type, timeout: float = 5.0) -> Notification:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            event = events.get(timeout=0.05)
        except queue.Empty:
            continue
        if isinstance(event, kind):
            return event
    raise AssertionError(f"no {kind.__name__} within {timeout} s")


def test_socket_url_sets_tcp_nodelay(tcp_sim: TcpServer) -> None:
    transport = open_transport(tcp_sim.url)
    try:
        sock = transport._port._socket  # type: ignore[attr-defined]
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
    finally:
        transport.close()


def test_closing_a_socket_url_closes_the_socket_without_pyserials_sleep(
    tcp_sim: TcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pyserial's socket:// close() sleeps 0.3 s; ours closes the socket itself."""
    sleeps: list[float] = []
    transport = open_transport(tcp_sim.url)
    sock = transport._port._socket  # type: ignore[attr-defined]
    with monkeypatch.context() as patch:  # time.sleep is every thread's: patched only here
        patch.setattr(time, "sleep", sleeps.append)  # what pyserial's close() calls
        transport.close()
    assert sleeps == []
    assert sock.fileno() == -1  # closed
    assert not transport._port.is_open  # type: ignore[attr-defined]
    with pytest.raises(TransportError):
        transport.write(b"x")
    # The simulator sees the host leave and takes the next one at once.
    with HandpieceConnection(tcp_sim.url, reconnect=False) as conn:
        assert isinstance(conn.call(GetStatus()), Status)


@pytest.mark.req("SR-09")
@pytest.mark.parametrize("detect", [True, False], ids=["stall-detected", "stall-counted"])
def test_a_stall_of_the_host_is_not_silence_of_the_device(
    tcp_sim: TcpServer, monkeypatch: pytest.MonkeyPatch, detect: bool
) -> None:
    """The host's clock jumps 0.4 s, as it does for a process that was not running: the reader
    sends the heartbeat now due and hears the answer, so the device is not silent. Counted as
    silence (stall detection off) the same jump declares the link lost: the control."""
    if not detect:
        monkeypatch.setattr("drivers.host.STALL_S", math.inf)
    events: queue.Queue[Notification] = queue.Queue()
    clock = Steppable()
    with HandpieceConnection(tcp_sim.url, on_event=events.put, reconnect=False, clock=clock) as c:
        time.sleep(0.1)
        clock.offset += 0.4
        time.sleep(0.2)
        silent = [e for e in drain(events) if isinstance(e, LinkSilent)]
        assert bool(silent) is not detect, silent
        assert (c.stats.stalls >= 1) is detect
        if detect:
            assert isinstance(c.call(GetStatus()), Status)


def drain(events: queue.Queue[Notification]) -> list[Notification]:
    out = []
    while not events.empty():
        out.append(events.get_nowait())
    return out


def test_identify_over_tcp(tcp_sim: TcpServer) -> None:
    with HandpieceConnection(tcp_sim.url, reconnect=False) as conn:
        assert conn.info is not None
        assert conn.info.serial == "ND-00003"
        assert conn.info.handpiece.slug == "ndyag-1064"
        assert isinstance(conn.call(GetStatus()), Status)


def test_refusal_names_parameter_and_value(tcp_sim: TcpServer) -> None:
    with HandpieceConnection(tcp_sim.url, reconnect=False) as conn:
        with pytest.raises(CommandRefused) as refused:
            conn.call(SetParams(((2, 400_000),)))  # fluence 400 J/cm2: beyond capability
        assert refused.value.nak.reason == NakReason.OUT_OF_RANGE
        assert "fluence_j_cm2 = 400" in str(refused.value)


@pytest.mark.req("SR-16")
def test_arm_unanswered_counts_as_not_armed(tcp_sim: TcpServer) -> None:
    with HandpieceConnection(tcp_sim.url, reconnect=False) as conn:
        conn.call(GetStatus())
        # Every reply now arrives after the link's retry budget (4 x 50 ms) is spent.
        conn.send(SimControl("delay 600"))
        with pytest.raises(CommandTimeout, match="Arm: unanswered"):
            conn.call(Arm(5, 1000), timeout=2.0)


def test_pulled_cable_reconnects_and_identifies_first(tcp_sim: TcpServer) -> None:
    events: queue.Queue[Notification] = queue.Queue()
    opens: list[str] = []
    replugged = threading.Event()

    def opener(url: str) -> Transport:
        """The cable stays out until the test has seen the link down."""
        opens.append(url)
        if len(opens) > 1:
            assert replugged.wait(5.0), "never replugged"
        return open_transport(url)

    conn = HandpieceConnection(tcp_sim.url, on_event=events.put, reconnect=True, opener=opener)
    first = conn.open()
    try:
        # Pull the cable: shut the host's socket from under the connection.
        transport = conn.transport
        assert transport is not None
        transport._port._socket.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        lost = wait_for(events, TransportLost)
        assert isinstance(lost, TransportLost)
        with pytest.raises(LinkDown):
            conn.call(GetStatus(), timeout=0.2)
        replugged.set()
        again = wait_for(events, Reconnected)
        assert isinstance(again, Reconnected)
        assert again.info.serial == first.serial
        assert again.info.boot_id == first.boot_id  # same device, not rebooted
        assert isinstance(conn.call(GetStatus()), Status)
        assert conn.stats.connects == 2
    finally:
        conn.close()


def test_missing_port_is_a_transport_error_naming_it() -> None:
    with pytest.raises(TransportError, match="/dev/ttyNOPE9"):
        open_transport("/dev/ttyNOPE9")


def test_unknown_simulated_handpiece_is_named() -> None:
    with pytest.raises(TransportError, match="sim:co2-10600"):
        open_transport("sim:co2-10600")


# ---- call(): its waiter (a timeout, a close while waiting, a connection never opened) ----
def test_call_that_times_out_leaves_the_connection_usable(tcp_sim: TcpServer) -> None:
    with HandpieceConnection(tcp_sim.url, reconnect=False) as conn:
        conn.send(SimControl("delay 150"))  # answers held 150 ms: within the retry budget
        with pytest.raises(CommandTimeout, match=r"GetStatus: no answer in 0\.01 s"):
            conn.call(GetStatus(), timeout=0.01)
        # The late answer finds no one waiting; the next commands are answered as usual.
        assert isinstance(conn.call(SimControl("delay 0")), Ack)
        assert isinstance(conn.call(GetStatus()), Status)


def test_close_fails_a_call_still_waiting(tcp_sim: TcpServer) -> None:
    conn = HandpieceConnection(tcp_sim.url, reconnect=False)
    conn.open()
    conn.send(SimControl("delay 1000"))  # its own answer is held too
    outcome: queue.Queue[object] = queue.Queue()

    def waiting_call() -> None:
        try:
            outcome.put(conn.call(GetStatus(), timeout=5.0))
        except BaseException as exc:  # handed to the test thread
            outcome.put(exc)

    caller = threading.Thread(target=waiting_call)
    caller.start()
    while len(conn._futures) < 2:  # the call is queued behind SIM_CONTROL and waiting
        time.sleep(0.001)
    conn.close()
    caller.join(timeout=5.0)
    result = outcome.get(timeout=1.0)
    assert isinstance(result, LinkDown), result
    with pytest.raises(LinkDown, match="link is down"):
        conn.call(GetStatus(), timeout=0.1)


def test_call_on_a_connection_never_opened_is_link_down() -> None:
    conn = HandpieceConnection("sim:ndyag-1064", reconnect=False)
    with pytest.raises(LinkDown, match="link is down"):
        conn.call(GetStatus())


# ---- events that arrive during HELLO ----------------------------------------------------------
class InMemoryWire:
    """A Transport straight onto a SimulatedHandpiece of this process, on the real clock. The
    simulator's power-up BOOT (event 1) and STATUS_CHANGED (event 2) wait in its output, so the
    host reads them during its HELLO, before HELLO_INFO: events of the handshake. The first read
    from any thread but the one that opened the wire (that is, from the reader thread) applies
    `then`, so that event 3 comes after the handshake."""

    description = "in-memory simulator"

    def __init__(self, sim: SimulatedHandpiece, then: str) -> None:
        self.sim = sim
        self.then: str | None = then
        self.opened_by = threading.current_thread()
        self._lock = threading.Lock()  # writers and the reader both reach the simulator
        self._closed = threading.Event()

    def write(self, data: bytes) -> None:
        if self._closed.is_set():
            raise TransportError("in-memory simulator: closed")
        with self._lock:
            self.sim.receive(data, time.monotonic())

    def read(self, timeout: float) -> bytes:
        if self._closed.is_set():
            raise TransportError("in-memory simulator: closed")
        with self._lock:
            now = time.monotonic()
            if self.then is not None and threading.current_thread() is not self.opened_by:
                self.sim.inject(self.then, now)
                self.then = None
            self.sim.tick(now)
            data = self.sim.output(now)
        if not data:
            self._closed.wait(timeout)  # what a real read does when nothing comes
        return data

    def close(self) -> None:
        self._closed.set()


def device_event_no(event: Notification) -> int | None:
    return event.event.event_no if isinstance(event, DeviceEvent) else None


def test_events_of_the_handshake_reach_the_subscriber_before_any_later_one() -> None:
    """The subscriber hears events in the order the device sent them: the two that came during
    HELLO, from the thread calling open() and before the reader thread exists, then the one
    after, from the reader thread. Should a reader thread already be running while an early
    event is dispatched (the fault this guards against), the subscriber waits for the reader to
    dispatch event 3 first, so that the wrong order shows every time, not now and then."""
    wire = InMemoryWire(SimulatedHandpiece("ndyag-1064", seed=5, now=time.monotonic()), "open door")
    threads_before = set(threading.enumerate())
    heard: list[tuple[int, threading.Thread, bool]] = []  # event_no, thread, reader running
    event_3 = threading.Event()

    def subscriber(event: Notification) -> None:
        number = device_event_no(event)
        if number is None:
            return
        reader_running = any(t.is_alive() for t in set(threading.enumerate()) - threads_before)
        if number < 3 and reader_running:
            event_3.wait(5.0)  # let the reader overtake, as it can when it runs this early
        heard.append((number, threading.current_thread(), reader_running))
        if number == 3:
            event_3.set()

    conn = HandpieceConnection("mem:", on_event=subscriber, reconnect=False, opener=lambda _u: wire)
    try:
        conn.open()
        me = threading.current_thread()
        assert heard[:2] == [(1, me, False), (2, me, False)], heard  # before open() returned
        assert event_3.wait(5.0), "no event after the handshake"
        assert [number for number, _, _ in heard] == [1, 2, 3]
        _, reader, _ = heard[2]
        assert reader is not me and reader not in threads_before
        assert isinstance(conn.call(GetStatus()), Status)
    finally:
        conn.close()


def test_a_subscriber_that_fails_on_an_early_event_leaves_no_half_open_connection() -> None:
    """The error reaches the caller of open(), and nothing stays open behind it: no transport,
    no reader thread, and a command is LinkDown at once rather than sent into a link that no
    thread reads."""
    wire = InMemoryWire(SimulatedHandpiece("ndyag-1064", seed=5, now=time.monotonic()), "open door")
    threads_before = set(threading.enumerate())

    def subscriber(event: Notification) -> None:
        if device_event_no(event) == 1:
            raise RuntimeError("subscriber broke on BOOT")

    conn = HandpieceConnection("mem:", on_event=subscriber, reconnect=False, opener=lambda _u: wire)
    with pytest.raises(RuntimeError, match="subscriber broke on BOOT"):
        conn.open()
    assert not conn.connected
    assert wire._closed.is_set()
    assert not [t for t in set(threading.enumerate()) - threads_before if t.is_alive()]
    with pytest.raises(LinkDown, match="link is down"):
        conn.call(GetStatus(), timeout=0.1)
    stop = conn.send(Disarm())  # not onto the HELLO's link and then forgotten
    assert isinstance(stop.exception(timeout=1.0), LinkDown)
    conn.close()


def test_close_while_open_is_starting_the_reader(
    tcp_sim: TcpServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """close() from another thread between open() making its reader thread and starting it
    (the console closing while a link is being opened): no RuntimeError from joining a thread
    not started, and the reader, once started, ends at once."""
    conn = HandpieceConnection(tcp_sim.url, reconnect=False)
    errors: list[BaseException] = []

    class LateStart(threading.Thread):
        def start(self) -> None:
            def close() -> None:
                try:
                    conn.close()
                except BaseException as exc:
                    errors.append(exc)

            closer = threading.Thread(target=close)
            closer.start()
            closer.join(5.0)
            super().start()

    monkeypatch.setattr(
        "drivers.host.threading",
        type(
            "T", (), {"Thread": LateStart, "current_thread": staticmethod(threading.current_thread)}
        ),
    )
    conn.open()
    assert errors == []
    reader = conn._thread
    assert reader is not None
    reader.join(2.0)
    assert not reader.is_alive()
    assert not conn.connected
