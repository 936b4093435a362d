"""What the console shows: one immutable ConsoleView per controller change.

A Snapshot (laserctl.controller.snapshot) carries the controller's state; the view adds what the
operator needs beyond it, read on the controller's own thread when the snapshot is published:
the latched causes with their kind (for the advice on what to do), the latest refusals and
warnings, the last shots' set and measured values (the sparkline), and the event log lines.
"""

from __future__ import annotations

from dataclasses import dataclass

from laserctl.controller.snapshot import Snapshot


@dataclass(frozen=True, slots=True)
class ShotPoint:
    shot_no: int
    dose_param: str  # energy_mj or fluence_j_cm2
    set_value: float
    measured_value: float

    @property
    def deviation_pct(self) -> float:
        if self.set_value <= 0:
            return 0.0
        return (self.measured_value / self.set_value - 1.0) * 100.0


@dataclass(frozen=True, slots=True)
class CauseView:
    """A latched cause of FAULT or ESTOP (laserctl.controller.core.Cause)."""

    kind: str  # CauseKind value: interlock, link, handpiece, estop, energy, ...
    message: str
    interlock: str | None = None


@dataclass(frozen=True, slots=True)
class RefusalView:
    command: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConsoleView:
    snapshot: Snapshot
    causes: tuple[CauseView, ...] = ()
    refusals: tuple[RefusalView, ...] = ()  # the latest few, oldest first
    warnings: tuple[str, ...] = ()  # the latest few, oldest first
    shots: tuple[ShotPoint, ...] = ()  # the latest shots stored, oldest first
    log: tuple[str, ...] = ()  # the latest controller notes, oldest first
