"""Treatment profiles: the shipped set, the schema's refusals, selections and operator values."""

from __future__ import annotations

import copy
import dataclasses
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.protocol import DeviceInfo, HandpieceType, Param
from laserctl.profiles import (
    AREAS,
    NOMINAL,
    ProfileError,
    build_plan,
    diff,
    load_catalog,
    parse_selector,
    plan_for_session,
    read_file,
    validate_document,
)
from laserctl.profiles.signing import SHIPPED_DIR

SHIPPED = sorted(SHIPPED_DIR.glob("*.toml"))
FRACTIONAL = SHIPPED_DIR / "fractional-1550-abdomen.toml"
NDYAG = SHIPPED_DIR / "ndyag-1064-thighs.toml"

# The published ranges of ../shared/clinical-parameters.md every shipped window stays inside.
# A parameter with no published number (depth, repetition rate) is bounded by the capability
# only, and its `source` says "ours".
PUBLISHED: dict[HandpieceType, dict[Param, tuple[float, float]]] = {
    HandpieceType.FRACTIONAL_1550: {
        Param.ENERGY_MJ: (12.0, 55.0),  # Macedo 12-22, Kaufman 16, de Angelis 12-14 / 35-55
        Param.DENSITY_PCT: (5.0, 10.0),  # Lee 2010 about 10 %; 2000 zones/cm2 over 2-3 passes
        Param.PASSES: (2.0, 3.0),  # de Angelis 2011
    },
    HandpieceType.NDYAG_1064: {
        Param.FLUENCE_J_CM2: (75.0, 100.0),  # Shokeir et al.
        Param.PULSE_MS: (15.0, 15.0),
        Param.SPOT_MM: (5.0, 5.0),
    },
}


@pytest.fixture(autouse=True)
def _empty_device_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Trust only the shipped release key, whatever the developer's own config holds."""
    monkeypatch.setenv("LASERCTL_CONFIG_DIR", str(tmp_path / "config"))


def document(path: Path = FRACTIONAL) -> dict[str, Any]:
    return tomllib.loads(path.read_text(encoding="utf-8"))


def fields(issues: list[Any]) -> list[str]:
    return [i.field for i in issues]


# ---- the shipped set ----------------------------------------------------------------------------
@pytest.mark.req("SR-13")
def test_every_shipped_profile_validates_and_is_signed() -> None:
    catalog = load_catalog(SHIPPED_DIR)
    assert catalog.issues == []
    assert len(catalog.profiles) == len(SHIPPED) == 8
    expected = {f"{hp.slug}-{area}" for hp in HandpieceType for area in AREAS}
    assert set(catalog.profiles) == expected


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_shipped_windows_stay_inside_published_ranges_and_capability(path: Path) -> None:
    profile, issues = read_file(path)
    assert profile is not None, issues
    published = PUBLISHED[profile.handpiece]
    for variant in profile.variants.values():
        assert variant.source and variant.description
        for dark in (False, True):
            for param, window in variant.windows_for(dark).items():
                lo, hi = NOMINAL[profile.handpiece][param]
                assert lo <= window.min <= window.default <= window.max <= hi
                assert window.source, f"{path.name}: {param.field_name} has no source"
                if param in published:
                    p_lo, p_hi = published[param]
                    assert p_lo <= window.min and window.max <= p_hi, (path.name, param)
                else:
                    assert "ours" in window.source, (path.name, param)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_dark_skin_adjustment_lowers_energy_or_density(path: Path) -> None:
    profile, _ = read_file(path)
    assert profile is not None
    for variant in profile.variants.values():
        lowered = [
            p
            for p, w in variant.dark_skin.windows.items()
            if w.max < variant.windows[p].max or w.default < variant.windows[p].default
        ]
        assert set(lowered) & {Param.ENERGY_MJ, Param.FLUENCE_J_CM2, Param.DENSITY_PCT}


def test_alba_gets_at_least_the_strength_of_rubra() -> None:
    """Old striae respond less (Goldman 2008; Shokeir: alba better at 100 J/cm2)."""
    for path in SHIPPED:
        profile, _ = read_file(path)
        assert profile is not None
        dose = (
            Param.ENERGY_MJ
            if profile.handpiece is HandpieceType.FRACTIONAL_1550
            else (Param.FLUENCE_J_CM2)
        )
        rubra, alba = (
            profile.variants["rubra"].windows[dose],
            profile.variants["alba"].windows[dose],
        )
        assert alba.default >= rubra.default and alba.max >= rubra.max


