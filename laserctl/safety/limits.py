"""Parameter limits (SR-07) and the per-session pulse and dose budget (SR-08).

A parameter is sent only inside min(plan window, handpiece capability, calibrated range): the
calibrated range is the dose targets the handpiece's calibration reaches without extrapolating
(laserctl.calibration: Calibration.target_range, the bound Calibration.restrict() puts on the
capability). The check is made on the wire value (thousandths of the unit), the same integers
the device re-checks, so rounding can never carry a value past a limit.

Dose per pulse, in J/cm2, is defined in one place, fluence_per_pulse():
  - Nd:YAG: the fluence parameter itself.
  - fractional: energy per microbeam (mJ) x microbeams per cm2 / 1000, where density_pct is the
    percentage of skin surface covered by microbeams, so microbeams per cm2 = (density_pct / 100)
    / (area of one microbeam in cm2), with a microbeam diameter of MICROBEAM_DIAMETER_UM. It is
    the fluence averaged over the scanned surface for one pulse (one scan). PASSES does not enter
    it: every pass is made of pulses that are counted one by one.
The session's cumulative fluence is the sum over its pulses: the bound for a spot that every
pulse of the session landed on (worst-case stacking), so the real per-cm2 dose is never more.

Arming grants min(remaining pulses, floor(remaining dose / per-pulse dose with margin)), where the
margin is the +20 % the energy monitor tolerates before it stops emission (SR-06): the grant
holds even when every pulse delivers 20 % more than set.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

from drivers.protocol import HandpieceType, Param

from ..plan import TreatmentPlan
from .energy import FAULT_FRACTION

MICROBEAM_DIAMETER_UM = 140.0  # fractional 1550 nm microbeam (ours; documented in controller.md)
GRANT_MARGIN = 1.0 + FAULT_FRACTION

Capabilities = Mapping[Param, tuple[float, float]]
Calibrated = Mapping[Param, tuple[float, float]]  # the calibrated range of each calibrated param


class LimitExceeded(ValueError):
    """A request beyond a limit; the message names the limit and the value."""


@dataclass(frozen=True, slots=True)
class Window:
    """An allowed range in thousandths of the unit (the wire representation)."""

    min_milli: int
    max_milli: int
    why: str  # which limits made it

    @property
    def min(self) -> float:
        return self.min_milli / 1000.0

    @property
    def max(self) -> float:
        return self.max_milli / 1000.0


def to_milli(value: float) -> int:
    return round(value * 1000.0)


def effective_window(
    plan: TreatmentPlan,
    capabilities: Capabilities,
    param: Param,
    calibrated: Calibrated | None = None,
) -> Window:
    """min(plan window, handpiece capability, calibrated range when the parameter has one);
    raises LimitExceeded when they do not overlap or the plan or handpiece does not know the
    parameter."""
    window = plan.windows.get(param)
    if window is None:
        raise LimitExceeded(f"{param.field_name}: the plan {plan.plan_id} has no window for it")
    cap = capabilities.get(param)
    if cap is None:
        raise LimitExceeded(f"{param.field_name}: the handpiece does not have this parameter")
    lo = max(to_milli(window.min), to_milli(cap[0]))
    hi = min(to_milli(window.max), to_milli(cap[1]))
    why = f"plan window {window.min:g}..{window.max:g}, handpiece capability {cap[0]:g}..{cap[1]:g}"
    cal = calibrated.get(param) if calibrated is not None else None
    if cal is not None:
        lo = max(lo, to_milli(cal[0]))
        hi = min(hi, to_milli(cal[1]))
        why += f", calibrated range {cal[0]:.3f}..{cal[1]:.3f}"
    if lo > hi:
        raise LimitExceeded(f"{param.field_name}: no overlap between {why}")
    return Window(lo, hi, why)


def check_value(
    plan: TreatmentPlan,
    capabilities: Capabilities,
    param: Param,
    value: float,
    calibrated: Calibrated | None = None,
) -> int:
    """The wire value for `value`, or LimitExceeded naming the limit and the value."""
    if not math.isfinite(value):
        raise LimitExceeded(f"{param.field_name} = {value}: not a number")
    window = effective_window(plan, capabilities, param, calibrated)
    # Huge values are refused before rounding (round() of an overflowing product raises).
    scaled = value * 1000.0
    if scaled > window.max_milli + 1:
        milli = window.max_milli + 1
    elif scaled < window.min_milli - 1:
        milli = window.min_milli - 1
    else:
        milli = round(scaled)
    if milli < window.min_milli:
        raise LimitExceeded(
            f"{param.field_name} = {value:g} is below the minimum {window.min:g} "
            f"(min of {window.why})"
        )
    if milli > window.max_milli:
        raise LimitExceeded(
            f"{param.field_name} = {value:g} is above the maximum {window.max:g} "
            f"(min of {window.why})"
        )
    return milli


def check_parameters(
    plan: TreatmentPlan,
    capabilities: Capabilities,
    values: Mapping[Param, float],
    calibrated: Calibrated | None = None,
) -> tuple[tuple[int, int], ...]:
    """Every value checked; the complete set the handpiece needs, as SET_PARAMS wire pairs (the
    treatment values: a calibrated dose is turned into its drive value after this check).
    Raises LimitExceeded for the first value beyond a limit or a parameter missing."""
    wire: dict[Param, int] = {}
    for param, value in values.items():
        wire[param] = check_value(plan, capabilities, param, value, calibrated)
    missing = [p.field_name for p in capabilities if p not in wire]
    if missing:
        raise LimitExceeded(f"parameters missing: {', '.join(missing)}")
    return tuple((int(p), v) for p, v in sorted(wire.items()))


def plan_mismatch(plan: TreatmentPlan, handpiece: HandpieceType, capabilities: Capabilities) -> str:
    """Why this plan cannot be used on this handpiece, or "" when it can (SR-13, SR-15)."""
    if plan.handpiece is not handpiece:
        return (
            f"plan {plan.plan_id} is for {plan.handpiece.slug}, the handpiece is {handpiece.slug}"
        )
    missing = [p.field_name for p in capabilities if p not in plan.windows]
    if missing:
        return f"plan {plan.plan_id} has no window for {', '.join(missing)}"
    try:
        for param, window in plan.windows.items():
            check_value(plan, capabilities, param, window.default)
    except LimitExceeded as exc:
        return f"plan {plan.plan_id}: {exc}"
    return ""


# ---- dose ----------------------------------------------------------------------------------------
def microbeams_per_cm2(density_pct: float) -> float:
    radius_cm = MICROBEAM_DIAMETER_UM / 2.0 / 10_000.0
    return (density_pct / 100.0) / (math.pi * radius_cm * radius_cm)


def fluence_per_pulse(handpiece: HandpieceType, params: Mapping[Param, float]) -> float:
    """J/cm2 delivered by one pulse with these parameters (see the module docstring)."""
    if handpiece is HandpieceType.NDYAG_1064:
        return params[Param.FLUENCE_J_CM2]
    return params[Param.ENERGY_MJ] * microbeams_per_cm2(params[Param.DENSITY_PCT]) / 1000.0


@dataclass(frozen=True, slots=True)
class DoseUsed:
    pulses: int = 0
    fluence_j_cm2: float = 0.0

    def add(self, fluence: float, pulses: int = 1) -> DoseUsed:
        """`pulses` more, each of `fluence` J/cm2."""
        return DoseUsed(self.pulses + pulses, self.fluence_j_cm2 + fluence * pulses)


@dataclass(frozen=True, slots=True)
class Grant:
    pulses: int
    limited_by: str  # the limit that set the number, with the values


def pulse_grant(plan: TreatmentPlan, used: DoseUsed, per_pulse_j_cm2: float) -> Grant:
    """The most pulses one ARM may grant (SR-08); 0 when a budget is used up."""
    remaining_pulses = max(0, plan.max_pulses - used.pulses)
    remaining_dose = max(0.0, plan.max_fluence_j_cm2 - used.fluence_j_cm2)
    per_pulse = per_pulse_j_cm2 * GRANT_MARGIN
    if per_pulse <= 0.0 or remaining_dose / per_pulse >= remaining_pulses + 1:
        by_dose = remaining_pulses  # the dose does not limit (also keeps huge quotients out)
    else:
        by_dose = math.floor(remaining_dose / per_pulse)
        while by_dose > 0 and by_dose * per_pulse > remaining_dose:
            by_dose -= 1  # never trust the float division to round down
    pulses_note = f"max_pulses {plan.max_pulses}, {used.pulses} used"
    dose_note = (
        f"max_fluence_j_cm2 {plan.max_fluence_j_cm2:g}, {used.fluence_j_cm2:.1f} used, "
        f"{per_pulse_j_cm2:.2f} J/cm2 per pulse +{round((GRANT_MARGIN - 1) * 100)} %"
    )
    if by_dose < remaining_pulses:
        return Grant(by_dose, dose_note)
    return Grant(remaining_pulses, pulses_note)
