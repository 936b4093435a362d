"""Service calibration (SR-14): the fit and its bounds, the simulator's drift corrected, the
calibrated set-point mapping, validity, and arming refused without a valid calibration."""

from __future__ import annotations

import dataclasses
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from drivers.host import HandpieceConnection
from drivers.protocol import (
    Arm,
    DeviceEvent,
    DeviceInfo,
    HandpieceType,
    Param,
    SetParams,
    Shot,
    SimControl,
)
from laserctl.calibration import (
    Calibration,
    CalibrationInvalid,
    Point,
    calibrate,
    calibration_check,
    calibration_lookup,
    current_calibration,
    fit_points,
    fit_problems,
    revocation,
    verify,
)
from laserctl.calibration.plot import svg
from laserctl.calibration.procedure import set_points
from laserctl.controller.events import ConfirmEyewear, RequestArm
from laserctl.controller.table import State
from laserctl.records import RecordStore, open_store
from tests.harness import Bench

NOW = 1_800_000_000.0
DAY = 86400.0


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RecordStore]:
    s = open_store(tmp_path / "laserctl.db")
    yield s
    s.close()


def synthetic(
    gain: float = 1.0, *, offset: float = 0.0, noise: float = 0.0, curve: float = 0.0, seed: int = 1
) -> list[Point]:
    rng = random.Random(seed)
    out = []
    for s in set_points(4.0, 70.0, 6):
        for _ in range(4):
            value = gain * s + offset + curve * (s - 37.0) ** 2
            out.append(Point(s, value * (1 + rng.gauss(0.0, noise))))
    return out


def calibration_for(
    serial: str, handpiece: str = "fractional-1550", *, gain: float = 1.0, created: float = NOW
) -> Calibration:
    points = tuple(synthetic(gain, noise=0.01))
    return Calibration(
        serial=serial,
        handpiece=handpiece,
        firmware="sim-1.0.0",
        dose_param=Param.ENERGY_MJ if handpiece == "fractional-1550" else Param.FLUENCE_J_CM2,
        created_at=created,
        expires_at=created + 30 * DAY,
        who="alice",
        points=points,
        fit=fit_points(points),
    )


def device(
    serial: str = "FX-00001", handpiece: HandpieceType = HandpieceType.FRACTIONAL_1550
) -> DeviceInfo:
    caps = {Param.ENERGY_MJ: (4.0, 70.0), Param.DENSITY_PCT: (5.0, 50.0)}
    return DeviceInfo(handpiece, serial, "sim-1.0.0", 1, 1, True, 1550, frozenset(), caps)


# ---- the fit ------------------------------------------------------------------------------------
def test_fit_recovers_gain_and_offset_of_a_straight_line() -> None:
    fit = fit_points(synthetic(1.25, offset=0.2))
    assert fit.slope == pytest.approx(1.25) and fit.offset == pytest.approx(0.2)
    assert fit.residual_pct == pytest.approx(0.0, abs=1e-9)
    assert fit.linearity_pct == pytest.approx(0.0, abs=1e-9)
    assert fit.pulses == 24 and fit.set_points == 6
    assert fit_problems(fit, 70.0) == []


@pytest.mark.req("SR-14")
@pytest.mark.parametrize(
    ("points", "words"),
    [
        (synthetic(1.0, curve=0.004), "linearity error"),
        (synthetic(1.0, noise=0.05), "residual"),
        (synthetic(1.45, noise=0.01), "gain 1.45"),
        (synthetic(0.6, noise=0.01), "gain 0.6"),
        (synthetic(1.0, offset=5.0), "offset"),
        (synthetic(1.0)[:8], "set points"),
    ],
    ids=["bent", "noisy", "gain-high", "gain-low", "offset", "two-points"],
)
def test_a_fit_out_of_bounds_is_rejected(points: list[Point], words: str) -> None:
    problems = fit_problems(fit_points(points), 70.0)
    assert any(words in p for p in problems), problems


def test_degenerate_points_cannot_be_fitted() -> None:
    from laserctl.calibration import FitError

    with pytest.raises(FitError):
        fit_points([Point(10.0, 10.0)] * 5)
    with pytest.raises(FitError):
        fit_points([Point(10.0, 10.0)])


# ---- against the simulator ----------------------------------------------------------------------
@pytest.fixture(params=["fractional-1550", "ndyag-1064"])
def handpiece(request: pytest.FixtureRequest) -> Iterator[tuple[HandpieceConnection, DeviceInfo]]:
    connection = HandpieceConnection(f"sim:{request.param}?seed=3", reconnect=False)
    info = connection.open()
    yield connection, info
    connection.close()