# ---- each kind of bad profile is rejected with its field named (SR-13) --------------------------
def _set(data: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    node[last] = value


def _delete(data: dict[str, Any], path: str) -> None:
    *parents, last = path.split(".")
    node = data
    for key in parents:
        node = node[key]
    del node[last]


BAD_VALUES = [
    # (field, value, words expected in the reason)
    ("variants.alba.params.energy_mj.max", 80.0, "capability 4..70"),
    ("variants.alba.params.energy_mj.min", 2.0, "capability 4..70"),
    ("variants.rubra.params.density_pct.default", 12.0, "above the window's max 10"),
    ("variants.rubra.params.density_pct.default", 4.0 + 1.0, "below the window's min"),
    ("variants.rubra.params.depth_um.max", 300.0, "below min 400"),
    ("variants.rubra.params.passes.default", 2.5, "whole number"),
    ("variants.alba.params.energy_mj.default", "20", "valid number"),
    ("variants.alba.params.energy_mj.default", True, "valid number"),
    ("variants.alba.params.energy_mj.default", float("nan"), "finite"),
    ("variants.alba.max_pulses", 0, "greater than or equal to 1"),
    ("variants.alba.max_pulses", 12.5, "valid integer"),
    ("variants.alba.max_fluence_j_cm2", 1.0, "one pulse"),
    ("version", 0, "greater than or equal to 1"),
    ("area", "face", "unknown area"),
    ("id", "fractional-1550-belly", "must be fractional-1550-abdomen"),
    ("schema_version", 2, "1"),
    ("title", "", "at least 1 character"),
    ("variants.rubra.params.energy_mj.source", "", "at least 1 character"),
    ("variants.alba.dark_skin.params.energy_mj.max", 40.0, "may only lower"),
    ("variants.alba.dark_skin.params.density_pct.default", 10.0, "above the window's max 7"),
]


@pytest.mark.req("SR-13")
@pytest.mark.parametrize(("field", "value", "reason"), BAD_VALUES, ids=lambda v: str(v)[:40])
def test_a_bad_value_is_rejected_naming_file_field_value_and_reason(
    field: str, value: Any, reason: str
) -> None:
    data = document()
    if field == "variants.rubra.params.density_pct.default" and value == 5.0:
        _set(data, "variants.rubra.params.density_pct.min", 6.0)  # default 5 below min 6
    _set(data, field, value)
    profile, issues = validate_document(data, "x.toml")
    assert profile is None
    matching = [i for i in issues if i.field == field or field.startswith(i.field + ".")]
    assert matching, [str(i) for i in issues]
    issue = matching[0]
    assert issue.file == "x.toml"
    assert reason in issue.reason or reason.lower() in str(issue).lower(), str(issue)
    if isinstance(value, str | int) and not isinstance(value, bool) and issue.field == field:
        assert repr(value) in str(issue)


@pytest.mark.req("SR-13")
def test_unknown_fields_are_rejected_wherever_they_are() -> None:
    data = document()
    data["colour"] = "red"
    data["variants"]["alba"]["params"]["energy_mj"]["maximum"] = 30
    data["variants"]["alba"]["params"]["wavelength_nm"] = {"min": 1, "max": 2, "default": 1}
    data["variants"]["mixed"] = {}
    _, issues = validate_document(data, "x.toml")
    assert {
        "colour",
        "variants.alba.params.energy_mj.maximum",
        "variants.alba.params.wavelength_nm",
        "variants.mixed",
    } <= set(fields(issues))
    assert all(i.reason == "unknown field" for i in issues)


@pytest.mark.req("SR-13")
def test_a_parameter_of_the_other_handpiece_or_a_missing_one_is_rejected() -> None:
    data = document()
    data["variants"]["rubra"]["params"]["fluence_j_cm2"] = {
        "min": 10.0,
        "max": 20.0,
        "default": 10.0,
        "source": "s",
    }
    _delete(data, "variants.alba.params.depth_um")
    _, issues = validate_document(data, "x.toml")
    by_field = {i.field: i for i in issues}
    assert by_field["variants.rubra.params.fluence_j_cm2"].reason == "unknown field"
    assert by_field["variants.alba.params.depth_um"].reason == "missing"


@pytest.mark.req("SR-13")
@pytest.mark.parametrize("handpiece", ["co2-10600", 3, None])
def test_an_unknown_handpiece_is_rejected(handpiece: Any) -> None:
    data = document()
    data["handpiece"] = handpiece
    profile, issues = validate_document(data, "x.toml")
    assert profile is None
    assert fields(issues) == ["handpiece"]
    assert "unknown handpiece" in issues[0].reason


@pytest.mark.req("SR-13")
def test_every_problem_of_a_file_is_reported_at_once() -> None:
    data = document(NDYAG)
    _set(data, "variants.rubra.params.fluence_j_cm2.max", 200.0)
    _set(data, "variants.alba.params.spot_mm.default", 12.0)
    _set(data, "variants.alba.params.rep_rate_hz.min", "1")
    data["notes"] = "x"
    _, issues = validate_document(data, "y.toml")
    assert {
        "variants.rubra.params.fluence_j_cm2.max",
        "variants.alba.params.spot_mm.default",
        "variants.alba.params.rep_rate_hz.min",
        "notes",
    } <= set(fields(issues))


@pytest.mark.req("SR-13")
def test_the_connected_handpiece_capability_is_checked_too() -> None:
    caps = dict(NOMINAL[HandpieceType.FRACTIONAL_1550])
    caps[Param.ENERGY_MJ] = (4.0, 30.0)  # this handpiece reports less than the nominal 70 mJ
    info = DeviceInfo(
        handpiece=HandpieceType.FRACTIONAL_1550,
        serial="FX-1",
        firmware="f",
        protocol=1,
        boot_id=1,
        simulated=True,
        wavelength_nm=1550,
        interlocks=frozenset(),
        capabilities=caps,
    )
    profile, issues = validate_document(document(), "x.toml", device=info)
    assert profile is None
    assert fields(issues) == ["variants.alba.params.energy_mj.max"]
    assert "connected handpiece's capability 4..30" in issues[0].reason
    # A profile of the other type is checked against the nominal ranges only.
    other, problems = validate_document(document(NDYAG), "y.toml", device=info)
    assert other is not None and problems == []


def test_not_toml_and_a_wrong_file_name_are_reported(tmp_path: Path) -> None:
    bad = tmp_path / "broken.toml"
    bad.write_text("handpiece = [", encoding="utf-8")
    _, issues = read_file(bad)
    assert "not valid TOML" in issues[0].reason
    renamed = tmp_path / "something.toml"
    renamed.write_bytes(FRACTIONAL.read_bytes())
    profile, issues = read_file(renamed)
    assert profile is None and fields(issues) == ["id"]


WINDOW_FIELDS = [
    f"variants.{v}.params.{p.field_name}.{a}"
    for v in ("rubra", "alba")
    for p in NOMINAL[HandpieceType.FRACTIONAL_1550]
    for a in ("min", "max", "default")
]


@pytest.mark.req("SR-13")
@given(
    field=st.sampled_from(WINDOW_FIELDS),
    value=st.one_of(
        st.floats(min_value=-1e6, max_value=1e6, allow_nan=False).filter(
            lambda v: v < 0 or v > 1400
        ),
        st.text(max_size=5),
        st.booleans(),
        st.none(),
        st.lists(st.integers(), max_size=2),
    ),
)
def test_property_any_out_of_range_or_mistyped_window_value_is_named(
    field: str, value: Any
) -> None:
    """Values beyond every capability of the handpiece (no parameter goes below 0 or above
    1400), or of the wrong type, are always refused, and the issue names that very field."""
    data = copy.deepcopy(BASE_DOC)
    _set(data, field, value)
    profile, issues = validate_document(data, "h.toml")
    assert profile is None
    assert field in fields(issues), [str(i) for i in issues]


BASE_DOC = document()


# ---- selections, operator values and plans (SR-07) ----------------------------------------------
def test_selector_grammar() -> None:
    assert str(parse_selector("fractional-1550-chest/rubra")) == "fractional-1550-chest/rubra"
    sel = parse_selector("ndyag-1064-thighs/alba/iv-vi")
    assert (sel.profile_id, sel.variant, sel.dark_skin) == ("ndyag-1064-thighs", "alba", True)
    for bad in ("fractional-1550-chest", "x/mixed", "x/alba/dark", "/alba", "a/b/c/d"):
        with pytest.raises(ProfileError):
            parse_selector(bad)


def test_plan_from_a_profile_carries_windows_limits_and_its_hash() -> None:
    plan = plan_for_session("fractional-1550-abdomen/alba", directory=SHIPPED_DIR)
    profile, _ = read_file(FRACTIONAL)
    assert profile is not None
    variant = profile.variants["alba"]
    assert plan.plan_id == "fractional-1550-abdomen/alba"
    assert plan.handpiece is HandpieceType.FRACTIONAL_1550 and plan.area == "abdomen"
    assert plan.max_pulses == variant.max_pulses
    assert plan.max_fluence_j_cm2 == variant.max_fluence_j_cm2
    assert plan.windows[Param.ENERGY_MJ].max == variant.windows[Param.ENERGY_MJ].max
    assert plan.extra["profile_sha256"] == profile.sha256
    assert plan.extra["profile_version"] == profile.version


def test_dark_skin_selection_uses_the_lower_windows() -> None:
    normal = plan_for_session("fractional-1550-abdomen/alba", directory=SHIPPED_DIR)
    dark = plan_for_session("fractional-1550-abdomen/alba/iv-vi", directory=SHIPPED_DIR)
    assert dark.windows[Param.DENSITY_PCT].max < normal.windows[Param.DENSITY_PCT].max
    assert dark.windows[Param.ENERGY_MJ].max < normal.windows[Param.ENERGY_MJ].max
    assert dark.windows[Param.DEPTH_UM] == normal.windows[Param.DEPTH_UM]
    assert dark.extra["dark_skin"] is True


@pytest.mark.req("SR-07")
def test_the_operator_sets_strength_and_depth_inside_the_window_only() -> None:
    plan = plan_for_session(
        "fractional-1550-abdomen/alba", ["energy_mj=30", "depth_um=1100"], directory=SHIPPED_DIR
    )
    assert plan.windows[Param.ENERGY_MJ].default == 30.0
    assert plan.windows[Param.DEPTH_UM].default == 1100.0
    assert plan.defaults()[Param.ENERGY_MJ] == 30.0  # what the controller sends first
    assert plan.extra["operator_values"] == {"energy_mj": 30.0, "depth_um": 1100.0}
    with pytest.raises(
        ProfileError, match=r"energy_mj = 36 mJ is outside the profile's window 14..35"
    ):
        plan_for_session("fractional-1550-abdomen/alba", ["energy_mj=36"], directory=SHIPPED_DIR)
    with pytest.raises(ProfileError, match=r"energy_mj = 30 mJ is outside .* 14..28"):
        plan_for_session(
            "fractional-1550-abdomen/alba/iv-vi", ["energy_mj=30"], directory=SHIPPED_DIR
        )
    with pytest.raises(ProfileError, match="no window for fluence_j_cm2"):
        plan_for_session(
            "fractional-1550-abdomen/alba", ["fluence_j_cm2=30"], directory=SHIPPED_DIR
        )
    for bad in ("energy_mj", "speed=3", "energy_mj=abc", "energy_mj=inf"):
        with pytest.raises(ProfileError):
            plan_for_session("fractional-1550-abdomen/alba", [bad], directory=SHIPPED_DIR)


@given(st.floats(min_value=0, max_value=100, allow_nan=False))
def test_property_operator_values_never_leave_the_window(value: float) -> None:
    profile, _ = read_file(FRACTIONAL)
    assert profile is not None
    window = profile.variants["rubra"].windows[Param.ENERGY_MJ]
    try:
        plan = build_plan(profile, parse_selector(f"{profile.id}/rubra"), {Param.ENERGY_MJ: value})
    except ProfileError:
        assert not window.min <= value <= window.max
        return
    assert window.min <= plan.windows[Param.ENERGY_MJ].default <= window.max


# ---- diff ---------------------------------------------------------------------------------------
def test_diff_names_every_changed_field() -> None:
    a, _ = read_file(FRACTIONAL)
    assert a is not None
    variant = a.variants["alba"]
    energy = dataclasses.replace(variant.windows[Param.ENERGY_MJ], max=30.0)
    b = dataclasses.replace(
        a,
        version=2,
        variants={
            **a.variants,
            "alba": dataclasses.replace(
                variant, windows={**variant.windows, Param.ENERGY_MJ: energy}
            ),
        },
    )
    changes = {c.field: (c.old, c.new) for c in diff(a, b)}
    assert changes == {"version": (1, 2), "variants.alba.params.energy_mj.max": (35.0, 30.0)}
    assert diff(a, a) == []
