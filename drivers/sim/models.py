"""Physical models of a simulated handpiece: what it can do, how its output drifts, how it heats.

The numbers are the simulator's, documented in docs/simulator.md; a real handpiece reports its
own capabilities in HELLO_INFO.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from drivers.protocol import HandpieceType, Interlock, Param


@dataclass(frozen=True)
class HandpieceModel:
    type: HandpieceType
    wavelength_nm: int
    dose_param: Param  # the parameter that set and measured energy are expressed in
    capabilities: dict[Param, tuple[float, float]]  # (min, max) in the unit of the name
    interlocks: frozenset[Interlock]
    serial_prefix: str

    @property
    def interlock_mask(self) -> int:
        return sum(1 << bit for bit in self.interlocks)

    def pulse_us(self, params: dict[Param, float]) -> float:
        if Param.PULSE_MS in params:
            return params[Param.PULSE_MS] * 1000.0
        # Fractional microbeams: dwell grows with energy per microbeam.
        return 1000.0 + params.get(Param.ENERGY_MJ, 0.0) * 50.0

    def heat_per_pulse_c(self, params: dict[Param, float]) -> float:
        lo, hi = self.capabilities[self.dose_param]
        return 0.08 * params.get(self.dose_param, lo) / hi


_COMMON = frozenset(
    {
        Interlock.KEY,
        Interlock.DOOR,
        Interlock.ESTOP,
        Interlock.COOLING,
        Interlock.TEMPERATURE,
        Interlock.SHUTTER,
    }
)

MODELS: dict[HandpieceType, HandpieceModel] = {
    HandpieceType.FRACTIONAL_1550: HandpieceModel(
        type=HandpieceType.FRACTIONAL_1550,
        wavelength_nm=1550,
        dose_param=Param.ENERGY_MJ,
        capabilities={
            Param.ENERGY_MJ: (4.0, 70.0),
            Param.DENSITY_PCT: (5.0, 50.0),
            Param.DEPTH_UM: (200.0, 1400.0),
            Param.PASSES: (1.0, 8.0),
            Param.REP_RATE_HZ: (1.0, 15.0),
        },
        interlocks=_COMMON | {Interlock.SKIN_CONTACT},
        serial_prefix="FX",
    ),
    HandpieceType.NDYAG_1064: HandpieceModel(
        type=HandpieceType.NDYAG_1064,
        wavelength_nm=1064,
        dose_param=Param.FLUENCE_J_CM2,
        capabilities={
            Param.FLUENCE_J_CM2: (5.0, 150.0),
            Param.PULSE_MS: (0.3, 100.0),
            Param.SPOT_MM: (1.5, 10.0),
            Param.REP_RATE_HZ: (0.5, 10.0),
        },
        interlocks=_COMMON | {Interlock.AIMING_BEAM},
        serial_prefix="ND",
    ),
}

AMBIENT_C = 25.0
OVERTEMP_C = 40.0  # the temperature interlock opens above this
THERMAL_TAU_S = 30.0
ENERGY_NOISE_SD = 0.015  # relative, per pulse
METER_NOISE_SD = 0.003  # relative, internal power meter


class EnergySource:
    """Delivered energy = set point x gain x (1 + drift), with per-pulse noise.

    gain is the handpiece's intrinsic response (what calibration corrects); drift is the slow
    change a fault injection or ageing adds on top.
    """

    def __init__(self, rng: random.Random, gain: float = 1.0) -> None:
        self.rng = rng
        self.gain = gain
        self.drift = 0.0

    def deliver(self, set_value: float) -> float:
        return max(
            0.0,
            set_value
            * self.gain
            * (1.0 + self.drift)
            * (1.0 + self.rng.gauss(0.0, ENERGY_NOISE_SD)),
        )

    def meter(self, delivered: float) -> float:
        return max(0.0, delivered * (1.0 + self.rng.gauss(0.0, METER_NOISE_SD)))


class Thermal:
    """First-order model: each pulse adds heat; the handpiece relaxes towards ambient."""

    def __init__(self) -> None:
        self.temp_c = AMBIENT_C
        self.cooling_ok = True
        self._t: float | None = None

    def advance(self, now: float) -> None:
        if self._t is not None and now > self._t:
            tau = THERMAL_TAU_S if self.cooling_ok else THERMAL_TAU_S * 20
            self.temp_c = AMBIENT_C + (self.temp_c - AMBIENT_C) * math.exp(-(now - self._t) / tau)
        self._t = now

    def pulse(self, heat_c: float) -> None:
        self.temp_c += heat_c if self.cooling_ok else heat_c * 4

    @property
    def in_range(self) -> bool:
        return self.temp_c <= OVERTEMP_C