def test_drift_is_seen_by_verification_and_recalibration_brings_it_back_within_5_percent(
    handpiece: tuple[HandpieceConnection, DeviceInfo],
) -> None:
    connection, info = handpiece
    first = calibrate(connection, info, "alice")
    assert first.calibration is not None, first.problems
    assert first.fit is not None and first.fit.slope == pytest.approx(1.0, abs=0.03)
    assert verify(connection, first.calibration, info).passed

    connection.call(SimControl("drift 25"))
    drifted = verify(connection, first.calibration, info)
    assert not drifted.passed
    assert all(20.0 < c.deviation_pct < 30.0 for c in drifted.checks), drifted.to_json()

    again = calibrate(connection, info, "alice")
    assert again.calibration is not None, again.problems
    assert again.fit is not None and again.fit.slope == pytest.approx(1.25, abs=0.03)
    result = verify(connection, again.calibration, info, pulses=5)
    assert result.passed
    assert result.worst_pct < 2.0  # mean per set point; the pulses themselves:
    for check in result.checks:
        assert all(abs(m / check.target - 1) < 0.05 for m in check.measured), check


def test_a_gain_beyond_bounds_is_rejected_not_corrected() -> None:
    connection = HandpieceConnection("sim:fractional-1550", reconnect=False)
    info = connection.open()
    try:
        connection.call(SimControl("gain 1.5"))
        outcome = calibrate(connection, info, "alice")
    finally:
        connection.close()
    assert not outcome.accepted
    assert any("gain 1.5" in p for p in outcome.problems)


def test_treatment_shots_of_a_drifted_handpiece_land_within_5_percent_once_calibrated() -> None:
    """Real pulses (SHOT events), not only meter readings: with drift 12 % an uncalibrated set
    point of 20 mJ delivers about 22.4 mJ; the calibrated drive value delivers 20 mJ +-5 %.
    (Beyond 20 % drift the simulated device's own monitor, which compares with the set value it
    was sent, trips whatever the host does: see docs/service-guide.md.)"""
    shots: list[Shot] = []
    done = threading.Event()

    def on_event(event: object) -> None:
        if isinstance(event, DeviceEvent) and isinstance(event.event, Shot):
            shots.append(event.event)
            if len(shots) >= 12:
                done.set()

    connection = HandpieceConnection(
        "sim:fractional-1550?seed=5", reconnect=False, on_event=on_event
    )
    info = connection.open()
    try:
        connection.call(SimControl("drift 12"))
        outcome = calibrate(connection, info, "alice")
        assert outcome.calibration is not None, outcome.problems
        cal = outcome.calibration
        target = {Param.ENERGY_MJ: 20000, Param.DENSITY_PCT: 8000, Param.DEPTH_UM: 600000}
        target |= {Param.PASSES: 2000, Param.REP_RATE_HZ: 15000}
        wire = tuple((int(p), v) for p, v in sorted(target.items()))
        for calibrated in (False, True):
            shots.clear()
            done.clear()
            connection.call(SetParams(cal.apply(wire) if calibrated else wire))
            connection.call(Arm(12, 50))
            connection.call(SimControl("press"))
            assert done.wait(5.0), f"{len(shots)} shots"
            connection.call(SimControl("release"))
            time.sleep(0.05)
            deviations = [(s.measured_milli / 20000 - 1) * 100 for s in shots[:12]]
            if calibrated:
                assert all(s.set_milli == cal.drive_milli(20000) for s in shots)
                assert all(abs(cal.target_milli(s.set_milli) - 20000) <= 1 for s in shots)
                assert all(abs(d) < 5.0 for d in deviations), deviations
            else:
                assert sum(deviations) / len(deviations) > 9.0, deviations
    finally:
        connection.close()


# ---- the calibrated set points (SR-07: the calibrated range) ------------------------------------
@pytest.mark.req("SR-07")
def test_set_points_stay_inside_the_calibrated_range() -> None:
    cal = calibration_for("FX-1", gain=1.25)
    lo, hi = cal.target_range
    assert lo == pytest.approx(5.0, rel=0.02) and hi == pytest.approx(87.5, rel=0.02)
    restricted = cal.restrict({Param.ENERGY_MJ: (4.0, 70.0), Param.DENSITY_PCT: (5.0, 50.0)})
    assert restricted[Param.ENERGY_MJ][0] == pytest.approx(lo)
    assert restricted[Param.ENERGY_MJ][1] == 70.0
    assert restricted[Param.DENSITY_PCT] == (5.0, 50.0)
    assert cal.drive_milli(20000) == pytest.approx(16000, abs=300)
    set_lo, set_hi = cal.set_range
    for target in (round(lo * 1000), 30000, round(hi * 1000)):
        assert set_lo * 1000 <= cal.drive_milli(target) <= set_hi * 1000
        assert abs(cal.target_milli(cal.drive_milli(target)) - target) <= 2
    for beyond in (round(lo * 1000) - 1, round(hi * 1000) + 1, 4000):
        with pytest.raises(ValueError, match="outside the calibrated range"):
            cal.drive_milli(beyond)
    wire = ((int(Param.ENERGY_MJ), 20000), (int(Param.DENSITY_PCT), 8000))
    assert cal.apply(wire) == ((int(Param.ENERGY_MJ), cal.drive_milli(20000)), wire[1])


