"""The simulated firmware's clock: real time, less the stretches its process was not running.

A handpiece's microcontroller is never descheduled: its UART takes bytes in as they come and its
watchdog counts time it spent watching. The simulator is a process (or a thread) on a shared
machine, which can stop running everything for a quarter of a second at a time: measured here
under load, serving loops woke 0.2-0.25 s after the deadline they asked for, host and simulator
in the same instant. Counted as firmware time, such a stall is silence the firmware never
heard: its 250 ms watchdog (SR-09) fires because the simulator slept, not because the host did.

So the serving loops tell the clock when they meant to wake (`woke(planned)`: the model's next
deadline, even if it passed while the loop was busy). A wake-up more than `stall_s` late is a
stall: the firmware's time stops at `planned` and resumes from there, as if the whole simulated
device had been paused. Nothing is fired to catch up, nothing times out; a host that really
went silent still trips the watchdog `watchdog_s` of firmware time after its last frame, since
only the simulator's own oversleep is left out, never the time it spent waiting. This is a
property of the model; the host has its own, bounded allowance (HostLink.defer_silence).
"""

from __future__ import annotations

import time
from collections.abc import Callable

# A wake-up this much later than planned is the process being stopped, not scheduling jitter
# (measured 0.2-1.6 ms late on a loaded machine) nor anything the protocol times (50 ms retry).
STALL_S = 0.025


class FirmwareClock:
    """Callable like time.monotonic; `woke(planned)` after every wait."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, *, stall_s: float = STALL_S):
        self._clock = clock
        self.stall_s = stall_s
        self.paused = 0.0  # seconds of stalls left out so far
        self.stalls = 0
        self.longest = 0.0

    def __call__(self) -> float:
        return self._clock() - self.paused

    def woke(self, planned: float) -> float:
        """The firmware's time after a wait meant to end by `planned` (firmware time): the
        model's next deadline, which may have passed before the wait began if the loop itself
        ran late (a stall during its work counts as one). Never before the model's own time,
        which the model's deadlines never are, so firmware time never runs back."""
        now = self()
        late = now - planned
        if late <= self.stall_s:
            return now
        self.paused += late
        self.stalls += 1
        self.longest = max(self.longest, late)
        return planned

    def describe(self) -> str:
        if not self.stalls:
            return "no stalls"
        return (
            f"{self.stalls} stalls left out of firmware time, "
            f"{self.paused * 1e3:.0f} ms in all, the longest {self.longest * 1e3:.0f} ms"
        )
