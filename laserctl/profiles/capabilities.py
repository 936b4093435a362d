"""What each handpiece type can do, in one place: areas, striae variants, parameters and the
nominal capability ranges a profile window must stay inside.

The nominal ranges are the protocol's catalogue of handpiece types (drivers/protocol/handpieces.py,
what a handpiece of the type reports in HELLO_INFO). A profile is checked against them without
a handpiece; with a connected handpiece it is also checked against the ranges that handpiece
reports (DeviceInfo.capabilities), which may be narrower (SR-13).
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType

from drivers.protocol import HANDPIECES, HandpieceType, Param

Range = tuple[float, float]

AREAS: tuple[str, ...] = ("chest", "abdomen", "thighs", "buttocks")
VARIANTS: tuple[str, ...] = ("rubra", "alba")  # early (red) and old (white) striae
DARK_SKIN = "iv-vi"  # the Fitzpatrick IV-VI adjustment, as named in a profile selector

NOMINAL: Mapping[HandpieceType, Mapping[Param, Range]] = MappingProxyType(
    {hp: MappingProxyType(dict(spec.capabilities)) for hp, spec in HANDPIECES.items()}
)
DOSE_PARAM: Mapping[HandpieceType, Param] = MappingProxyType(
    {hp: spec.dose_param for hp, spec in HANDPIECES.items()}
)
UNITS: Mapping[Param, str] = MappingProxyType(
    {
        Param.ENERGY_MJ: "mJ",
        Param.FLUENCE_J_CM2: "J/cm2",
        Param.PULSE_MS: "ms",
        Param.SPOT_MM: "mm",
        Param.DENSITY_PCT: "%",
        Param.DEPTH_UM: "um",
        Param.PASSES: "",
        Param.REP_RATE_HZ: "Hz",
    }
)
WHOLE_NUMBER = frozenset({Param.PASSES})
# What a dark-skin adjustment must lower (clinical-parameters.md: "lower energy or density").
LOWERED_FOR_DARK_SKIN = frozenset({Param.ENERGY_MJ, Param.FLUENCE_J_CM2, Param.DENSITY_PCT})


def param_named(name: str) -> Param | None:
    try:
        return Param[name.upper()]
    except KeyError:
        return None


def params_of(handpiece: HandpieceType) -> tuple[Param, ...]:
    return tuple(NOMINAL[handpiece])


def capability(
    handpiece: HandpieceType, param: Param, device: Mapping[Param, Range] | None = None
) -> Range | None:
    """The nominal range, narrowed by the connected handpiece's when given; None when the
    handpiece type has no such parameter (or the connected one does not report it)."""
    nominal = NOMINAL[handpiece].get(param)
    if nominal is None:
        return None
    if device is None:
        return nominal
    reported = device.get(param)
    if reported is None:
        return None
    return max(nominal[0], reported[0]), min(nominal[1], reported[1])


def unit(param: Param) -> str:
    u = UNITS[param]
    return f" {u}" if u else ""
