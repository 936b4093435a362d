"""ShotRecord: one pulse as the host keeps it, made by the controller, stored by the shot log.

A leaf: it imports only drivers.protocol, so laserctl.controller (which makes these) and
laserctl.records (which stores them) both import it and neither imports the other for it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from drivers.protocol import Param, Shot


@dataclass(frozen=True, slots=True)
class ShotRecord:
    session: str
    plan_id: str
    area: str
    boot_id: int  # with shot_no, the key: a reboot that loses the counter restarts shot_no
    shot_no: int
    device_time_us: int
    dose_param: Param
    set_value: float  # the treatment (target) dose the operator chose
    measured_value: float
    pulse_us: int
    params: tuple[tuple[Param, float], ...]  # treatment values (the dose as its target)
    replayed: bool  # came from SHOTS_SINCE, not live
    counted: bool  # belongs to this session's budget (False: recovered from before it)
    fluence_j_cm2: float  # the dose per area this shot delivered (J/cm2), recovered or not
    received_at: float
    # The dose value the device was sent (its SHOT set value): the calibrated drive value for
    # set_value (SR-14). None: the same as set_value (no calibration, e.g. training).
    drive_value: float | None = None
    calibration: int | None = None  # the shot log id of the calibration that mapped it

    @classmethod
    def from_shot(
        cls,
        shot: Shot,
        *,
        session: str,
        plan_id: str,
        area: str,
        boot_id: int,
        counted: bool,
        fluence_j_cm2: float,
        received_at: float,
        target_milli: int | None = None,
        calibration: int | None = None,
    ) -> ShotRecord:
        """`target_milli`: the treatment dose the shot's set value (a calibrated drive value)
        stands for; None when the set value is the treatment value itself."""
        target = shot.set_milli if target_milli is None else target_milli
        dose, params = _treatment_params(shot.params, shot.dose_param, target)
        return cls(
            session=session,
            plan_id=plan_id,
            area=area,
            boot_id=boot_id,
            shot_no=shot.shot_no,
            device_time_us=shot.device_time_us,
            dose_param=dose,
            set_value=target / 1000.0,
            measured_value=shot.measured_milli / 1000.0,
            pulse_us=shot.pulse_us,
            params=params,
            replayed=bool(shot.flags & Shot.FLAG_REPLAY),
            counted=counted,
            fluence_j_cm2=fluence_j_cm2,
            received_at=received_at,
            drive_value=shot.set_milli / 1000.0,
            calibration=calibration,
        )


@functools.lru_cache(maxsize=256)  # a burst repeats one parameter set
def _treatment_params(
    params: tuple[tuple[int, int], ...], dose_param: int, target_milli: int
) -> tuple[Param, tuple[tuple[Param, float], ...]]:
    """The dose parameter and the treatment values of a SHOT record's parameters (the dose at
    its target); codes this host does not know are left out."""
    dose = Param(dose_param)
    return dose, tuple(
        (Param(p), (target_milli if p == dose else v) / 1000.0)
        for p, v in params
        if p in Param._value2member_map_
    )
