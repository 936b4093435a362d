"""The simulator leaves its own stalls out of firmware time (drivers/sim/clock.py).

A stall is made by moving the clock the servers read forward while the host's clock runs on:
to the serving loop that is exactly a wake-up 0.4 s late. Each server (pty, TCP, USB) must then
keep an armed device armed while the host's heartbeats go on, yet still trip the watchdog
(SR-09) when the host is really gone. The same jump with stall detection turned off trips the
watchdog: the control that shows the jump is a stall the watchdog would otherwise count.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.host import HandpieceConnection
from drivers.protocol import Ack, Arm, DeviceEvent, DeviceState, Fault, FaultCode
from drivers.sim import SimulatedHandpiece, usb_backend
from drivers.sim.clock import STALL_S, FirmwareClock
from drivers.sim.firmware import WATCHDOG_S
from drivers.sim.server import PtyServer, TcpServer
from drivers.sim.usb_backend import SimulatedUsbBus, SimulatedUsbHandpiece

from .clocks import Steppable
from .scenarios import Recorder, make_ready, poll

STALL = 0.4  # longer than the watchdog: counted, it trips it whatever the heartbeat's phase


# ---- the clock on its own ---------------------------------------------------------------------
def test_an_on_time_wake_up_counts_in_full() -> None:
    base = Steppable()
    clock = FirmwareClock(base)
    planned = clock() + 0.010
    base.offset += 0.010 + STALL_S / 2  # late, but within jitter
    now = clock.woke(planned)
    assert now == pytest.approx(planned + STALL_S / 2, abs=0.005)
    assert (clock.stalls, clock.paused) == (0, 0.0)
    assert clock.describe() == "no stalls"


def test_a_late_wake_up_is_left_out_and_time_resumes_from_the_plan() -> None:
    base = Steppable()
    clock = FirmwareClock(base)
    planned = clock() + 0.010
    base.offset += 0.010 + STALL
    assert clock.woke(planned) == planned
    assert clock.stalls == 1
    assert clock.paused == pytest.approx(STALL, abs=0.005)
    assert clock() - planned < 0.005  # and runs on from there, not from the late wall time
    assert "1 stalls" in clock.describe() and "longest 40" in clock.describe()


LATENESS = st.floats(0.0, 0.5).filter(lambda late: abs(late - STALL_S) > 1e-6)  # not the edge


@given(
    steps=st.lists(
        # (the loop's own work, the model's next deadline after its time, woke this late)
        st.tuples(st.floats(0.0, 0.2), st.floats(0.0, 0.1), LATENESS),
        max_size=40,
    )
)
def test_firmware_time_never_runs_back_and_loses_exactly_the_stalls(
    steps: list[tuple[float, float, float]],
) -> None:
    t = [100.0]
    clock = FirmwareClock(lambda: t[0])
    last = clock()
    left_out = 0.0
    for work, ahead, late in steps:
        t[0] += work  # a stall during the loop's work makes it late as well
        planned = last + ahead  # the model's deadlines are never before its own time
        if clock() < planned:
            t[0] += planned - clock()  # waited until the deadline ...
        t[0] += late  # ... and woke this late
        overdue = clock() - planned
        woke = clock.woke(planned)
        assert woke >= last
        if overdue > STALL_S:
            assert woke == planned
            left_out += overdue
        else:
            assert woke == pytest.approx(planned + overdue)
        last = woke
    assert clock.paused == pytest.approx(left_out)
    assert clock() == pytest.approx(t[0] - left_out)


# ---- every server, through a stall ------------------------------------------------------------
@dataclass
class Served:
    url: str
    sim: SimulatedHandpiece
    base: Steppable


@contextmanager
def stream_server(
    kind: type[PtyServer | TcpServer], stall_s: float, watchdog_s: float = WATCHDOG_S
) -> Iterator[Served]:
    base = Steppable()
    sim = SimulatedHandpiece("fractional-1550", seed=3, now=base(), watchdog_s=watchdog_s)
    server = kind(sim, clock=FirmwareClock(base, stall_s=stall_s))
    url = server.path if isinstance(server, PtyServer) else server.url
    with serving(server.serve_forever, server.stop, server.close):
        yield Served(url, sim, base)


def pty_server(stall_s: float, watchdog_s: float = WATCHDOG_S) -> AbstractContextManager[Served]:
    return stream_server(PtyServer, stall_s, watchdog_s)


def tcp_server(stall_s: float, watchdog_s: float = WATCHDOG_S) -> AbstractContextManager[Served]:
    return stream_server(TcpServer, stall_s, watchdog_s)


@contextmanager
def usb_device(stall_s: float, watchdog_s: float = WATCHDOG_S) -> Iterator[Served]:
    base = Steppable()
    device = SimulatedUsbHandpiece("fractional-1550", seed=3, clock=base)
    device.firmware_clock.stall_s = stall_s
    device.sim.watchdog_s = watchdog_s
    usb_backend.install_bus(SimulatedUsbBus([device]))
    try:
        yield Served("usb:", device.sim, base)
    finally:
        usb_backend.install_bus(None)


@contextmanager
def serving(
    run: Callable[[], None], stop: threading.Event, close: Callable[[], None]
) -> Iterator[None]:
    thread = threading.Thread(target=run, name="sim server", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=2.0)
        close()
        assert not thread.is_alive(), "server thread did not stop"


SERVERS = {"pty": pty_server, "tcp": tcp_server, "usb": usb_device}


@pytest.fixture(params=sorted(SERVERS))
def server(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("LASERCTL_USB_BACKEND", "sim")
    return str(request.param)


@contextmanager
def armed(served: Served) -> Iterator[tuple[HandpieceConnection, Recorder]]:
    recorder = Recorder()
    connection = HandpieceConnection(served.url, on_event=recorder, reconnect=False)
    connection.open()
    try:
        make_ready(connection)
        assert connection.call(Arm(100, 0)) == Ack(Arm.TYPE)
        assert served.sim.state is DeviceState.ARMED
        yield connection, recorder
    finally:
        connection.close()


def watchdog_faults(recorder: Recorder) -> list[Fault]:
    return [
        item.event
        for item in recorder.items
        if isinstance(item, DeviceEvent)
        and isinstance(item.event, Fault)
        and item.event.code == FaultCode.WATCHDOG
    ]


@pytest.mark.req("SR-09")
def test_a_stall_of_the_simulator_does_not_trip_the_watchdog_while_the_host_talks(
    server: str,
) -> None:
    with SERVERS[server](STALL_S) as served, armed(served) as (_, recorder):
        served.base.offset += STALL  # the simulator "sleeps" 0.4 s; the host's heartbeats go on
        time.sleep(2 * WATCHDOG_S)
        assert served.sim.state is DeviceState.ARMED
        assert watchdog_faults(recorder) == []


@pytest.mark.req("SR-09")
def test_the_same_jump_counted_as_firmware_time_trips_the_watchdog(server: str) -> None:
    with SERVERS[server](math.inf) as served, armed(served) as (_, recorder):
        served.base.offset += STALL
        poll(lambda: served.sim.state is DeviceState.IDLE, 3.0, "disarmed by the watchdog")
        poll(lambda: bool(watchdog_faults(recorder)), 3.0, "FAULT WATCHDOG")


@pytest.mark.req("SR-09")
def test_a_silent_host_still_trips_the_watchdog_across_a_stall(server: str) -> None:
    # A watchdog of 1 s: closing the connection may take a while on a busy machine, and the
    # device must still be armed when the stall comes.
    with SERVERS[server](STALL_S, 1.0) as served:
        with armed(served):
            pass
        # The host is gone (closed, no more heartbeats), and the simulator stalls as well.
        # Nothing else disarms it: no DISARM was sent, no pulse used the grant.
        served.base.offset += STALL
        assert served.sim.state is DeviceState.ARMED
        poll(lambda: served.sim.state is DeviceState.IDLE, 3.0, "disarmed by the watchdog")
