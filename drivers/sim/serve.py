"""The one loop that runs a SimulatedHandpiece in real time, whatever carries its bytes.

Every server runs the firmware the same way: feed it what arrived, let its time pass, hand on
what it sends, then wait for more bytes or its next deadline, and tell the FirmwareClock when
it meant to wake, so that a stall of this process is left out of firmware time (clock.py).
The servers differ only in their Port: where bytes come from and go to, how it waits, and any
deadline of its own. server.py has the pty, TCP and in-process ones (a byte stream, a UART's
pacing, the wait for the next TCP host); usb_device.py has the USB device's (its endpoint
queues, under the device's lock).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Literal, Protocol

from .clock import FirmwareClock
from .firmware import SimulatedHandpiece

Ended = Literal["stopped", "closed"]


class PortClosed(Exception):
    """Raised by a Port whose peer went away: the loop ends with "closed"."""


class Port(Protocol):
    """Where a FirmwareLoop's bytes come from and go to. Every method may raise PortClosed."""

    def stopped(self) -> bool:
        """True once the loop should end ("stopped")."""
        ...

    def take(self, now: float) -> Iterable[tuple[float, bytes]]:
        """What arrived since the last call, each with when it arrived (firmware time)."""
        ...

    def give(self, data: bytes, now: float) -> None:
        """What the firmware sent at `now` (often nothing)."""
        ...

    def deadlines(self, now: float) -> Iterable[float]:
        """When the port needs the loop back, as well as the model's next deadline."""
        ...

    def wait(self, timeout: float) -> None:
        """Return after `timeout` seconds (may be negative: already due) or sooner, when bytes
        may have arrived."""
        ...


class FirmwareLoop:
    """One handpiece, one firmware clock; run() it behind one Port after another."""

    def __init__(self, sim: SimulatedHandpiece, clock: FirmwareClock | None = None) -> None:
        self.sim = sim
        # The model's, for its lifetime (a server keeps one across hosts): drivers/sim/clock.py.
        self.clock = clock if clock is not None else FirmwareClock()

    def run(self, port: Port) -> Ended:
        """Serve until the port says stop or its peer goes away; returns which."""
        sim, clock = self.sim, self.clock
        now = clock()
        try:
            while not port.stopped():
                for arrived, data in port.take(now):
                    # Stamped when it arrived: perhaps before this loop left a stall out.
                    sim.receive(data, min(arrived, now))
                sim.tick(now)
                port.give(sim.output(now), now)
                ready = clock()
                # Already past if this loop ran late (a stall during its work counts too); never
                # before the model's own time, or a stall would stop firmware time there for good.
                wake = max(min([sim.next_deadline(), *port.deadlines(ready)]), sim.now)
                port.wait(wake - ready)
                now = clock.woke(wake)
        except PortClosed:
            return "closed"
        return "stopped"
