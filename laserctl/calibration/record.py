"""A stored calibration, the set-point mapping it gives, and whether it may be used (SR-14).

The host drives the handpiece with calibrated set points: to deliver a target dose T it sends
the drive value D = (T - offset) / slope, so that the handpiece's real response
(measured = slope x D + offset) delivers T. Only targets whose drive value lies inside the
range of set points that were measured are allowed (no extrapolation): that is the
calibrated range, which joins min(profile window, handpiece capability) in SR-07.

Records live in the shot log (laserctl.records: add_calibration / calibrations, newest first).
A record is either a calibration (kind "calibration") or a revocation (kind "revocation",
written when a daily verification fails); the newest record of a serial number decides.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from drivers.protocol import DeviceInfo, Param
from laserctl.eventlog import EventLog

from .fit import DEFAULT_BOUNDS, Bounds, Fit, Point, fit_points, fit_problems

FORMAT = 1
DEFAULT_VALIDITY_DAYS = 30.0
KIND_CALIBRATION = "calibration"
KIND_REVOCATION = "revocation"

Range = tuple[float, float]
CalibrationCheck = Callable[[DeviceInfo], str]  # "" when valid, else why not


class CalibrationInvalid(Exception):
    """No usable calibration; the message says why in words an operator can act on."""


class CalibrationLog(EventLog, Protocol):
    """The part of laserctl.records.RecordStore calibration needs: its calibrations, and
    log_event (EventLog) for the service events."""

    def add_calibration(
        self, serial: str, handpiece: str, who: str, record: dict[str, object]
    ) -> int: ...

    def calibrations(self, serial: str) -> list[dict[str, object]]: ...


def iso(at: float) -> str:
    return dt.datetime.fromtimestamp(at, dt.UTC).isoformat(timespec="seconds")


@dataclass(frozen=True, slots=True)
class Calibration:
    serial: str
    handpiece: str  # type slug
    firmware: str
    dose_param: Param
    created_at: float  # epoch seconds
    expires_at: float
    who: str
    points: tuple[Point, ...]
    fit: Fit
    bounds: Bounds = DEFAULT_BOUNDS
    plot: str = ""  # where the SVG of the fit was written
    record_id: int | None = None  # the store's id, once stored

    # ---- the mapping -----------------------------------------------------------------------
    @property
    def set_range(self) -> Range:
        values = [p.set for p in self.points]
        return min(values), max(values)

    @property
    def target_range(self) -> Range:
        """The dose targets reachable without extrapolating: the calibrated range."""
        lo, hi = self.set_range
        return self.fit.at(lo), self.fit.at(hi)

    def drive_for(self, target: float) -> float:
        """The set point to send so that the handpiece delivers `target`."""
        return (target - self.fit.offset) / self.fit.slope

    def target_for(self, drive: float) -> float:
        """What the handpiece delivers when sent `drive` (the inverse of drive_for)."""
        return self.fit.at(drive)

    def drive_milli(self, target_milli: int) -> int:
        """The wire value to send for a target wire value. Raises ValueError beyond the
        calibrated range (a caller that checked the target against restrict() never sees it);
        one thousandth of rounding at either end is kept inside the measured set points."""
        lo, hi = self.target_range
        if not round(lo * 1000) <= target_milli <= round(hi * 1000):
            raise ValueError(
                f"{self.dose_param.field_name} = {target_milli / 1000:g} is outside the "
                f"calibrated range {lo:.3f}..{hi:.3f}"
            )
        drive = round(self.drive_for(target_milli / 1000.0) * 1000.0)
        set_lo, set_hi = self.set_range
        return min(max(drive, math.ceil(set_lo * 1000)), math.floor(set_hi * 1000))

    def target_milli(self, drive_milli: int) -> int:
        """The target a SHOT's wire set value stands for (to check measured energy, SR-06)."""
        return round(self.target_for(drive_milli / 1000.0) * 1000.0)

    def restrict(self, capabilities: Mapping[Param, Range]) -> dict[Param, Range]:
        """The capabilities with the dose parameter narrowed to the calibrated range (SR-07)."""
        out = dict(capabilities)
        if self.dose_param in out:
            lo, hi = out[self.dose_param]
            t_lo, t_hi = self.target_range
            out[self.dose_param] = (max(lo, t_lo), min(hi, t_hi))
        return out

    def apply(self, wire: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        """SET_PARAMS wire pairs with the dose target replaced by its calibrated drive value."""
        return tuple(
            (code, self.drive_milli(value) if code == self.dose_param else value)
            for code, value in wire
        )

    # ---- validity --------------------------------------------------------------------------
    def problem(self, info: DeviceInfo, now: float, bounds: Bounds | None = None) -> str:
        """Why this calibration may not be used with this handpiece now; "" when it may."""
        if info.serial != self.serial:
            return f"the calibration is for {self.serial}, the handpiece is {info.serial}"
        if info.handpiece.slug != self.handpiece:
            return (
                f"the calibration is for a {self.handpiece}, the handpiece is a "
                f"{info.handpiece.slug}"
            )
        if now >= self.expires_at:
            return (
                f"calibration of {self.serial} expired on {iso(self.expires_at)}: a service "
                "engineer must calibrate again (laserctl calibrate)"
            )
        if now + 300.0 < self.created_at:
            return f"calibration of {self.serial} is dated in the future ({iso(self.created_at)})"
        problems = fit_problems(self.fit, self.set_range[1], bounds or self.bounds)
        if problems:
            return f"calibration of {self.serial} is out of bounds: {'; '.join(problems)}"
        return ""

    # ---- records ---------------------------------------------------------------------------
    def to_record(self) -> dict[str, object]:
        return {
            "format": FORMAT,
            "kind": KIND_CALIBRATION,
            "serial": self.serial,
            "handpiece": self.handpiece,
            "firmware": self.firmware,
            "dose_param": self.dose_param.field_name,
            "created_at": self.created_at,
            "created": iso(self.created_at),
            "expires_at": self.expires_at,
            "expires": iso(self.expires_at),
            "who": self.who,
            "points": [[p.set, p.measured] for p in self.points],
            "fit": self.fit.to_json(),
            "bounds": self.bounds.to_json(),
            "set_range": list(self.set_range),
            "target_range": list(self.target_range),
            "plot": self.plot,
        }

    @classmethod
    def from_record(cls, data: Mapping[str, Any], record_id: int | None = None) -> Calibration:
        try:
            points = tuple(Point(float(s), float(m)) for s, m in data["points"])
            dose = Param[str(data["dose_param"]).upper()]
            bounds = Bounds(**dict(data.get("bounds") or {}))
            return cls(
                serial=str(data["serial"]),
                handpiece=str(data["handpiece"]),
                firmware=str(data.get("firmware", "")),
                dose_param=dose,
                created_at=float(data["created_at"]),
                expires_at=float(data["expires_at"]),
                who=str(data["who"]),
                points=points,
                fit=fit_points(points),  # refitted: a stored fit that does not match is moot
                bounds=bounds,
                plot=str(data.get("plot", "")),
                record_id=record_id,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise CalibrationInvalid(f"unreadable calibration record: {exc}") from None


def revocation(serial: str, handpiece: str, who: str, reason: str, at: float) -> dict[str, object]:
    return {
        "format": FORMAT,
        "kind": KIND_REVOCATION,
        "serial": serial,
        "handpiece": handpiece,
        "who": who,
        "created_at": at,
        "created": iso(at),
        "reason": reason,
    }


def _record_of(entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """The store returns the record's fields at the top level; accept {"record": {...}} too."""
    nested = entry.get("record")
    return nested if isinstance(nested, Mapping) else entry


def current_calibration(
    log: CalibrationLog,
    info: DeviceInfo,
    *,
    now: float | None = None,
    bounds: Bounds | None = None,
) -> Calibration:
    """The calibration to use with this handpiece now, or CalibrationInvalid saying why not."""
    at = time.time() if now is None else now
    calibration = newest_calibration(log, info, bounds=bounds)
    problem = calibration.problem(info, at)
    if problem:
        raise CalibrationInvalid(problem)
    return calibration


def newest_calibration(
    log: CalibrationLog, info: DeviceInfo, *, bounds: Bounds | None = None
) -> Calibration:
    """The handpiece's newest calibration record, not judged (Calibration.problem says whether
    it may be used at a given time), or CalibrationInvalid: none, revoked, unreadable."""
    entries = log.calibrations(info.serial)
    if not entries:
        raise CalibrationInvalid(
            f"no calibration for {info.handpiece.slug} {info.serial}: a service engineer must "
            "calibrate it (laserctl calibrate)"
        )
    newest = entries[0]
    record = _record_of(newest)
    if record.get("kind") == KIND_REVOCATION:
        raise CalibrationInvalid(
            f"calibration of {info.serial} revoked on {record.get('created', '?')} by "
            f"{record.get('who', '?')}: {record.get('reason', '')}; calibrate again"
        )
    raw_id = newest.get("id")
    calibration = Calibration.from_record(record, int(raw_id) if isinstance(raw_id, int) else None)
    return calibration if bounds is None else dataclasses.replace(calibration, bounds=bounds)


CalibrationLookup = Callable[[DeviceInfo], "Calibration | str"]


def calibration_lookup(log: CalibrationLog, *, bounds: Bounds | None = None) -> CalibrationLookup:
    """The controller's calibration source (ControllerRunner(calibration=...), read off the
    controller's thread at every identification and refreshed): the connected handpiece's
    newest calibration (its set-point mapping), or why there is none (SR-14). Not judged here:
    the controller judges it, expiry on its own clock, with these `bounds` if given. Never
    raises: any failure to read the records counts as no calibration (fail safe)."""

    def lookup(info: DeviceInfo) -> Calibration | str:
        try:
            return newest_calibration(log, info, bounds=bounds)
        except CalibrationInvalid as exc:
            return str(exc)
        except Exception as exc:  # the store failing must not let a handpiece arm
            return f"calibration records unreadable: {type(exc).__name__}: {exc}"

    return lookup


def calibration_check(
    log: CalibrationLog,
    *,
    clock: Callable[[], float] = time.time,
    bounds: Bounds | None = None,
) -> CalibrationCheck:
    """An empty string when the connected handpiece has a valid calibration at `clock()` (not
    expired, its serial number, fit within bounds, not revoked), else why not (SR-14). A yes/no
    only: the controller takes calibration_lookup() (ControllerRunner(calibration=...)), whose
    mapping gives the calibrated set points; given this check instead, it arms a simulated
    handpiece only, uncalibrated."""

    def check(info: DeviceInfo) -> str:
        try:
            current_calibration(log, info, now=clock(), bounds=bounds)
        except CalibrationInvalid as exc:
            return str(exc)
        except Exception as exc:  # the store failing must not let a handpiece arm
            return f"calibration records unreadable: {type(exc).__name__}: {exc}"
        return ""

    return check
