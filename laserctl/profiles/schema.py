"""The profile file schema (SR-13), checked with pydantic in strict mode.

Every problem of a file is reported at once, each as an Issue naming the file, the field (a
dotted path such as `variants.alba.params.energy_mj.max`), the value and the reason: unknown
fields, wrong types, a default outside its window, a window outside the handpiece's capability
(the nominal one, and the connected handpiece's when given), an unknown area or handpiece, a
dark-skin adjustment that raises anything, session limits that do not allow one pulse.

File layout (TOML), one file per handpiece and area, named `<id>.toml`:

    schema_version = 1
    handpiece = "fractional-1550"          # or ndyag-1064
    area = "abdomen"                       # chest | abdomen | thighs | buttocks
    id = "fractional-1550-abdomen"         # <handpiece>-<area>, also the file name
    version = 3                            # raised on every change (profiles sign checks)
    title = "..."
    source = "where the numbers come from"

    [variants.rubra]                       # and [variants.alba]: both required
    description = "..."
    source = "..."
    max_pulses = 300                       # per area and session (SR-08)
    max_fluence_j_cm2 = 2500.0             # cumulative per cm2 per session (SR-08)
    [variants.rubra.params.energy_mj]      # every parameter of the handpiece
    min = 12.0
    max = 20.0
    default = 14.0
    source = "..."
    [variants.rubra.dark_skin]             # Fitzpatrick IV-VI: lower energy or density
    source = "..."
    [variants.rubra.dark_skin.params.density_pct]
    min = 5.0
    max = 7.0
    default = 5.0
    source = "..."
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from drivers.protocol import DeviceInfo, HandpieceType, Param

from ..safety.limits import GRANT_MARGIN, fluence_per_pulse
from .capabilities import (
    AREAS,
    LOWERED_FOR_DARK_SKIN,
    NOMINAL,
    VARIANTS,
    WHOLE_NUMBER,
    Range,
    capability,
    unit,
)
from .model import DarkSkin, Profile, Variant, Window

SCHEMA_VERSION = 1
MAX_PULSES_LIMIT = 10_000  # a sanity bound on a per-session pulse budget


@dataclass(frozen=True, slots=True)
class Issue:
    """One problem of one file: where, what value, why."""

    file: str
    field: str  # dotted path; "" for the file as a whole
    value: Any
    reason: str

    def __str__(self) -> str:
        where = f"field {self.field!r}" if self.field else "file"
        value = "" if self.value is _MISSING or not self.field else f" = {_show(self.value)}"
        return f"{self.file}: {where}{value}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        value = None if self.value is _MISSING else self.value
        return {"file": self.file, "field": self.field, "value": value, "reason": self.reason}


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


_MISSING: Any = _Missing()


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


# ---- the models ---------------------------------------------------------------------------------
class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False, frozen=True)


def _milli(value: float) -> int:
    return round(value * 1000.0)


class WindowDoc(_Strict):
    """min, max and default of one parameter; subclassed per handpiece and parameter so the
    validators know which capability applies."""

    HANDPIECE: ClassVar[HandpieceType]
    PARAM: ClassVar[Param]

    min: float
    max: float
    default: float
    source: str = Field(min_length=1)

    @field_validator("min", "max", "default")
    @classmethod
    def _within_capability(cls, value: float, info: ValidationInfo) -> float:
        device = (info.context or {}).get("device_capabilities")
        cap = capability(cls.HANDPIECE, cls.PARAM, device)
        u = unit(cls.PARAM)
        if cap is None:
            raise ValueError("the connected handpiece does not report this parameter")
        if not _milli(cap[0]) <= _milli(value) <= _milli(cap[1]):
            whose = "the connected handpiece's" if device is not None else "the handpiece's"
            raise ValueError(f"outside {whose} capability {cap[0]:g}..{cap[1]:g}{u}")
        if cls.PARAM in WHOLE_NUMBER and value != int(value):
            raise ValueError("must be a whole number")
        return value

    @field_validator("max")
    @classmethod
    def _max_not_below_min(cls, value: float, info: ValidationInfo) -> float:
        low = info.data.get("min")
        if low is not None and _milli(value) < _milli(low):
            raise ValueError(f"below min {low:g}")
        return value

    @field_validator("default")
    @classmethod
    def _default_in_window(cls, value: float, info: ValidationInfo) -> float:
        low, high = info.data.get("min"), info.data.get("max")
        if low is not None and _milli(value) < _milli(low):
            raise ValueError(f"below the window's min {low:g}")
        if high is not None and _milli(value) > _milli(high):
            raise ValueError(f"above the window's max {high:g}")
        return value

    def window(self) -> Window:
        return Window(self.min, self.max, self.default, self.source)


def _window_model(handpiece: HandpieceType, param: Param) -> type[WindowDoc]:
    name = f"Window_{handpiece.name}_{param.name}"
    model: type[WindowDoc] = type(name, (WindowDoc,), {"__module__": __name__})
    model.HANDPIECE = handpiece
    model.PARAM = param
    return model


def _rules_error(problems: list[tuple[str, Any, str]]) -> PydanticCustomError:
    """Several cross-field problems in one error; `problems` carries each with its sub-path,
    which _issues() expands into separate Issues."""
    summary = "; ".join(f"{path}: {reason}" for path, _, reason in problems)
    return PydanticCustomError(
        "profile_rule", "{summary}", {"summary": summary, "problems": problems}
    )


class VariantDocBase(_Strict):
    HANDPIECE: ClassVar[HandpieceType]

    description: str = Field(min_length=1)
    source: str = Field(min_length=1)
    max_pulses: int = Field(ge=1, le=MAX_PULSES_LIMIT)
    max_fluence_j_cm2: float = Field(gt=0)

    def windows(self) -> dict[Param, Window]:
        params = getattr(self, "params")  # noqa: B009 - the field is declared per handpiece
        return {
            p: doc.window()
            for p in NOMINAL[self.HANDPIECE]
            if (doc := getattr(params, p.field_name)) is not None
        }

    def dark_windows(self) -> dict[Param, Window]:
        params = getattr(self, "dark_skin").params  # noqa: B009
        return {
            p: doc.window()
            for p in NOMINAL[self.HANDPIECE]
            if (doc := getattr(params, p.field_name)) is not None
        }

    @model_validator(mode="after")
    def _cross_checks(self) -> VariantDocBase:
        problems: list[tuple[str, Any, str]] = []
        base, dark = self.windows(), self.dark_windows()
        lowered = False
        for param, window in dark.items():
            ref = base[param]
            for attr in ("min", "max", "default"):
                value, limit = getattr(window, attr), getattr(ref, attr)
                if _milli(value) > _milli(limit):
                    problems.append(
                        (
                            f"dark_skin.params.{param.field_name}.{attr}",
                            value,
                            f"above the variant's {attr} {limit:g}: the dark-skin adjustment "
                            "may only lower values",
                        )
                    )
            if param in LOWERED_FOR_DARK_SKIN and (
                _milli(window.max) < _milli(ref.max) or _milli(window.default) < _milli(ref.default)
            ):
                lowered = True
        if not lowered:
            names = " or ".join(
                p.field_name for p in NOMINAL[self.HANDPIECE] if p in LOWERED_FOR_DARK_SKIN
            )
            problems.append(
                (
                    "dark_skin.params",
                    sorted(p.field_name for p in dark),
                    f"must lower the max or default of {names} for Fitzpatrick IV-VI",
                )
            )
        for label, windows in (("params", base), ("dark_skin.params", {**base, **dark})):
            per_pulse = fluence_per_pulse(
                self.HANDPIECE, {p: w.default for p, w in windows.items()}
            )
            if per_pulse * GRANT_MARGIN > self.max_fluence_j_cm2:
                problems.append(
                    (
                        "max_fluence_j_cm2",
                        self.max_fluence_j_cm2,
                        f"does not allow one pulse at the {label} defaults "
                        f"({per_pulse:.2f} J/cm2 per pulse, +{round((GRANT_MARGIN - 1) * 100)} %)",
                    )
                )
        if problems:
            raise _rules_error(problems)
        return self


def _profile_model(handpiece: HandpieceType) -> type[BaseModel]:
    slug = handpiece.slug
    fields: dict[str, Any] = {
        p.field_name: (_window_model(handpiece, p), ...) for p in NOMINAL[handpiece]
    }
    params = create_model(f"Params_{handpiece.name}", __base__=_Strict, **fields)
    optional: dict[str, Any] = {
        p.field_name: (_window_model(handpiece, p) | None, None) for p in NOMINAL[handpiece]
    }
    dark_params = create_model(f"DarkParams_{handpiece.name}", __base__=_Strict, **optional)
    dark = create_model(
        f"DarkSkin_{handpiece.name}",
        __base__=_Strict,
        source=(str, Field(min_length=1)),
        params=(dark_params, ...),
    )
    variant: type[VariantDocBase] = create_model(
        f"Variant_{handpiece.name}",
        __base__=VariantDocBase,
        params=(params, ...),
        dark_skin=(dark, ...),
    )
    variant.HANDPIECE = handpiece
    per_variant: dict[str, Any] = {name: (variant, ...) for name in VARIANTS}
    variants = create_model(f"Variants_{handpiece.name}", __base__=_Strict, **per_variant)

    class ProfileDoc(_Strict):
        schema_version: Literal[1]
        handpiece: Literal[slug]  # type: ignore[valid-type]
        area: Literal[AREAS]  # type: ignore[valid-type]
        id: str
        version: int = Field(ge=1)
        title: str = Field(min_length=1)
        source: str = Field(min_length=1)
        variants: variants  # type: ignore[valid-type]

        @field_validator("id")
        @classmethod
        def _id_names_handpiece_and_area(cls, value: str, info: ValidationInfo) -> str:
            area = info.data.get("area")
            if area is not None and value != f"{slug}-{area}":
                raise ValueError(f"must be {slug}-{area} (<handpiece>-<area>)")
            return value

    ProfileDoc.__name__ = f"Profile_{handpiece.name}"
    return ProfileDoc


_MODELS: dict[str, type[BaseModel]] = {hp.slug: _profile_model(hp) for hp in HandpieceType}


# ---- validation ---------------------------------------------------------------------------------
def validate_document(
    data: Mapping[str, Any],
    origin: str,
    *,
    device: DeviceInfo | None = None,
) -> tuple[Profile | None, list[Issue]]:
    """Check a parsed profile document; the profile when it is valid, and every issue found.
    With `device` (the connected handpiece), a profile for its type is also checked against
    the capabilities it reported."""
    slug = data.get("handpiece", _MISSING)
    model = _MODELS.get(slug) if isinstance(slug, str) else None
    if model is None:
        known = ", ".join(_MODELS)
        reason = "missing" if slug is _MISSING else f"unknown handpiece (known: {known})"
        return None, [Issue(origin, "handpiece", slug, reason)]
    caps: Mapping[Param, Range] | None = None
    if device is not None and device.handpiece.slug == slug:
        caps = device.capabilities
    context = {"device_capabilities": caps}
    try:
        doc = model.model_validate(dict(data), context=context)
    except ValidationError as exc:
        return None, _issues(exc, data, origin)
    return _profile(doc), []


def _issues(exc: ValidationError, data: Mapping[str, Any], origin: str) -> list[Issue]:
    out: list[Issue] = []
    for error in exc.errors(include_url=False):
        path = [str(part) for part in error["loc"]]
        problems = (error.get("ctx") or {}).get("problems")
        if error["type"] == "profile_rule" and isinstance(problems, list):
            for sub, value, reason in problems:
                out.append(Issue(origin, ".".join([*path, sub]), value, reason))
            continue
        kind = error["type"]
        if kind == "missing":
            value, reason = _MISSING, "missing"
        elif kind == "extra_forbidden":
            value, reason = error["input"], "unknown field"
        else:
            value, reason = error["input"], _reason(error["msg"])
        if kind == "literal_error" and path == ["area"]:
            reason = f"unknown area (known: {', '.join(AREAS)})"
        out.append(Issue(origin, ".".join(path), value, reason))
    return out


def _reason(message: str) -> str:
    for prefix in ("Value error, ", "Assertion failed, "):
        if message.startswith(prefix):
            return message[len(prefix) :]
    return message


def _profile(doc: Any) -> Profile:
    variants = {}
    for name in VARIANTS:
        v: VariantDocBase = getattr(doc.variants, name)
        variants[name] = Variant(
            name=name,
            description=v.description,
            source=v.source,
            windows=v.windows(),
            max_pulses=v.max_pulses,
            max_fluence_j_cm2=v.max_fluence_j_cm2,
            dark_skin=DarkSkin(v.dark_windows(), getattr(v, "dark_skin").source),  # noqa: B009
        )
    return Profile(
        id=doc.id,
        version=doc.version,
        handpiece=HandpieceType.from_slug(doc.handpiece),
        area=doc.area,
        title=doc.title,
        source=doc.source,
        variants=variants,
    )


__all__ = ["SCHEMA_VERSION", "Issue", "validate_document"]
