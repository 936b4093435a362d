"""Service calibration of a handpiece's output against its internal power meter (SR-14).

    outcome = calibrate(connection, info, who="alice")      # test pulses, fit, bounds
    record = outcome.calibration.to_record()
    store.add_calibration(info.serial, info.handpiece.slug, "alice", record)
    lookup = calibration_lookup(store)                       # ControllerRunner(calibration=)
    check = calibration_check(store)                         # yes/no, with the reason
    cal = current_calibration(store, info)                   # the set-point mapping

See docs/service-guide.md.
"""

from .fit import DEFAULT_BOUNDS, Bounds, Fit, FitError, Point, fit_points, fit_problems
from .procedure import (
    CalibrationFailed,
    Outcome,
    Verification,
    calibrate,
    make_idle,
    verify,
)
from .record import (
    DEFAULT_VALIDITY_DAYS,
    Calibration,
    CalibrationCheck,
    CalibrationInvalid,
    CalibrationLog,
    CalibrationLookup,
    calibration_check,
    calibration_lookup,
    current_calibration,
    newest_calibration,
    revocation,
)

__all__ = [
    "DEFAULT_BOUNDS",
    "DEFAULT_VALIDITY_DAYS",
    "Bounds",
    "Calibration",
    "CalibrationCheck",
    "CalibrationFailed",
    "CalibrationInvalid",
    "CalibrationLog",
    "CalibrationLookup",
    "Fit",
    "FitError",
    "Outcome",
    "Point",
    "Verification",
    "calibrate",
    "calibration_check",
    "calibration_lookup",
    "current_calibration",
    "fit_points",
    "fit_problems",
    "make_idle",
    "newest_calibration",
    "revocation",
    "verify",
]
