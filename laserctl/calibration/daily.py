"""The daily user verification (SR-14): a few test pulses against the internal power meter
with the calibrated set points, the result logged, and a failure revoking the calibration so
the handpiece cannot be armed until a service engineer calibrates it again. One procedure for
`laserctl calibrate --verify` and the console; when it is due is `verification_due`."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from .procedure import VERIFY_PULSES, Progress, Verification, verify
from .record import CalibrationLog, current_calibration, revocation

__all__ = [
    "VERIFY_PULSES",
    "WHAT_TO_DO",
    "DailyVerification",
    "run_daily_verification",
    "verification_due",
]

if TYPE_CHECKING:
    from drivers.protocol import DeviceInfo

    from .procedure import Port
    from .record import Calibration

WHAT_TO_DO = (
    "the calibration is revoked: the handpiece cannot be armed until a service engineer "
    "calibrates it again (service login, then Calibrate; or laserctl calibrate)"
)


@dataclass(frozen=True, slots=True)
class DailyVerification:
    serial: str
    calibration: Calibration
    result: Verification
    message: str  # what was logged

    @property
    def passed(self) -> bool:
        return self.result.passed

    def to_json(self) -> dict[str, Any]:
        return {
            "serial": self.serial,
            "calibration": self.calibration.record_id,
            **self.result.to_json(),
        }


def run_daily_verification(
    log: CalibrationLog,
    port: Port,
    info: DeviceInfo,
    who: str,
    *,
    progress: Progress | None = None,
    clock: Callable[[], float],
) -> DailyVerification:
    """Verify the connected handpiece against its valid calibration and log the result; a
    failure revokes the calibration (logged with who and why). CalibrationInvalid when there
    is no valid calibration to verify; CalibrationFailed or CommandError when it cannot run."""
    calibration = current_calibration(log, info, now=clock())
    result = verify(port, calibration, info, progress=progress)
    verdict = "passed" if result.passed else "FAILED"
    message = (
        f"daily verification of {info.serial} {verdict}: worst deviation "
        f"{result.worst_pct:.2f} % (tolerance {result.tolerance_pct:g} %)"
    )
    done = DailyVerification(info.serial, calibration, result, message)
    log.log_event("verification", message, who=who, data=done.to_json())
    if not result.passed:
        reason = f"daily verification failed: worst deviation {result.worst_pct:.2f} %"
        log.add_calibration(
            info.serial,
            info.handpiece.slug,
            who,
            revocation(info.serial, info.handpiece.slug, who, reason, clock()),
        )
    return done


class EventQuery(Protocol):
    """The part of laserctl.records.RecordStore that tells when the last verification was."""

    def query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]: ...


def verification_due(
    log: EventQuery,
    info: DeviceInfo,
    calibration: Calibration,
    *,
    now: float,
    tz: dt.tzinfo | None = None,
) -> str:
    """Why a daily verification of this handpiece (with its valid `calibration`) is due now,
    or "" when it is not: none passed for its serial number today (local day; a calibration
    made today counts, it measured the output just now), or the handpiece changed (the last
    shots on this shot log came from another handpiece, after this one was last checked)."""
    day_start = (
        dt.datetime.fromtimestamp(now, tz)
        .replace(hour=0, minute=0, second=0, microsecond=0)
        .timestamp()
    )
    checked = [calibration.created_at] if calibration.created_at >= day_start else []
    for at, data in log.query(
        "SELECT at, json_extract(body, '$.data') FROM events"
        " WHERE kind = 'verification' AND at >= ? ORDER BY id",
        (day_start,),
    ):
        body = json.loads(data) if data else {}
        if body.get("serial") == info.serial and body.get("passed"):
            checked.append(float(at))
    if not checked:
        return f"no daily verification of {info.serial} has passed today"
    last = log.query(
        "SELECT s.serial, x.started FROM shots s JOIN sessions x ON x.id = s.session_ref"
        " ORDER BY s.id DESC LIMIT 1"
    )
    if last and last[0][0] != info.serial and float(last[0][1]) > max(checked):
        return f"the handpiece changed: the last session was with {last[0][0]}"
    return ""
