"""Physical models of a simulated handpiece: how its output drifts, how it heats.

What a handpiece of each type is and can do (wavelength, dose parameter, capabilities,
interlocks) is the protocol's catalogue (drivers/protocol/handpieces.py); a model adds the
simulator's own numbers to it, documented in docs/simulator.md.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from drivers.protocol import HandpieceType, Param
from drivers.protocol.handpieces import HANDPIECES, HandpieceSpec


@dataclass(frozen=True)
class HandpieceModel(HandpieceSpec):
    """A handpiece type as the simulator builds it: the catalogue entry, a serial number
    prefix, and how pulse duration and heating follow from the parameters."""

    serial_prefix: str

    @classmethod
    def of(cls, spec: HandpieceSpec, serial_prefix: str) -> HandpieceModel:
        return cls(
            type=spec.type,
            wavelength_nm=spec.wavelength_nm,
            dose_param=spec.dose_param,
            capabilities=spec.capabilities,
            interlocks=spec.interlocks,
            serial_prefix=serial_prefix,
        )

    def pulse_us(self, params: dict[Param, float]) -> float:
        if Param.PULSE_MS in params:
            return params[Param.PULSE_MS] * 1000.0
        # Fractional microbeams: dwell grows with energy per microbeam.
        return 1000.0 + params.get(Param.ENERGY_MJ, 0.0) * 50.0

    def heat_per_pulse_c(self, params: dict[Param, float]) -> float:
        lo, hi = self.capabilities[self.dose_param]
        return 0.08 * params.get(self.dose_param, lo) / hi


SERIAL_PREFIXES = {HandpieceType.FRACTIONAL_1550: "FX", HandpieceType.NDYAG_1064: "ND"}
MODELS: dict[HandpieceType, HandpieceModel] = {
    kind: HandpieceModel.of(spec, SERIAL_PREFIXES[kind]) for kind, spec in HANDPIECES.items()
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
