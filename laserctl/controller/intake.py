"""Shot intake (SR-04, SR-06, SR-08, SR-11): every shot the device reports, recorded exactly
once, counted, checked, and acknowledged to the device only once it is durable.

The ledger (shots.py) says which shots are new, replays, beyond a hole or behind the counter;
a hole is re-read with SHOTS_SINCE, a counter that went back latches FAULT. A SHOT_ACK goes out
only up to the shots a ShotsDurable event reported stored (ledger.ackable), one at a time.
"""

from __future__ import annotations

from drivers.protocol import Shot, ShotAck, ShotsSince

from ..safety import energy
from ..shotrecord import ShotRecord
from .causes import Cause, CauseKind, param_name
from .context import Core
from .events import RecordShot
from .shots import Accept


def on_shot(core: Core, shot: Shot) -> None:
    """A shot the device reports, live or replayed: recorded exactly once (RecordShot), its
    dose counted, the live one checked against the grant, the ready delay and its set value."""
    assert core.plan is not None
    ledger = core.ledger
    replay = bool(shot.flags & Shot.FLAG_REPLAY)
    if replay and ledger.recovering:
        ledger.replays_early += 1  # ahead of its SHOTS_PENDING (ShotLedger.replays_early)
    elif replay and ledger.replays_due > 0:
        ledger.replays_due -= 1
    upto_before = ledger.upto
    accepted = ledger.accept(shot.shot_no, replay)
    if accepted is not Accept.DUPLICATE:
        counted = accepted is not Accept.RECOVERED
        target = core.dosing.target_milli(shot)
        # A recovered shot delivered its dose too: the shot log's dose per area must be
        # right after a crash, even where it is not this session's budget.
        handpiece = core.device.handpiece if core.device else core.plan.handpiece
        fluence = core.dosing.shot_fluence(shot, target, core.plan, handpiece)
        boot_id = core.pinned.boot_id if core.pinned else 0
        cal = core.dosing.calibrated
        core.act(
            RecordShot(
                ShotRecord.from_shot(
                    shot,
                    session=core.session_id,
                    plan_id=core.plan.plan_id,
                    area=core.plan.area,
                    boot_id=boot_id,
                    counted=counted,
                    fluence_j_cm2=fluence,
                    received_at=core.now,
                    target_milli=target,
                    calibration=cal.record_id if cal is not None else None,
                ),
                ledger.to_record(upto_before),
            )
        )
        if counted:
            core.shots_seen += 1
            core.dose = core.dose.add(fluence)
            check_energy(core, shot, target)
        else:
            core.shots_recovered += 1
            if core.count_recovered:  # fired in this (resumed) session before the crash
                core.dose = core.dose.add(fluence)
        if accepted is Accept.BACKWARDS:
            count_shots_in_doubt(core, "restarted its shot counter")
            core.latch(
                Cause(
                    CauseKind.SHOT_COUNTER,
                    f"shot {shot.shot_no} is at or below {ledger.upto}: the device shot "
                    "counter went back",
                )
            )
        elif accepted is Accept.AHEAD:
            recover_shots(core)
        if not replay:
            check_live_shot(core, shot)
    maybe_ack(core)
    if replay and ledger.replays_due == 0 and not ledger.recovering:
        recovery_done(core)


def check_live_shot(core: Core, shot: Shot) -> None:
    assert core.plan is not None
    core.last_activity = core.now
    if not core.device_may_fire:
        core.latch(Cause(CauseKind.SHOT, f"shot {shot.shot_no} while the device was not armed"))
        return
    core.grants.shots += 1
    if core.grants.shots > core.grants.pulses:
        core.latch(
            Cause(
                CauseKind.SHOT,
                f"the device fired {core.grants.shots} pulses on a grant of {core.grants.pulses}",
            )
        )
    if core.arm_sent_at is not None:
        after = core.now - core.arm_sent_at
        if after < core.plan.ready_delay_s:
            core.latch(
                Cause(
                    CauseKind.SHOT,
                    f"shot {shot.shot_no} {after * 1000:.0f} ms after ARM, before the ready "
                    f"delay of {core.plan.ready_delay_s * 1000:.0f} ms (SR-04)",
                )
            )
    if core.status is None or not core.status.emission:
        core.warn(f"shot {shot.shot_no} without an emission indication seen first (SR-05)")


