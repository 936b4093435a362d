"""The handpiece types: what every handpiece of a type is and what it reports in HELLO_INFO.

One entry per HandpieceType: its wavelength, the parameter its dose (SHOT and CAL_FIRE values)
is expressed in, the capability range of every parameter it has, and the interlock inputs it
has. A handpiece of the type reports these in HELLO_INFO; a real one may report narrower ranges,
and the host checks against both (SR-13). The host checks profiles against this catalogue
without a handpiece (laserctl/profiles/capabilities.py); the simulated handpiece is built on it
(drivers/sim/models.py adds its physics). docs/simulator.md has the same numbers as tables.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .constants import HandpieceType, Interlock, Param

Range = tuple[float, float]
"""(min, max) in the unit of the parameter's name; both bounds allowed."""


@dataclass(frozen=True)
class HandpieceSpec:
    type: HandpieceType
    wavelength_nm: int
    dose_param: Param  # the parameter that set and measured energy are expressed in
    capabilities: Mapping[Param, Range]
    interlocks: frozenset[Interlock]

    @property
    def slug(self) -> str:
        return self.type.slug

    @property
    def interlock_mask(self) -> int:
        """The interlocks as HELLO_INFO carries them: one bit per Interlock."""
        return sum(1 << bit for bit in self.interlocks)


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

HANDPIECES: Mapping[HandpieceType, HandpieceSpec] = MappingProxyType(
    {
        HandpieceType.FRACTIONAL_1550: HandpieceSpec(
            type=HandpieceType.FRACTIONAL_1550,
            wavelength_nm=1550,
            dose_param=Param.ENERGY_MJ,  # per microbeam
            capabilities=MappingProxyType(
                {
                    Param.ENERGY_MJ: (4.0, 70.0),
                    Param.DENSITY_PCT: (5.0, 50.0),
                    Param.DEPTH_UM: (200.0, 1400.0),
                    Param.PASSES: (1.0, 8.0),
                    Param.REP_RATE_HZ: (1.0, 15.0),
                }
            ),
            interlocks=_COMMON | {Interlock.SKIN_CONTACT},
        ),
        HandpieceType.NDYAG_1064: HandpieceSpec(
            type=HandpieceType.NDYAG_1064,
            wavelength_nm=1064,
            dose_param=Param.FLUENCE_J_CM2,
            capabilities=MappingProxyType(
                {
                    Param.FLUENCE_J_CM2: (5.0, 150.0),
                    Param.PULSE_MS: (0.3, 100.0),
                    Param.SPOT_MM: (1.5, 10.0),
                    Param.REP_RATE_HZ: (0.5, 10.0),
                }
            ),
            interlocks=_COMMON | {Interlock.AIMING_BEAM},
        ),
    }
)
