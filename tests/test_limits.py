"""Limits (SR-07) and the session budget (SR-08): property tests over random plans,
capabilities, requests and budgets."""

from __future__ import annotations

import dataclasses
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.protocol import HandpieceType, Param
from drivers.sim import MODELS
from laserctl.controller.events import ConfirmEyewear, RequestArm, SetParameters
from laserctl.controller.table import State
from laserctl.plan import (
    BUILTIN_PLANS,
    FRACTIONAL_CONSERVATIVE,
    NDYAG_CONSERVATIVE,
    ParamWindow,
    TreatmentPlan,
)
from laserctl.safety.energy import Verdict, check_energy
from laserctl.safety.limits import (
    GRANT_MARGIN,
    DoseUsed,
    LimitExceeded,
    check_value,
    effective_window,
    fluence_per_pulse,
    microbeams_per_cm2,
    plan_mismatch,
    pulse_grant,
    to_milli,
)
from tests.harness import Bench

finite = st.floats(min_value=0.0, max_value=500.0, allow_nan=False, allow_infinity=False)


@st.composite
def window_and_capability(draw: st.DrawFn) -> tuple[ParamWindow, tuple[float, float]]:
    a, b, c = sorted(draw(st.lists(finite, min_size=3, max_size=3)))
    window = ParamWindow(a, c, b)
    lo, hi = sorted(draw(st.lists(finite, min_size=2, max_size=2)))
    return window, (lo, hi)


def _plan(window: ParamWindow) -> TreatmentPlan:
    return dataclasses.replace(NDYAG_CONSERVATIVE, windows={Param.FLUENCE_J_CM2: window})


@pytest.mark.req("SR-07")
@given(window_and_capability(), st.floats(allow_nan=True, allow_infinity=True))
def test_no_value_ever_passes_beyond_min_of_plan_window_and_capability(
    wc: tuple[ParamWindow, tuple[float, float]], value: float
) -> None:
    window, cap = wc
    plan = _plan(window)
    caps = {Param.FLUENCE_J_CM2: cap}
    try:
        milli = check_value(plan, caps, Param.FLUENCE_J_CM2, value)
    except LimitExceeded as exc:
        message = str(exc)
        assert "fluence_j_cm2" in message  # names the limit ...
        if math.isfinite(value) and "overlap" not in message:
            assert f"{value:g}" in message  # ... and the value
        return
    # What goes on the wire is inside both, in the same integers the device checks.
    assert to_milli(window.min) <= milli <= to_milli(window.max)
    assert to_milli(cap[0]) <= milli <= to_milli(cap[1])


@pytest.mark.req("SR-07")
@given(window_and_capability())
def test_effective_window_is_the_intersection(wc: tuple[ParamWindow, tuple[float, float]]) -> None:
    window, cap = wc
    plan = _plan(window)
    try:
        eff = effective_window(plan, {Param.FLUENCE_J_CM2: cap}, Param.FLUENCE_J_CM2)
    except LimitExceeded:
        assert max(to_milli(window.min), to_milli(cap[0])) > min(
            to_milli(window.max), to_milli(cap[1])
        )
        return
    assert eff.min_milli == max(to_milli(window.min), to_milli(cap[0]))
    assert eff.max_milli == min(to_milli(window.max), to_milli(cap[1]))


@pytest.mark.req("SR-08")
@given(
    max_pulses=st.integers(0, 10_000),
    max_fluence=st.floats(0.0, 1e6),
    used_pulses=st.integers(0, 12_000),
    used_fluence=st.floats(0.0, 1.2e6),
    per_pulse=st.floats(0.0, 500.0),
)
def test_grant_never_exceeds_the_remaining_budget(
    max_pulses: int, max_fluence: float, used_pulses: int, used_fluence: float, per_pulse: float
) -> None:
    plan = dataclasses.replace(
        NDYAG_CONSERVATIVE, max_pulses=max_pulses, max_fluence_j_cm2=max_fluence
    )
    grant = pulse_grant(plan, DoseUsed(used_pulses, used_fluence), per_pulse)
    assert 0 <= grant.pulses <= max(0, max_pulses - used_pulses)
    # Even if every granted pulse delivers the +20 % the energy monitor tolerates:
    assert used_fluence + grant.pulses * per_pulse * GRANT_MARGIN <= max(
        max_fluence, used_fluence
    ) + 1e-9 * max(1.0, max_fluence)
    if grant.pulses:
        assert "max_" in grant.limited_by


