"""Calibration and daily verification against a handpiece's internal power meter.

CAL_FIRE fires one test pulse into the meter (the beam stays inside the handpiece) and the
device answers METER_READING; it is allowed in IDLE only, so a handpiece that has not passed
its self test since power-up is self-tested first (docs/protocol.md section 13).

Calibration (service): `repeats` pulses at each of `points` set points spread evenly over the
dose parameter's capability, a least-squares fit, the bounds (fit.py), a record.
Verification (operator, daily and when the handpiece is changed): a few pulses at the low,
middle and high end of the calibrated range, sent with calibrated set points; the mean
measured value at each must be within +-5 % of the target.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from drivers.host import CommandRefused
from drivers.protocol import (
    CalFire,
    Command,
    DeviceInfo,
    DeviceState,
    GetStatus,
    MeterReading,
    NakReason,
    Param,
    Response,
    SelfTest,
    SelfTestResult,
    Status,
)

from .fit import DEFAULT_BOUNDS, Bounds, Fit, FitError, Point, fit_points, fit_problems
from .record import DEFAULT_VALIDITY_DAYS, Calibration

VERIFY_TOLERANCE_PCT = 5.0
VERIFY_FRACTIONS = (0.1, 0.5, 0.9)  # where in the usable range the daily checks fire
VERIFY_PULSES_PER_CHECK = 3
VERIFY_PULSES = VERIFY_PULSES_PER_CHECK * len(VERIFY_FRACTIONS)  # a whole verification
BUSY_RETRIES = 50
BUSY_WAIT_S = 0.02


class Port(Protocol):
    """What calibration needs of a connection (drivers.host.HandpieceConnection)."""

    def call(self, command: Command, timeout: float = 2.0) -> Response: ...


class CalibrationFailed(Exception):
    """The procedure could not run or its result may not be used; the message says why."""


Progress = Callable[[int], None]  # called with the number of pulses just done (1)


def dose_param(info: DeviceInfo) -> Param:
    for param in (Param.ENERGY_MJ, Param.FLUENCE_J_CM2):
        if param in info.capabilities:
            return param
    raise CalibrationFailed(f"{info.serial} reports no dose parameter (energy or fluence)")


def make_idle(port: Port) -> None:
    """Bring the device to IDLE (self test after power-up), or say why it cannot be."""
    status = port.call(GetStatus())
    if not isinstance(status, Status):
        raise CalibrationFailed(f"unexpected answer to GET_STATUS: {type(status).__name__}")
    state = DeviceState(status.body.state)
    if state is DeviceState.NOT_TESTED:
        result = port.call(SelfTest(), timeout=5.0)
        if not isinstance(result, SelfTestResult) or not result.passed:
            raise CalibrationFailed("the self test did not pass: no calibration pulses")
        state = DeviceState.IDLE
    if state is not DeviceState.IDLE:
        raise CalibrationFailed(f"the device is {state.name}; calibration pulses need IDLE")


def fire(port: Port, set_milli: int) -> int:
    """One test pulse; the meter reading in thousandths. Retries while the device is BUSY."""
    for _ in range(BUSY_RETRIES):
        try:
            reply = port.call(CalFire(set_milli))
        except CommandRefused as exc:
            if exc.nak.reason == NakReason.BUSY:
                time.sleep(BUSY_WAIT_S)
                continue
            raise CalibrationFailed(str(exc)) from None
        if not isinstance(reply, MeterReading) or reply.set_milli != set_milli:
            raise CalibrationFailed(f"unexpected answer to CAL_FIRE: {reply!r}")
        return reply.measured_milli
    raise CalibrationFailed("the device stayed BUSY: no calibration pulse fired")


def set_points(low: float, high: float, count: int) -> list[float]:
    if count < 2:
        raise ValueError("at least two set points")
    return [round(low + (high - low) * i / (count - 1), 3) for i in range(count)]


def measure(
    port: Port, values: Sequence[float], repeats: int, progress: Progress | None = None
) -> list[Point]:
    points = []
    for value in values:
        milli = round(value * 1000)
        for _ in range(repeats):
            points.append(Point(milli / 1000.0, fire(port, milli) / 1000.0))
            if progress is not None:
                progress(1)
    return points


@dataclass
class Outcome:
    """A calibration run: the calibration when accepted, else the fit and why it was not."""

    points: list[Point]
    fit: Fit | None
    problems: list[str] = field(default_factory=list)
    calibration: Calibration | None = None

    @property
    def accepted(self) -> bool:
        return self.calibration is not None


def calibrate(
    port: Port,
    info: DeviceInfo,
    who: str,
    *,
    points: int = 6,
    repeats: int = 4,
    validity_days: float = DEFAULT_VALIDITY_DAYS,
    bounds: Bounds = DEFAULT_BOUNDS,
    now: Callable[[], float] = time.time,
    progress: Progress | None = None,
) -> Outcome:
    param = dose_param(info)
    low, high = info.capabilities[param]
    make_idle(port)
    measured = measure(port, set_points(low, high, points), repeats, progress)
    try:
        fit = fit_points(measured)
    except FitError as exc:
        return Outcome(measured, None, [str(exc)])
    problems = fit_problems(fit, high, bounds)
    if problems:
        return Outcome(measured, fit, problems)
    created = now()
    calibration = Calibration(
        serial=info.serial,
        handpiece=info.handpiece.slug,
        firmware=info.firmware,
        dose_param=param,
        created_at=created,
        expires_at=created + validity_days * 86400.0,
        who=who,
        points=tuple(measured),
        fit=fit,
        bounds=bounds,
    )
    return Outcome(measured, fit, [], calibration)


@dataclass(frozen=True, slots=True)
class Check:
    target: float
    drive: float
    measured: tuple[float, ...]

    @property
    def mean(self) -> float:
        return sum(self.measured) / len(self.measured)

    @property
    def deviation_pct(self) -> float:
        return (self.mean / self.target - 1.0) * 100.0

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "drive": self.drive,
            "measured": list(self.measured),
            "mean": self.mean,
            "deviation_pct": self.deviation_pct,
        }


@dataclass
class Verification:
    checks: list[Check]
    tolerance_pct: float

    @property
    def worst_pct(self) -> float:
        return max((abs(c.deviation_pct) for c in self.checks), default=0.0)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and self.worst_pct <= self.tolerance_pct

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "tolerance_pct": self.tolerance_pct,
            "worst_pct": self.worst_pct,
            "checks": [c.to_json() for c in self.checks],
        }


def verify(
    port: Port,
    calibration: Calibration,
    info: DeviceInfo,
    *,
    pulses: int = VERIFY_PULSES_PER_CHECK,
    tolerance_pct: float = VERIFY_TOLERANCE_PCT,
    progress: Progress | None = None,
) -> Verification:
    """Fire `pulses` test pulses at the low, middle and high end of the usable range (the
    calibrated range inside the handpiece's capability) with calibrated set points and compare
    the meter with the targets."""
    lo, hi = calibration.restrict(info.capabilities)[calibration.dose_param]
    make_idle(port)
    checks = []
    for fraction in VERIFY_FRACTIONS:
        target = round(lo + (hi - lo) * fraction, 3)
        drive_milli = calibration.drive_milli(round(target * 1000))
        readings = []
        for _ in range(pulses):
            readings.append(fire(port, drive_milli) / 1000.0)
            if progress is not None:
                progress(1)
        checks.append(Check(target, drive_milli / 1000.0, tuple(readings)))
    return Verification(checks, tolerance_pct)