# ---- records and validity (SR-14) ---------------------------------------------------------------
@pytest.mark.req("SR-14")
def test_a_stored_calibration_keeps_who_when_points_and_fit(store: RecordStore) -> None:
    cal = calibration_for("FX-00001")
    ref = store.add_calibration("FX-00001", "fractional-1550", "alice", cal.to_record())
    loaded = current_calibration(store, device(), now=NOW + DAY)
    assert loaded.record_id == ref and loaded.who == "alice"
    assert loaded.created_at == NOW and loaded.expires_at == NOW + 30 * DAY
    assert loaded.points == cal.points
    assert loaded.fit == cal.fit
    stored = store.calibrations("FX-00001")[0]
    assert stored["who"] == "alice" and stored["fit"] == cal.fit.to_json()


@pytest.mark.req("SR-14")
def test_calibration_check_refuses_missing_expired_foreign_revoked_and_bent(
    store: RecordStore,
) -> None:
    clock = [NOW + DAY]
    check = calibration_check(store, clock=lambda: clock[0])
    assert "no calibration for fractional-1550 FX-00001" in check(device())
    store.add_calibration(
        "FX-00001", "fractional-1550", "alice", calibration_for("FX-00001").to_record()
    )
    assert check(device()) == ""
    found = calibration_lookup(store)(device())
    assert isinstance(found, Calibration) and found.serial == "FX-00001"
    assert "no calibration" in check(device("FX-00002"))
    clock[0] = NOW + 31 * DAY
    assert "expired" in check(device())
    clock[0] = NOW + DAY
    assert "for a fractional-1550, the handpiece is a ndyag-1064" in check(
        device(handpiece=HandpieceType.NDYAG_1064)
    )
    store.add_calibration(
        "FX-00001",
        "fractional-1550",
        "bob",
        revocation("FX-00001", "fractional-1550", "bob", "daily verification failed", NOW),
    )
    assert "revoked" in check(device()) and "daily verification failed" in check(device())
    bent = dataclasses.replace(calibration_for("FX-00001"), points=tuple(synthetic(curve=0.004)))
    store.add_calibration("FX-00001", "fractional-1550", "alice", bent.to_record())
    assert "out of bounds" in check(device()) and "linearity error" in check(device())


@pytest.mark.req("SR-14")
def test_calibration_check_fails_safe_when_the_records_cannot_be_read() -> None:
    class Broken:
        def calibrations(self, serial: str) -> list[dict[str, object]]:
            raise OSError("disk gone")

        def add_calibration(self, *args: Any) -> int:  # pragma: no cover
            raise OSError

        def log_event(self, *args: Any, **kwargs: Any) -> int:  # pragma: no cover
            raise OSError

    assert "unreadable" in calibration_check(Broken())(device())
    assert "unreadable" in str(calibration_lookup(Broken())(device()))
    with pytest.raises(CalibrationInvalid, match="unreadable calibration record"):
        Calibration.from_record({"serial": "x"})


@pytest.mark.req("SR-14")
def test_arming_without_a_valid_calibration_is_refused(store: RecordStore) -> None:
    bench = Bench(calibration=calibration_check(store))
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    assert bench.state is not State.READY
    assert "no calibration for fractional-1550 FX-00000" in bench.core.refusals[-1].reason
    assert "Arm" not in bench.sent_types()


@pytest.mark.req("SR-14")
def test_arming_with_a_valid_calibration_is_allowed(store: RecordStore) -> None:
    cal = calibration_for("FX-00000", created=time.time())
    store.add_calibration("FX-00000", "fractional-1550", "alice", cal.to_record())
    bench = Bench(calibration=calibration_check(store))
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    assert bench.state is State.READY, bench.core.refusals


def test_the_plot_is_an_svg_with_the_fit() -> None:
    points = synthetic(1.1, noise=0.01)
    text = svg(points, fit_points(points), title="FX-1 <test>", unit="energy_mj", accepted=True)
    assert text.startswith("<svg") and text.rstrip().endswith("</svg>")
    assert "FX-1 &lt;test&gt;" in text and "ACCEPTED" in text
    assert text.count("<circle") == 2 * len(points)
