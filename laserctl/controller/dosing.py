"""Calibrated dosing (SR-06, SR-14): the calibration in use, judged on the core's clock, and what
it does to a dose on its way out and back.

Out, the operator's dose target becomes the drive value the calibration says reaches it (the
targets are kept to read shots back); in, a shot's set value is turned back into the target it
stood for, and its dose per pulse (fluence) worked out once per parameter set. The calibration
comes in as CalibrationLoaded, read off the core's thread; this room keeps the last reading and
the wall-clock time it stood for, and never reads a clock or a disk itself.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from drivers.protocol import DeviceInfo, HandpieceType, Param, Shot

from ..plan import TreatmentPlan
from ..safety.limits import Calibrated, check_parameters, fluence_per_pulse
from .events import CalibrationLoaded

if TYPE_CHECKING:
    from ..calibration.record import Calibration

CalibrationSource = Callable[[DeviceInfo], "Calibration | str"]
"""What the runner (or the test bench) reads, off the core's thread, for every identified
handpiece and feeds to the core as CalibrationLoaded: its newest calibration (the set-point
mapping: laserctl.calibration.calibration_lookup(store)), or why there is none (SR-14). The core
judges the calibration itself, expiry on its own clock. Returning "" means "may be armed,
uncalibrated": the dose is sent as chosen (drive = target); the controller accepts that for a
simulated handpiece only (training_calibration)."""


def training_calibration(info: DeviceInfo) -> str:
    """No calibration records at all (training, demonstrations, the unit-test bench): only a
    simulated handpiece may be armed, uncalibrated; a real one never (SR-14, fail safe)."""
    if info.simulated:
        return ""
    return (
        f"no calibration source: {info.handpiece.slug} {info.serial} is a real handpiece and "
        "only a simulated one may be used uncalibrated (training)"
    )


stand_in_calibration = training_calibration  # the name the controller issue used

_NOTHING_SENT = object()


@dataclass(frozen=True, slots=True)
class _Reading:
    """The last CalibrationLoaded, and the core's time when it arrived: the wall clock at
    `now` is loaded.at + (now - received), so expiry is judged on the injected clock."""

    loaded: CalibrationLoaded
    received: float

    def wall(self, now: float) -> float:
        return self.loaded.at + (now - self.received)


def calibration_key(cal: Calibration | None) -> tuple[object, ...] | None:
    if cal is None:
        return None
    return (cal.record_id, cal.serial, cal.created_at, cal.fit.slope, cal.fit.offset)


class Dosing:
    def __init__(self) -> None:
        self.calibrated: Calibration | None = None  # the set-point mapping in use (SR-14)
        self.problem = ""  # why there is none valid ("" with none: training, simulated only)
        # No reading yet for the identified handpiece: the calibration interlock reads unknown
        # and SET_PARAMS waits (its drive values need the calibration).
        self.pending = False
        self.params_postponed = False  # SET_PARAMS waits for the reading
        self._reading: _Reading | None = None  # the last CalibrationLoaded, any handpiece
        self._targets: dict[int, int] = {}  # drive value sent -> the dose target it stands for
        self._targets_of: object = None  # the calibration those drive values were made with
        # Per-pulse fluence of the parameter sets seen (a burst repeats one), and the plan
        # and handpiece they were worked out for.
        self._fluence: dict[tuple[object, ...], float] = {}
        self._fluence_of: object = None
        self._sent_with: object = _NOTHING_SENT  # the calibration of the last SET_PARAMS

    def loaded(self, event: CalibrationLoaded, now: float) -> None:
        self._reading = _Reading(event, now)

    def judge(self, info: DeviceInfo, now: float) -> bool:
        """SR-14: the handpiece's calibration from the last reading, judged at `now` (expiry,
        serial, fit bounds), or why there is none. True when the one in use changed."""
        reading = self._reading
        before = self.calibrated
        if reading is None or reading.loaded.serial != info.serial:
            self.pending = True
            self.problem = f"the calibration of {info.serial} is not read yet (calibration source)"
            self.calibrated = None
        else:
            self.pending = False
            found = reading.loaded.found
            if isinstance(found, str):
                if not found and not info.simulated:
                    # "Valid" without a set-point mapping: only the training source says that,
                    # and only for a simulated handpiece. A real one is never driven
                    # uncalibrated.
                    found = (
                        f"no calibrated set points for {info.handpiece.slug} {info.serial} "
                        "(the calibration source gave none)"
                    )
                self.problem = found
                self.calibrated = None
            else:
                self.problem = found.problem(info, reading.wall(now))
                self.calibrated = None if self.problem else found
        return calibration_key(before) != calibration_key(self.calibrated)

    @property
    def stale(self) -> bool:
        """The device holds drive values made with another calibration than the one in use."""
        sent = self._sent_with
        return sent is not _NOTHING_SENT and sent != calibration_key(self.calibrated)

    def ranges(self) -> Calibrated | None:
        """The calibrated range of the dose parameter, the bound on its capability (SR-07)."""
        cal = self.calibrated
        return {cal.dose_param: cal.target_range} if cal is not None else None

    def check(
        self, plan: TreatmentPlan, device: DeviceInfo, values: dict[Param, float]
    ) -> tuple[tuple[int, int], ...]:
        """SR-07: every value inside min(plan window, handpiece capability, calibrated range);
        the treatment values as wire pairs, or LimitExceeded naming the limit and the value.
        The calibrated range is the bound Calibration.restrict() puts on the capability."""
        return check_parameters(plan, device.capabilities, values, self.ranges())

    def drive(self, wire: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
        """The treatment values as sent: the dose target replaced by its calibrated drive value
        (SR-14); the targets are kept to read the shots back."""
        cal = self.calibrated
        if cal is None:
            return wire
        if calibration_key(cal) != self._targets_of:
            self._targets.clear()  # drive values of another calibration mean other targets
            self._targets_of = calibration_key(cal)
        drive = cal.apply(wire)
        for (code, target), (_, sent) in zip(wire, drive, strict=True):
            if code == cal.dose_param:
                self._targets[sent] = target
        return drive

    def sent(self) -> None:
        """SET_PARAMS went out with the calibration in use."""
        self._sent_with = calibration_key(self.calibrated)

    def target_milli(self, shot: Shot) -> int:
        """The treatment dose a shot's set value stands for: with a calibration the device was
        sent a drive value, whose target is what the operator chose (SR-06, SR-14)."""
        cal = self.calibrated
        if cal is None or shot.dose_param != cal.dose_param:
            return shot.set_milli
        known = (
            self._targets.get(shot.set_milli) if self._targets_of == calibration_key(cal) else None
        )
        return known if known is not None else cal.target_milli(shot.set_milli)

    def shot_fluence(
        self, shot: Shot, target_milli: int, plan: TreatmentPlan, handpiece: HandpieceType
    ) -> float:
        """The dose this shot adds: its treatment parameters (the dose at its target), scaled up
        (never down) by measured/target. A parameter missing from the record counts at the
        plan's maximum."""
        if self._fluence_of != (plan, handpiece) or len(self._fluence) >= 256:
            self._fluence.clear()  # another plan or handpiece: other per-pulse figures
            self._fluence_of = (plan, handpiece)
        key = (shot.params, shot.dose_param, target_milli)
        base = self._fluence.get(key)
        if base is None:
            params = {p: w.max for p, w in plan.windows.items()}
            for code, value in shot.params:
                with contextlib.suppress(ValueError):
                    params[Param(code)] = value / 1000.0
            with contextlib.suppress(ValueError):
                params[Param(shot.dose_param)] = target_milli / 1000.0
            base = self._fluence[key] = fluence_per_pulse(handpiece, params)
        scale = shot.measured_milli / target_milli if target_milli > 0 else 1.0
        return base * max(1.0, scale) if math.isfinite(scale) else base

    def described(self, info: DeviceInfo) -> str | None:
        """The note for a calibration taken into use (None: none is)."""
        cal = self.calibrated
        if cal is None:
            return None
        lo, hi = cal.target_range
        return (
            f"calibration {cal.record_id} of {info.serial} by {cal.who}: "
            f"{cal.dose_param.field_name} calibrated range {lo:.3f}..{hi:.3f}"
        )

    def to_json(self, identified: bool) -> dict[str, Any] | None:
        """The calibration in the session report."""
        cal = self.calibrated
        if cal is None:
            if not identified:
                return None
            if self.problem:
                return {"valid": False, "problem": self.problem}
            return {"valid": True, "id": None, "uncalibrated": True}  # training: simulated only
        lo, hi = cal.target_range
        return {
            "valid": True,
            "id": cal.record_id,
            "serial": cal.serial,
            "who": cal.who,
            "created_at": cal.created_at,
            "expires_at": cal.expires_at,
            "dose_param": cal.dose_param.field_name,
            "slope": cal.fit.slope,
            "offset": cal.fit.offset,
            "calibrated_range": [lo, hi],
        }
