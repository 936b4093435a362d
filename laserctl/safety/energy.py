"""Energy monitor (SR-06): every shot's measured dose against its set value.

Beyond +-20 % stops emission and latches FAULT; beyond +-10 % raises a warning. The device runs
the same +-20 % check on its own; the host's check is independent of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

FAULT_FRACTION = 0.20  # 21 CFR 1040.11(a): output measurable to within +-20 %
WARN_FRACTION = 0.10  # ours: half the fault band, early notice of drift


class Verdict(StrEnum):
    OK = "ok"
    WARN = "warn"
    FAULT = "fault"


@dataclass(frozen=True, slots=True)
class EnergyCheck:
    verdict: Verdict
    deviation: float  # measured / set - 1

    @property
    def percent(self) -> float:
        return self.deviation * 100.0


def check_energy(set_milli: int, measured_milli: int) -> EnergyCheck:
    """Compare in integers of the wire; a set value of 0 can only be a fault."""
    if set_milli <= 0:
        return EnergyCheck(Verdict.FAULT, float("inf"))
    deviation = measured_milli / set_milli - 1.0
    # Compare |measured - set| with fraction x set in integers: no float edge at exactly 20 %.
    diff = abs(measured_milli - set_milli)
    if diff * 100 > set_milli * round(FAULT_FRACTION * 100):
        return EnergyCheck(Verdict.FAULT, deviation)
    if diff * 100 > set_milli * round(WARN_FRACTION * 100):
        return EnergyCheck(Verdict.WARN, deviation)
    return EnergyCheck(Verdict.OK, deviation)