@pytest.mark.req("SR-08")
def test_grant_takes_the_smaller_budget_and_names_it() -> None:
    plan = dataclasses.replace(NDYAG_CONSERVATIVE, max_pulses=10, max_fluence_j_cm2=1000.0)
    by_pulses = pulse_grant(plan, DoseUsed(4, 0.0), 75.0)
    assert by_pulses.pulses == 6
    assert by_pulses.limited_by.startswith("max_pulses 10")
    by_dose = pulse_grant(plan, DoseUsed(0, 500.0), 75.0)
    assert by_dose.pulses == 5  # floor(500 / (75 x 1.2))
    assert by_dose.limited_by.startswith("max_fluence_j_cm2 1000")


def test_fluence_per_pulse_formulas() -> None:
    assert fluence_per_pulse(HandpieceType.NDYAG_1064, {Param.FLUENCE_J_CM2: 75.0}) == 75.0
    # 10 % coverage with 140 um microbeams: 0.1 / (pi x 0.007^2) = 649.6 microbeams per cm2.
    assert microbeams_per_cm2(10.0) == pytest.approx(649.6, abs=0.1)
    per_pulse = fluence_per_pulse(
        HandpieceType.FRACTIONAL_1550, {Param.ENERGY_MJ: 20.0, Param.DENSITY_PCT: 10.0}
    )
    assert per_pulse == pytest.approx(20.0 * 649.6 / 1000.0, rel=1e-3)


@pytest.mark.parametrize("plan", list(BUILTIN_PLANS.values()), ids=lambda p: p.plan_id)
def test_builtin_plans_fit_their_handpiece(plan: TreatmentPlan) -> None:
    model = MODELS[plan.handpiece]
    assert plan_mismatch(plan, plan.handpiece, model.capabilities) == ""
    assert set(plan.windows) == set(model.capabilities)
    assert plan.ready_delay_s == 1.0 and plan.inactivity_s == 120.0


def test_builtin_plans_stay_inside_the_published_ranges() -> None:
    # shared/clinical-parameters.md: 1550 nm 12-22 mJ per microbeam, 2-3 passes (de Angelis);
    # Nd:YAG 75-100 J/cm2, 15 ms, 5 mm spot (Shokeir).
    fx = FRACTIONAL_CONSERVATIVE.windows
    assert 12.0 <= fx[Param.ENERGY_MJ].min <= fx[Param.ENERGY_MJ].max <= 22.0
    assert 2.0 <= fx[Param.PASSES].min <= fx[Param.PASSES].max <= 3.0
    assert fx[Param.DENSITY_PCT].max <= 10.0
    nd = NDYAG_CONSERVATIVE.windows
    assert 75.0 <= nd[Param.FLUENCE_J_CM2].min <= nd[Param.FLUENCE_J_CM2].max <= 100.0
    assert nd[Param.PULSE_MS].min == nd[Param.PULSE_MS].max == 15.0
    assert nd[Param.SPOT_MM].min == nd[Param.SPOT_MM].max == 5.0


# ---- the energy monitor (SR-06) ------------------------------------------------------------------
@pytest.mark.req("SR-06")
@given(st.integers(1, 10**7), st.integers(0, 3 * 10**7))
def test_energy_verdict_bands(set_milli: int, measured: int) -> None:
    verdict = check_energy(set_milli, measured).verdict
    deviation = abs(measured - set_milli) / set_milli
    if deviation > 0.20 + 1e-12:
        assert verdict is Verdict.FAULT
    elif deviation <= 0.10 - 1e-12:
        assert verdict is Verdict.OK
    elif 0.10 + 1e-12 < deviation <= 0.20 - 1e-12:
        assert verdict is Verdict.WARN


