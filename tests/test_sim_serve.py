"""The firmware serving loop every simulator server shares (drivers/sim/serve.py), driven
through a scripted Port on a clock the test moves: no thread, no socket, no sleeping."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import pytest

from drivers.protocol import (
    PROTOCOL_VERSION,
    DeviceEvent,
    Hello,
    HelloInfo,
    HostLink,
    Reply,
    StatusChanged,
)
from drivers.sim import SimulatedHandpiece
from drivers.sim.clock import STALL_S, FirmwareClock
from drivers.sim.serve import FirmwareLoop, PortClosed


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


@dataclass
class ScriptedPort:
    """Waits by moving the clock; `inbox` holds (when, bytes) the host will have sent."""

    clock: Clock
    rounds: int  # stop after this many waits
    inbox: list[tuple[float, bytes]] = field(default_factory=list)
    own_deadline: float | None = None  # seconds ahead of now, as the port's own deadline
    oversleep: float = 0.0  # each wait ends this much later than asked
    close_after: int | None = None  # waits, then the peer is gone
    sent: bytearray = field(default_factory=bytearray)
    waits: list[float] = field(default_factory=list)

    def stopped(self) -> bool:
        return len(self.waits) >= self.rounds

    def take(self, now: float) -> Iterable[tuple[float, bytes]]:
        if self.close_after is not None and len(self.waits) >= self.close_after:
            raise PortClosed
        due = [(t, data) for t, data in self.inbox if t <= self.clock.t]
        self.inbox = [item for item in self.inbox if item not in due]
        return due

    def give(self, data: bytes, now: float) -> None:
        self.sent += data

    def deadlines(self, now: float) -> list[float]:
        return [] if self.own_deadline is None else [now + self.own_deadline]

    def wait(self, timeout: float) -> None:
        self.waits.append(timeout)
        self.clock.t += max(0.0, timeout) + self.oversleep


def serve(port: ScriptedPort) -> tuple[FirmwareLoop, str]:
    sim = SimulatedHandpiece("fractional-1550", seed=5, now=port.clock.t)
    loop = FirmwareLoop(sim, FirmwareClock(port.clock))
    return loop, loop.run(port)


def test_what_arrived_is_fed_to_the_firmware_and_its_answer_handed_on() -> None:
    clock = Clock()
    host = HostLink(clock.t, first_seq=1)
    seq = host.send(Hello(PROTOCOL_VERSION, PROTOCOL_VERSION), clock.t)
    port = ScriptedPort(clock, rounds=3, inbox=[(clock.t + 0.01, host.data_to_send())])
    _, ended = serve(port)
    assert ended == "stopped"
    host.receive_data(bytes(port.sent), clock.t)
    events = []
    while (event := host.next_event()) is not None:
        events.append(event)
    replies = [e for e in events if isinstance(e, Reply)]
    assert [(r.seq, type(r.response)) for r in replies] == [(seq, HelloInfo)]
    # BOOT and the first STATUS_CHANGED went out too, before anyone asked.
    assert any(isinstance(e, DeviceEvent) and isinstance(e.event, StatusChanged) for e in events)


def test_it_waits_for_the_models_deadline_without_a_deadline_of_the_port() -> None:
    clock = Clock()
    port = ScriptedPort(clock, rounds=5)
    serve(port)
    # An idle handpiece's next deadline is 50 ms on (SimulatedHandpiece.next_deadline).
    assert port.waits and all(0.0 < w <= 0.05 + 1e-9 for w in port.waits), port.waits


def test_a_sooner_deadline_of_the_port_shortens_the_wait() -> None:
    clock = Clock()
    port = ScriptedPort(clock, rounds=5, own_deadline=0.004)
    serve(port)
    assert all(w <= 0.004 + 1e-9 for w in port.waits), port.waits


def test_a_peer_gone_ends_the_loop_closed() -> None:
    port = ScriptedPort(Clock(), rounds=10, close_after=2)
    _, ended = serve(port)
    assert ended == "closed"
    assert len(port.waits) == 2


@pytest.mark.parametrize("oversleep", [0.0, STALL_S / 2, 0.4])
def test_a_late_wake_up_is_left_out_of_firmware_time(oversleep: float) -> None:
    """Each wait ends `oversleep` late. Beyond STALL_S that is the process not running, which
    the firmware's clock leaves out (drivers/sim/clock.py): firmware time then advances by
    what was waited only; within it, by the real time."""
    clock = Clock()
    start = clock.t
    port = ScriptedPort(clock, rounds=4, oversleep=oversleep)
    loop, _ = serve(port)
    stalled = oversleep > STALL_S
    assert loop.clock.stalls == (len(port.waits) if stalled else 0)
    expected = sum(port.waits) if stalled else clock.t - start
    assert loop.clock() - start == pytest.approx(expected, abs=1e-9)
    assert loop.sim.now <= loop.clock()
