"""Identification (SR-14, SR-15): the handpiece a HELLO_INFO describes, checked against the
plan and against the handpiece this session is pinned to, and its calibration judged.

Every connect and reconnect identifies again; a different handpiece or a new boot id mid-session
latches FAULT. The calibration is judged at every identification, at every reading and before
every ARM, on the core's clock (dosing.py holds it).
"""

from __future__ import annotations

from drivers.protocol import PROTOCOL_VERSION, DeviceInfo

from ..plan import TreatmentPlan
from ..safety.limits import plan_mismatch
from .causes import Cause, CauseKind
from .context import Core
from .events import ReadCalibration
from .table import LATCHED, State


def identity_problem(plan: TreatmentPlan, info: DeviceInfo, pinned: DeviceInfo | None) -> str:
    """Why this handpiece may not be used for the plan and session ("": it may)."""
    problem = plan_mismatch(plan, info.handpiece, info.capabilities)
    if not problem and info.protocol != PROTOCOL_VERSION:
        problem = f"protocol {info.protocol}, expected {PROTOCOL_VERSION}"
    if not problem and plan.serial is not None and info.serial != plan.serial:
        problem = f"serial {info.serial}, the plan is for {plan.serial}"
    if pinned is not None and not pinned.same_handpiece(info):
        problem = (
            f"a different handpiece: {info.handpiece.slug} {info.serial} firmware "
            f"{info.firmware}, the session's is {pinned.handpiece.slug} {pinned.serial} "
            f"firmware {pinned.firmware}"
        )
    return problem


def identified(core: Core, info: DeviceInfo) -> None:
    if core.plan is None:
        core.plan = core.plan_for(info.handpiece)
        core.params = core.plan.defaults()
    pinned = core.pinned
    problem = identity_problem(core.plan, info, pinned)
    core.device = info
    core.identity_problem = problem
    judge_calibration(core)
    core.act(ReadCalibration(info))  # a fresh reading at every identification
    added = False
    if problem:
        added = core.add_cause(Cause(CauseKind.HANDPIECE, problem))
    elif pinned is None:
        core.pinned = info
    elif info.boot_id != pinned.boot_id:
        core.pinned = info
        added = core.add_cause(Cause(CauseKind.REBOOT, "the device rebooted (new boot id)"))
    if core.state is State.CONNECTING or core.state in LATCHED:
        core.fire("identified")
    elif added:
        core.fire("fault")


def judge_calibration(core: Core) -> None:
    """SR-14: the identified handpiece's calibration from the last reading, judged now on
    the core's clock, or why there is none: the calibration interlock stays open then, and
    ARM is refused with that reason. In STANDBY, parameters that waited for the reading, or
    were sent with another calibration, go (again) now."""
    info = core.device
    if info is None:
        return
    dosing = core.dosing
    if dosing.judge(info, core.now) and dosing.calibrated is not None:
        core.note("info", dosing.described(info) or "", calibration=dosing.calibrated.record_id)
    if core.state is not State.STANDBY or dosing.pending:
        return
    if dosing.params_postponed:
        core.send_parameters()  # they waited for this reading
        return
    if dosing.stale and not dosing.problem:
        # The device holds drive values made with another calibration: they no longer
        # count, and go again at once with this one. (While there is no valid calibration,
        # arming is refused anyway; this is decided when one is back.)
        core.params_confirmed = False
        core.send_parameters()
