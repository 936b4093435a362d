"""From a profile to a treatment plan: a variant, the dark-skin adjustment, the operator's values.

A selector names what is used: `<profile id>/<variant>[/iv-vi]`, for example
`fractional-1550-abdomen/alba` or `ndyag-1064-thighs/rubra/iv-vi` (Fitzpatrick IV-VI). The
operator then sets values for the patient (strength, depth, ...) with `name=value`, inside the
window only (SR-07): a value beyond it is refused, naming the window and the value. The plan's
defaults are the values the controller sends first; the windows stay as the profile says.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from drivers.protocol import DeviceInfo, Param

from ..plan import ParamWindow, TreatmentPlan
from .capabilities import DARK_SKIN, VARIANTS, param_named, unit
from .catalog import ProfileError, load_catalog
from .model import Profile

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


@dataclass(frozen=True, slots=True)
class Selection:
    profile_id: str
    variant: str
    dark_skin: bool = False

    def __str__(self) -> str:
        return f"{self.profile_id}/{self.variant}" + (f"/{DARK_SKIN}" if self.dark_skin else "")


def parse_selector(text: str) -> Selection:
    parts = text.strip().split("/")
    usage = f"<profile id>/<{'|'.join(VARIANTS)}>[/{DARK_SKIN}]"
    if len(parts) not in (2, 3) or not parts[0]:
        raise ProfileError(f"profile {text!r}: expected {usage}")
    if parts[1] not in VARIANTS:
        raise ProfileError(
            f"profile {text!r}: variant {parts[1]!r} is not one of {', '.join(VARIANTS)}"
        )
    if len(parts) == 3 and parts[2] != DARK_SKIN:
        raise ProfileError(
            f"profile {text!r}: {parts[2]!r} is not an adjustment (only {DARK_SKIN!r}, "
            "Fitzpatrick IV-VI)"
        )
    return Selection(parts[0], parts[1], len(parts) == 3)


def parse_sets(items: Sequence[str]) -> dict[Param, float]:
    """`name=value` pairs from the command line (`energy_mj=18 depth_um=900`)."""
    out: dict[Param, float] = {}
    for item in items:
        name, sep, text = item.partition("=")
        param = param_named(name.strip())
        if not sep or param is None:
            known = ", ".join(p.field_name for p in Param)
            raise ProfileError(f"--set {item!r}: expected name=value with a name of: {known}")
        try:
            value = float(text)
        except ValueError:
            raise ProfileError(f"--set {item!r}: {text!r} is not a number") from None
        if not math.isfinite(value):
            raise ProfileError(f"--set {item!r}: not a finite number")
        out[param] = value
    return out


def build_plan(
    profile: Profile, selection: Selection, values: Mapping[Param, float] | None = None
) -> TreatmentPlan:
    """The plan for this selection; `values` replace the defaults, inside the windows only."""
    if selection.profile_id != profile.id:
        raise ProfileError(f"selection {selection} is not for profile {profile.id}")
    variant = profile.variants[selection.variant]
    windows = variant.windows_for(selection.dark_skin)
    chosen: dict[str, float] = {}
    out: dict[Param, ParamWindow] = {}
    for param, window in windows.items():
        default = window.default
        if values and param in values:
            default = check_in_window(selection, param, values[param], window.min, window.max)
            chosen[param.field_name] = default
        out[param] = ParamWindow(window.min, window.max, default)
    extra_names = sorted(p.field_name for p in (values or {}) if p not in windows)
    if extra_names:
        raise ProfileError(
            f"{selection}: no window for {', '.join(extra_names)} on {profile.handpiece.slug}"
        )
    sources = [profile.source, variant.source]
    if selection.dark_skin:
        sources.append(variant.dark_skin.source)
    return TreatmentPlan(
        plan_id=str(selection),
        handpiece=profile.handpiece,
        area=profile.area,
        windows=out,
        max_pulses=variant.max_pulses,
        max_fluence_j_cm2=variant.max_fluence_j_cm2,
        source="; ".join(sources),
        extra={
            "profile_id": profile.id,
            "profile_version": profile.version,
            "profile_sha256": profile.sha256,
            "variant": selection.variant,
            "dark_skin": selection.dark_skin,
            "operator_values": chosen,
        },
    )


def check_in_window(
    selection: Selection | str, param: Param, value: float, low: float, high: float
) -> float:
    """The value, or ProfileError naming the window and the value (SR-07)."""
    milli = value * 1000.0
    if milli < round(low * 1000) - 1e-6 or milli > round(high * 1000) + 1e-6:
        raise ProfileError(
            f"{selection}: {param.field_name} = {value:g}{unit(param)} is outside the profile's "
            f"window {low:g}..{high:g}{unit(param)}: the operator adjusts inside it only"
        )
    return round(milli) / 1000.0


def plan_for_session(
    selector: str,
    sets: Sequence[str] = (),
    *,
    directory: Path | None = None,
    trusted: Mapping[str, Ed25519PublicKey] | None = None,
    device: DeviceInfo | None = None,
) -> TreatmentPlan:
    """`laserctl session --profile SELECTOR --set name=value ...`: load the profile (schema and
    signature checked, SR-13), pick the variant and adjustment, apply the operator's values."""
    selection = parse_selector(selector)
    values = parse_sets(sets)
    catalog = load_catalog(directory, trusted=trusted, device=device)
    return build_plan(catalog.get(selection.profile_id), selection, values)
