"""The treatment plan: which handpiece, which area, the window each parameter may move in and the
per-session limits on pulses and cumulative fluence (SR-07, SR-08).

The profiles issue will load validated plans from signed profile files; until then load_plan()
reads a small TOML or JSON file and builtin_plan() gives a conservative plan per handpiece type.
Every shipped window stays inside the published ranges in shared/clinical-parameters.md; each
built-in plan says where its numbers come from.

File format (TOML; JSON with the same keys works too):

    plan_id = "demo-abdomen"
    handpiece = "fractional-1550"
    area = "abdomen"
    max_pulses = 200
    max_fluence_j_cm2 = 1500      # cumulative per session, see laserctl.safety.limits
    ready_delay_s = 1.0           # optional
    inactivity_s = 120.0          # optional
    source = "where the numbers come from"
    [params.energy_mj]
    min = 12
    max = 16
    default = 12
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.protocol import HandpieceType, Param

READY_DELAY_S = 1.0  # SR-04 default
INACTIVITY_S = 120.0  # SR-04 default


class PlanError(ValueError):
    """A plan file that cannot be used; the message names file, field, value and reason."""


@dataclass(frozen=True, slots=True)
class ParamWindow:
    """The clinician's window for one parameter, in the unit of the parameter's name."""

    min: float
    max: float
    default: float

    def __post_init__(self) -> None:
        values = (self.min, self.max, self.default)
        if not all(math.isfinite(v) and v >= 0 for v in values):
            raise ValueError(f"window {values} has a negative or non-finite value")
        if not self.min <= self.default <= self.max:
            raise ValueError(f"default {self.default:g} is outside {self.min:g}..{self.max:g}")


@dataclass(frozen=True, slots=True)
class TreatmentPlan:
    plan_id: str
    handpiece: HandpieceType
    area: str
    windows: Mapping[Param, ParamWindow]
    max_pulses: int  # per area and session (SR-08)
    max_fluence_j_cm2: float  # cumulative fluence per cm2, per area and session (SR-08)
    source: str = ""
    serial: str | None = None  # a particular handpiece, or None for any of the type
    ready_delay_s: float = READY_DELAY_S
    inactivity_s: float = INACTIVITY_S
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.max_pulses < 0 or not (
            math.isfinite(self.max_fluence_j_cm2) and self.max_fluence_j_cm2 >= 0
        ):
            raise ValueError("max_pulses and max_fluence_j_cm2 must be >= 0")
        if not 0.0 <= self.ready_delay_s <= 60.0:
            raise ValueError(f"ready_delay_s {self.ready_delay_s:g} is outside 0..60")
        if not 1.0 <= self.inactivity_s <= 3600.0:
            raise ValueError(f"inactivity_s {self.inactivity_s:g} is outside 1..3600")

    def defaults(self) -> dict[Param, float]:
        return {param: window.default for param, window in self.windows.items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "plan_id": self.plan_id,
            "handpiece": self.handpiece.slug,
            "area": self.area,
            "max_pulses": self.max_pulses,
            "max_fluence_j_cm2": self.max_fluence_j_cm2,
            "ready_delay_s": self.ready_delay_s,
            "inactivity_s": self.inactivity_s,
            "params": {
                p.field_name: {"min": w.min, "max": w.max, "default": w.default}
                for p, w in self.windows.items()
            },
        }


# ---- built-in conservative plans -----------------------------------------------------------------
FRACTIONAL_CONSERVATIVE = TreatmentPlan(
    plan_id="builtin-fractional-1550-conservative",
    handpiece=HandpieceType.FRACTIONAL_1550,
    area="abdomen",
    windows={
        # de Angelis 2011: 12-14 mJ per microbeam (15 mm tip); Macedo 12-22 mJ; Kaufman 16 mJ.
        Param.ENERGY_MJ: ParamWindow(12.0, 16.0, 12.0),
        # Lee 2010 (CO2): about 10 % coverage; the window stays at or below it.
        Param.DENSITY_PCT: ParamWindow(5.0, 10.0, 8.0),
        # No published depth in clinical-parameters.md: "deep dermis" (origin document). Held
        # well inside the handpiece capability (200-1400 um); a clinician's plan sets its own.
        Param.DEPTH_UM: ParamWindow(400.0, 1000.0, 600.0),
        # de Angelis 2011: 2-3 passes.
        Param.PASSES: ParamWindow(2.0, 3.0, 2.0),
        # No published rate; low end of the handpiece's 1-15 Hz.
        Param.REP_RATE_HZ: ParamWindow(1.0, 10.0, 5.0),
    },
    # Ours (no published number): 300 pulses; 1500 J/cm2 summed over pulses (worst-case stacking,
    # see laserctl.safety.limits), i.e. about 200 pulses at the default 12 mJ, 8 % density.
    max_pulses=300,
    max_fluence_j_cm2=1500.0,
    source="shared/clinical-parameters.md: non-ablative fractional 1540/1550 nm table",
)

NDYAG_CONSERVATIVE = TreatmentPlan(
    plan_id="builtin-ndyag-1064-conservative",
    handpiece=HandpieceType.NDYAG_1064,
    area="abdomen",
    windows={
        # Shokeir et al.: 5 mm spot, 15 ms, 75 or 100 J/cm2.
        Param.FLUENCE_J_CM2: ParamWindow(75.0, 100.0, 75.0),
        Param.PULSE_MS: ParamWindow(15.0, 15.0, 15.0),
        Param.SPOT_MM: ParamWindow(5.0, 5.0, 5.0),
        # No published rate; the low end of the handpiece's 0.5-10 Hz.
        Param.REP_RATE_HZ: ParamWindow(0.5, 1.0, 1.0),
    },
    # Ours: 200 pulses; 15000 J/cm2 summed (200 pulses at 75 J/cm2).
    max_pulses=200,
    max_fluence_j_cm2=15000.0,
    source="shared/clinical-parameters.md: long-pulse Nd:YAG 1064 nm, Shokeir et al.",
)

BUILTIN_PLANS: dict[HandpieceType, TreatmentPlan] = {
    HandpieceType.FRACTIONAL_1550: FRACTIONAL_CONSERVATIVE,
    HandpieceType.NDYAG_1064: NDYAG_CONSERVATIVE,
}


def builtin_plan(handpiece: HandpieceType) -> TreatmentPlan:
    return BUILTIN_PLANS[handpiece]


# ---- files ---------------------------------------------------------------------------------------
def load_plan(path: str | Path) -> TreatmentPlan:
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise PlanError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    try:
        data = json.loads(raw) if path.suffix == ".json" else tomllib.loads(raw.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        kind = "JSON" if path.suffix == ".json" else "TOML"
        raise PlanError(f"{path}: not valid {kind}: {exc}") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: expected a table at the top level")
    return plan_from_dict(data, str(path))


def plan_from_dict(data: Mapping[str, Any], origin: str = "<plan>") -> TreatmentPlan:
    def fail(field_name: str, value: object, reason: str) -> PlanError:
        return PlanError(f"{origin}: field {field_name!r} = {value!r}: {reason}")

    def need(key: str) -> Any:
        if key not in data:
            raise PlanError(f"{origin}: field {key!r} is missing")
        return data[key]

    try:
        handpiece = HandpieceType.from_slug(str(need("handpiece")))
    except ValueError as exc:
        raise fail("handpiece", data.get("handpiece"), str(exc)) from None
    params = need("params")
    if not isinstance(params, dict) or not params:
        raise fail("params", params, "expected a table of parameter windows")
    windows: dict[Param, ParamWindow] = {}
    for name, spec in params.items():
        try:
            param = Param[str(name).upper()]
        except KeyError:
            known = ", ".join(p.field_name for p in Param)
            raise fail(f"params.{name}", spec, f"unknown parameter (known: {known})") from None
        if not isinstance(spec, dict) or not {"min", "max", "default"} <= spec.keys():
            raise fail(f"params.{name}", spec, "expected min, max and default")
        try:
            windows[param] = ParamWindow(
                float(spec["min"]), float(spec["max"]), float(spec["default"])
            )
        except (TypeError, ValueError) as exc:
            raise fail(f"params.{name}", spec, str(exc)) from None
    numbers: dict[str, float] = {}
    for key in ("max_pulses", "max_fluence_j_cm2", "ready_delay_s", "inactivity_s"):
        if key not in data and key in ("ready_delay_s", "inactivity_s"):
            continue
        value = need(key)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise fail(key, value, "expected a number")
        numbers[key] = float(value)
    if numbers["max_pulses"] != int(numbers["max_pulses"]):
        raise fail("max_pulses", data["max_pulses"], "expected a whole number")
    try:
        return TreatmentPlan(
            plan_id=str(data.get("plan_id", Path(origin).stem)),
            handpiece=handpiece,
            area=str(need("area")),
            windows=windows,
            max_pulses=int(numbers["max_pulses"]),
            max_fluence_j_cm2=numbers["max_fluence_j_cm2"],
            source=str(data.get("source", "")),
            serial=str(data["serial"]) if "serial" in data else None,
            ready_delay_s=numbers.get("ready_delay_s", READY_DELAY_S),
            inactivity_s=numbers.get("inactivity_s", INACTIVITY_S),
        )
    except ValueError as exc:
        raise PlanError(f"{origin}: {exc}") from None