@pytest.mark.req("SR-06")
def test_energy_band_edges() -> None:
    assert check_energy(1000, 1200).verdict is Verdict.WARN  # exactly +20 %: not beyond
    assert check_energy(1000, 1201).verdict is Verdict.FAULT
    assert check_energy(1000, 799).verdict is Verdict.FAULT
    assert check_energy(1000, 1100).verdict is Verdict.OK  # exactly +10 %: not beyond
    assert check_energy(1000, 1101).verdict is Verdict.WARN
    assert check_energy(0, 0).verdict is Verdict.FAULT


# ---- through the controller ----------------------------------------------------------------------
@pytest.mark.req("SR-07")
def test_a_request_beyond_the_plan_window_is_refused_naming_limit_and_value() -> None:
    bench = Bench()
    bench.connect()
    sent_before = len(bench.sent)
    bench.operator(SetParameters(((Param.ENERGY_MJ, 25.0),)))
    assert len(bench.sent) == sent_before  # nothing went to the device
    reason = bench.core.refusals[-1].reason
    assert "energy_mj = 25 is above the maximum 16" in reason
    assert "plan window 12..16" in reason and "capability 4..70" in reason
    bench.operator(SetParameters(((Param.ENERGY_MJ, 14.0),)))
    assert bench.sent[-1].command.values[0] == (int(Param.ENERGY_MJ), 14000)  # type: ignore[attr-defined]
    bench.run(0.02)
    assert bench.core.params_confirmed
    assert bench.sim.params[Param.ENERGY_MJ] == 14000


@pytest.mark.req("SR-07")
def test_a_plan_window_wider_than_the_capability_is_clipped_to_the_capability() -> None:
    wide = dataclasses.replace(
        FRACTIONAL_CONSERVATIVE,
        windows={**FRACTIONAL_CONSERVATIVE.windows, Param.ENERGY_MJ: ParamWindow(4.0, 90.0, 12.0)},
    )
    bench = Bench(plan=wide)
    bench.connect()
    bench.operator(SetParameters(((Param.ENERGY_MJ, 80.0),)))
    assert "energy_mj = 80 is above the maximum 70" in bench.core.refusals[-1].reason


@pytest.mark.req("SR-08")
def test_arm_grants_the_remaining_budget_and_the_device_stops_when_it_is_used() -> None:
    plan = dataclasses.replace(FRACTIONAL_CONSERVATIVE, max_pulses=7)
    bench = Bench(plan=plan)
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    assert bench.arms()[-1].grant == 7
    bench.run(1.0)
    bench.inject("press")
    bench.run(3.0)
    assert bench.sim.shot_no == 7
    assert bench.core.shots_seen == 7
    assert bench.state is State.STANDBY
    bench.inject("release")
    bench.operator(RequestArm())
    assert len(bench.arms()) == 1
    assert bench.core.refusals[-1].reason.startswith("session budget used up (max_pulses 7")


@pytest.mark.req("SR-08")
def test_the_dose_budget_limits_the_grant() -> None:
    # 12 mJ, 8 % -> 6.24 J/cm2 per pulse, 7.49 with the margin: 50 J/cm2 allows 6 pulses.
    plan = dataclasses.replace(FRACTIONAL_CONSERVATIVE, max_fluence_j_cm2=50.0)
    bench = Bench(plan=plan)
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    assert bench.arms()[-1].grant == 6
    bench.run(1.0)
    bench.inject("press")
    bench.run(2.0)
    assert bench.sim.shot_no == 6
    bench.inject("release")
    # About 37.5 J/cm2 used: 12.5 left is one more pulse with the margin, then nothing.
    bench.operator(RequestArm())
    assert bench.arms()[-1].grant == 1
    bench.run(1.0)
    bench.inject("press")
    bench.run(0.5)
    bench.inject("release")
    assert bench.sim.shot_no == 7
    assert bench.core.dose.fluence_j_cm2 <= 50.0
    bench.operator(RequestArm())
    assert len(bench.arms()) == 2
    assert "max_fluence_j_cm2 50" in bench.core.refusals[-1].reason