def check_energy(core: Core, shot: Shot, target_milli: int) -> None:
    """SR-06: measured against the treatment value (the calibrated target, not the drive
    value the device was sent)."""
    result = energy.check_energy(target_milli, shot.measured_milli)
    if result.verdict is energy.Verdict.OK:
        return
    name = param_name(shot.dose_param)
    drive = f" (drive {shot.set_milli / 1000:g})" if target_milli != shot.set_milli else ""
    message = (
        f"shot {shot.shot_no}: measured {shot.measured_milli / 1000:g} {name} against "
        f"{target_milli / 1000:g} set{drive}, {result.percent:+.1f} %"
    )
    if result.verdict is energy.Verdict.FAULT:
        core.disarm_now()
        core.latch(Cause(CauseKind.ENERGY, message + " is beyond +-20 % (SR-06)"))
    else:
        core.warn(message + " is beyond +-10 % (SR-06)")


def recover_shots(core: Core) -> None:
    """SHOTS_SINCE the durable mark: the device replays every shot it still keeps."""
    ledger = core.ledger
    if not (core.connected and core.link_alive) or ledger.recovering:
        return
    ledger.reset_recovery()
    ledger.recovering = True
    core.send(ShotsSince(ledger.upto if ledger.upto is not None else 0))


def events_lost(core: Core) -> None:
    """Device events were lost on the way (EventGap): they may have been shots, or replays of
    a re-read under way, which are then not waited for; what is missing is read again."""
    ledger = core.ledger
    if ledger.recovering:
        ledger.replays_lost = True
    elif ledger.replays_due > 0:
        ledger.replays_due = 0
        recovery_done(core)
    recover_shots(core)


def replays_lost_by_status(core: Core, last_event: int) -> None:
    """A STATUS naming a device event later than the last one processed: every event before
    it was sent before it, so replays still awaited were lost (EventGap only tells once a
    later event arrives)."""
    ledger = core.ledger
    if ledger.replays_due > 0 and not ledger.recovering and last_event > ledger.last_event:
        ledger.replays_due = 0
        recovery_done(core)


def device_keeps(core: Core, shot_no: int) -> bool:
    """The device still holds shot_no unacknowledged, by its last STATUS."""
    status = core.status
    return status is not None and status.unacked > 0 and shot_no > status.shot_no - status.unacked


def recovery_done(core: Core, *, kept_none: bool = False) -> None:
    """A re-read has brought what it will. Shots still missing that the device keeps are read
    again (a replay was lost on the way); those it no longer keeps (kept_none: its answer said
    so) are a hole given up, latching FAULT."""
    ledger = core.ledger
    if ledger.has_baseline and ledger.missing:
        assert ledger.upto is not None
        if not kept_none and device_keeps(core, ledger.upto + 1):
            recover_shots(core)
            return
        first, last = ledger.skip_hole()
        core.latch(
            Cause(
                CauseKind.SHOT_COUNTER,
                f"device shot counter gap: shots {first}..{last} never reported and no "
                "longer kept by the device",
            )
        )
    elif core.status is not None:
        core.grants.settle(core.status, ledger)  # the re-read brought the grant's missing shots
    maybe_ack(core)


def maybe_ack(core: Core) -> None:
    """SHOT_ACK up to the shots known durable (ShotsDurable), so the device forgets only
    what is stored (SR-11); one in flight at a time."""
    ledger = core.ledger
    mark = ledger.ackable
    if mark is None or mark <= ledger.acked or core.inflight.ack is not None:
        return
    if core.connected and core.link_alive:
        core.inflight.ack = core.send(ShotAck(mark))


def count_shots_in_doubt(core: Core, what: str) -> None:
    """SR-08: the device lost its shot counter and buffer, so the pulses of the open grant
    it fired but never reported are gone for good: they count as delivered (grants.py)."""
    doubt, core.dose = core.grants.doubt(core.dose)
    if doubt:
        core.warn(
            f"the device {what}: {doubt} of the {core.grants.pulses} pulses granted were never "
            "reported and count as delivered (SR-08)"
        )
