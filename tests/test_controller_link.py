"""The controller and the link: silence, loss, reconnect, reboot, another handpiece, shot
recovery and the shot counter, unacknowledged commands, exceptions. Deterministic."""

from __future__ import annotations

import dataclasses

import pytest

from drivers.protocol import (
    Arm,
    DeviceEvent,
    Disarm,
    Hello,
    Param,
    Shot,
    ShotAck,
    StatusChanged,
)
from drivers.sim import SimulatedHandpiece
from laserctl.controller.events import (
    Action,
    ConfirmEyewear,
    InternalError,
    RecordShot,
    RequestArm,
    RequestDisarm,
    RequestEStop,
    RequestReset,
    Send,
)
from laserctl.controller.table import State
from laserctl.plan import FRACTIONAL_CONSERVATIVE
from tests.harness import Bench

FAST = dataclasses.replace(
    FRACTIONAL_CONSERVATIVE,
    windows={
        **FRACTIONAL_CONSERVATIVE.windows,
        Param.REP_RATE_HZ: dataclasses.replace(
            FRACTIONAL_CONSERVATIVE.windows[Param.REP_RATE_HZ], default=10.0
        ),
    },
)


def emitting(**kwargs: object) -> Bench:
    bench = Bench(plan=FAST, **kwargs)  # type: ignore[arg-type]
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    bench.run(1.0)
    bench.inject("press")
    assert bench.run_until(lambda: bench.core.shots_seen >= 3, 1.0)
    assert bench.state is State.EMITTING
    return bench


def reset_to_standby(bench: Bench) -> None:
    bench.operator(RequestReset())
    assert bench.run_until(lambda: bench.state is State.STANDBY, 1.0), (
        bench.core.refusals[-1:],
        bench.core.causes,
    )


# ---- link silence (SR-09) --------------------------------------------------------------------
@pytest.mark.req("SR-09")
def test_a_silent_device_faults_the_host_within_250_ms_and_the_device_stops() -> None:
    bench = emitting()
    bench.inject("pull cable")
    pulled = bench.now
    assert bench.run_until(lambda: bench.state is State.FAULT, 0.4)
    assert bench.now - pulled <= 0.250 + bench.dt + 1e-9
    assert any("silent" in c.message for c in bench.core.causes)
    assert bench.run_until(lambda: not bench.sim.emission, 0.3)
    assert bench.sim.now - (bench.sim.last_rx or 0.0) <= 0.25 + 2 * bench.dt


@pytest.mark.req("SR-09")
@pytest.mark.req("SR-11")
def test_after_the_link_returns_shots_fired_meanwhile_are_re_read_and_the_handpiece_checked() -> (
    None
):
    bench = emitting()
    bench.inject("pull cable")
    bench.run(0.5)
    assert bench.state is State.FAULT
    unseen = bench.sim.shot_no - bench.core.shots_seen
    assert unseen > 0  # the device fired until its watchdog, the host did not hear them
    sent = len(bench.sent)
    bench.inject("replug")
    bench.run(0.3)
    assert any(isinstance(s.command, Hello) for s in bench.sent[sent:])  # SR-15 on return
    assert bench.core.shots_seen == bench.sim.shot_no
    assert len(bench.sim.unacked) == 0
    assert bench.state is State.FAULT  # the link came back; the fault still needs a reset
    bench.inject("release")
    reset_to_standby(bench)


@pytest.mark.req("SR-09")
def test_reset_is_refused_while_the_link_is_down() -> None:
    bench = emitting()
    bench.inject("pull cable")
    bench.run(0.5)
    bench.operator(RequestReset())
    assert bench.state is State.FAULT
    assert bench.core.refusals[-1].reason == "the link to the device is down"


@pytest.mark.req("SR-09")
def test_the_device_watchdog_fault_is_a_link_cause() -> None:
    bench = emitting()
    bench.drop_from_host = True  # the host talks, the device hears nothing
    bench.run(0.3)
    assert bench.state is State.FAULT
    assert any("watchdog" in c.message for c in bench.core.causes)
    bench.drop_from_host = False
    bench.inject("release")
    bench.run(0.2)
    reset_to_standby(bench)


# ---- transport loss and reconnect (SR-15) ---------------------------------------------------
@pytest.mark.req("SR-15")
def test_reconnecting_to_the_same_handpiece_allows_a_reset() -> None:
    bench = emitting()
    bench.inject("release")
    bench.lose_transport()
    assert bench.state is State.FAULT
    bench.run(0.5)  # the device's watchdog disarms it meanwhile
    bench.reconnect()
    bench.run(0.1)
    assert bench.core.link_alive
    reset_to_standby(bench)
    assert bench.core.shots_seen == bench.sim.shot_no


@pytest.mark.req("SR-15")
def test_a_different_handpiece_after_reconnect_is_a_fault_that_holds() -> None:
    bench = emitting()
    bench.inject("release")
    bench.lose_transport()
    other = SimulatedHandpiece("fractional-1550", seed=7, serial="FX-OTHER", now=bench.now)
    bench.reconnect(other)
    bench.run(0.1)
    assert bench.state is State.FAULT
    assert any("a different handpiece" in c.message for c in bench.core.causes)
    bench.operator(RequestReset())
    assert bench.state is State.FAULT
    assert "cause still present: a different handpiece" in bench.core.refusals[-1].reason
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    assert not isinstance(bench.sent[-1].command, Arm)


@pytest.mark.req("SR-15")
@pytest.mark.req("SR-11")
def test_a_reboot_mid_session_enters_fault_and_the_counter_reset_is_named() -> None:
    bench = emitting()
    fired = bench.sim.shot_no
    bench.inject("reboot")
    bench.run(0.1)
    assert bench.state is State.FAULT
    messages = " | ".join(c.message for c in bench.core.causes)
    assert "rebooted" in messages
    assert "shot counter went back" in messages
    assert bench.core.ledger.device_fired == fired
    bench.inject("release")
    reset_to_standby(bench)
    # The new counter epoch is followed (a status's counter is not taken for a gap) ...
    bench.run(0.3)
    assert bench.state is State.STANDBY and not bench.core.causes
    assert bench.core.ledger.device_fired == fired
    # ... but the grant's unreported pulses count as delivered (SR-08): no budget is left.
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    bench.run(0.3)
    assert bench.state is State.STANDBY
    assert "session budget used up" in bench.core.refusals[-1].reason


@pytest.mark.req("SR-08")
def test_pulses_a_reboot_hid_count_as_delivered() -> None:
    """The cable is out mid-burst: the device fires on, unseen, until its watchdog; then it
    reboots and loses its counter and buffer. Those pulses can never be re-read, so what of
    the grant the host did not see counts as delivered, and no later grant can take the
    session past the plan's limits."""
    bench = emitting()
    core = bench.core
    granted, seen = core.grant, core.shots_in_grant
    bench.inject("pull cable")
    bench.run(0.4)  # fires until the device's watchdog stops it (SR-09)
    fired_unseen = bench.sim.shot_no - core.shots_seen
    assert fired_unseen > 0
    bench.inject("reboot")
    bench.inject("replug")
    bench.run(0.3)
    assert core.pulses_in_doubt == granted - seen >= fired_unseen
    assert core.dose.pulses == core.shots_seen + core.pulses_in_doubt
    assert any("count as delivered (SR-08)" in w for w in core.warnings)
    assert core.report()["pulses_in_doubt"] == core.pulses_in_doubt
    # The grant had taken all the dose left (its margin included): charged in full, it leaves
    # none, and the session cannot be armed again.
    bench.inject("release")
    reset_to_standby(bench)
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    bench.run(0.5)
    assert bench.state is State.STANDBY
    assert "session budget used up (max_fluence_j_cm2" in core.refusals[-1].reason


@pytest.mark.req("SR-08")
def test_a_grant_the_device_finished_and_reported_owes_nothing_after_a_reboot() -> None:
    bench = emitting()
    bench.inject("release")
    bench.operator(RequestDisarm())
    bench.run(0.3)  # DISARM answered, a STATUS with the device IDLE and every shot recorded
    assert not bench.core.grant_open
    bench.inject("reboot")
    bench.run(0.3)
    assert bench.state is State.FAULT  # the reboot is still a fault (SR-15) ...
    assert bench.core.pulses_in_doubt == 0  # ... but nothing was hidden by it
    assert bench.core.dose.pulses == bench.core.shots_seen
    # The session goes on, and the new counter epoch's shots are counted.
    fired = bench.core.shots_seen
    reset_to_standby(bench)
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    bench.run(1.0)
    bench.inject("press")
    bench.run(0.35)
    bench.inject("release")
    assert bench.sim.shot_no > 0
    assert bench.core.shots_seen == fired + bench.sim.shot_no
    assert bench.core.ledger.device_fired == fired + bench.sim.shot_no


@pytest.mark.req("SR-08")
@pytest.mark.req("SR-11")
def test_arming_waits_until_the_last_grants_missing_shots_are_re_read() -> None:
    """Shot events of a grant are lost (the line drops them, replays included) and the device
    has disarmed: a new grant now would replace the open one, and a reboot would then hide the
    pulses of both. So ARM is refused until the re-read has recorded them; a reboot meanwhile
    charges the missing ones as pulses in doubt."""
    bench = emitting()
    core = bench.core
    bench.device_frames = lambda m: not isinstance(m, Shot)  # every SHOT lost on the way
    bench.run(0.35)
    bench.inject("release")
    bench.operator(RequestDisarm())
    bench.run(0.2)
    assert bench.state is State.STANDBY and bench.sim.state.name == "IDLE"
    unseen = bench.sim.shot_no - core.shots_seen
    assert unseen > 0 and core.grant_open
    bench.operator(RequestArm())
    assert len(bench.arms()) == 1
    reason = core.refusals[-1].reason
    assert f"shots {core.shots_seen + 1}..{bench.sim.shot_no} of the last grant" in reason
    assert "re-reading them before a new grant (SR-08)" in reason
    bench.device_frames = None  # the line is good again: the re-read completes
    bench.inject("open key")  # an event, whose number shows the gap
    bench.inject("close key")
    bench.run(0.3)
    assert core.shots_seen == bench.sim.shot_no and not core.grant_open
    bench.operator(RequestArm())
    assert bench.run_until(lambda: bench.state is State.READY, 0.5), core.refusals


@pytest.mark.req("SR-08")
def test_a_reboot_while_a_grants_shots_are_missing_charges_them_in_doubt() -> None:
    bench = emitting()
    core = bench.core
    bench.device_frames = lambda m: not isinstance(m, Shot)
    bench.run(0.35)
    bench.inject("release")
    bench.operator(RequestDisarm())
    bench.run(0.2)
    bench.operator(RequestArm())  # refused: the grant is still open
    fired = bench.sim.shot_no
    bench.inject("reboot")  # the device loses its counter and the unreported records
    bench.device_frames = None
    bench.run(0.3)
    assert bench.state is State.FAULT
    assert core.pulses_in_doubt >= fired - core.shots_seen > 0
    assert core.dose.pulses >= fired  # nothing the device fired went uncharged


@pytest.mark.req("SR-15")
def test_a_reboot_while_the_cable_is_out_is_found_when_it_returns() -> None:
    bench = emitting()
    bench.inject("release")
    bench.inject("pull cable")
    bench.run(0.4)
    bench.inject("power cycle")  # keeps the counter: only the boot id tells
    bench.inject("replug")
    bench.run(0.3)
    assert any("rebooted" in c.message for c in bench.core.causes)
    reset_to_standby(bench)


# ---- shots (SR-11) ---------------------------------------------------------------------------
@pytest.mark.req("SR-11")
def test_every_shot_is_recorded_once_before_it_is_acknowledged() -> None:
    log: list[Action] = []
    bench = Bench(plan=FAST, on_action=log.append)
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    bench.run(1.0)
    bench.inject("press")
    bench.run(2.0)
    bench.inject("release")
    bench.run(0.2)
    recorded: set[int] = set()
    for action in log:
        if isinstance(action, RecordShot):
            assert action.record.shot_no not in recorded
            recorded.add(action.record.shot_no)
        elif isinstance(action, Send) and isinstance(action.command, ShotAck):
            upto = action.command.up_to_shot
            assert set(range(1, upto + 1)) <= recorded
    assert recorded == set(range(1, bench.sim.shot_no + 1))
    assert len(bench.sim.unacked) == 0
    assert [r.shot_no for r in bench.store.records] == sorted(recorded)
    record = bench.store.records[0]
    assert (record.session, record.plan_id, record.area) == ("session", FAST.plan_id, "abdomen")
    assert record.set_value == 12.0 and record.measured_value > 0


@pytest.mark.req("SR-11")
def test_lost_shot_events_are_re_read() -> None:
    bench = emitting()
    bench.inject("corrupt 3")  # the next device frames arrive corrupted: rejected, lost
    bench.run(0.5)
    bench.inject("release")
    bench.run(0.2)
    assert bench.core.frames_rejected >= 1
    assert bench.core.shots_seen == bench.sim.shot_no
    assert bench.state is State.READY
    assert bench.core.causes == []


@pytest.mark.req("SR-11")
def test_a_gap_in_the_device_shot_counter_enters_fault() -> None:
    bench = emitting()
    bench.sim.shot_no += 5  # the device's counter skips five numbers it never fired
    bench.run(0.3)
    assert bench.state is State.FAULT
    assert any("gap: shots" in c.message for c in bench.core.causes)


@pytest.mark.req("SR-11")
def test_shots_left_unacknowledged_by_an_earlier_host_are_recovered_at_connect() -> None:
    bench = emitting()
    bench.inject("release")
    bench.drop_from_device = True
    bench.inject("press")
    bench.run(0.12)
    bench.inject("release")
    kept = len(bench.sim.unacked)
    assert kept > 0
    # A new host process (a new controller) connects to the same device.
    fresh = Bench(plan=FAST)
    fresh.sim = bench.sim
    fresh.now = bench.now
    fresh.connect()
    assert fresh.core.shots_recovered == kept
    assert fresh.core.shots_seen == 0  # not counted against the new session's budget
    assert len(fresh.sim.unacked) == 0
    assert all(not r.counted for r in fresh.store.records)


# ---- unacknowledged commands (SR-16) ----------------------------------------------------------
@pytest.mark.req("SR-16")
def test_an_unacknowledged_arm_counts_as_not_armed_and_is_disarmed() -> None:
    bench = Bench(plan=FAST)
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.drop_from_device = True  # the device acts on ARM, its answer is lost
    bench.operator(RequestArm())
    assert bench.sim.state.name == "ARMED"
    bench.run(0.22)
    assert bench.state is State.STANDBY
    assert "unacknowledged, counts as not armed" in bench.core.refusals[-1].reason
    assert bench.sent_types()[-1] == "Disarm"
    assert bench.sim.state.name == "IDLE"  # the disarm got through the other direction
    assert State.READY not in [to for _, _, to, _ in bench.core.history]


@pytest.mark.req("SR-16")
def test_disarm_is_retried_until_acknowledged() -> None:
    bench = emitting()
    bench.drop_from_host = True
    bench.inject("release")
    from laserctl.controller.events import RequestDisarm

    bench.operator(RequestDisarm())
    assert bench.state is State.STANDBY
    bench.run(0.12)
    assert bench.link is not None and bench.link.stats.retransmits >= 2
    assert bench.sim.state.name == "ARMED"  # nothing has reached it
    bench.drop_from_host = False
    bench.run(0.06)
    assert bench.sim.state.name == "IDLE"


# ---- the device misbehaving --------------------------------------------------------------------
def _device_event(bench: Bench, event: object) -> None:
    bench.feed(DeviceEvent(event))  # type: ignore[arg-type]
    bench.pump()


def test_a_shot_while_not_armed_is_a_fault() -> None:
    bench = Bench()
    bench.connect()
    shot = Shot(999, bench.sim.shot_no + 1, 0, 0, int(Param.ENERGY_MJ), 12000, 12000, 1600, ())
    _device_event(bench, shot)
    assert bench.state is State.FAULT
    assert "while the device was not armed" in bench.core.causes[0].message


def test_a_device_armed_without_the_controller_is_disarmed_and_faults() -> None:
    bench = Bench()
    bench.connect()
    assert bench.core.status is not None
    body = dataclasses.replace(bench.core.status, state=2)
    _device_event(bench, StatusChanged(999, body))
    assert bench.state is State.FAULT
    assert any(isinstance(s.command, Disarm) for s in bench.sent[-2:])


@pytest.mark.req("SR-08")
def test_more_shots_than_granted_is_a_fault() -> None:
    plan = dataclasses.replace(FAST, max_pulses=3)
    bench = Bench(plan=plan)
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    bench.run(1.0)
    bench.inject("press")
    bench.run(0.5)
    assert bench.sim.shot_no == 3 and bench.state is State.STANDBY
    bench.core.device_may_fire = True  # pretend the device still thought itself armed
    shot = Shot(999, 4, 0, 0, int(Param.ENERGY_MJ), 12000, 12000, 1600, ())
    _device_event(bench, shot)
    assert bench.state is State.FAULT
    assert "4 pulses on a grant of 3" in bench.core.causes[-1].message


# ---- exceptions (SR-10) ------------------------------------------------------------------------
@pytest.mark.req("SR-10")
def test_an_exception_in_the_core_disarms_and_enters_fault() -> None:
    bench = emitting()

    def broken(shot: Shot) -> None:
        raise RuntimeError("bug in shot handling")

    bench.core._on_shot = broken  # type: ignore[method-assign]
    bench.run(0.2)
    assert bench.state is State.FAULT
    assert "internal error: RuntimeError: bug in shot handling" in bench.core.causes[0].message
    assert bench.sim.state.name == "IDLE"
    assert not bench.sim.emission


@pytest.mark.req("SR-10")
def test_an_exception_in_the_machine_itself_still_ends_in_fault_with_a_disarm() -> None:
    bench = emitting()

    def broken(*args: object) -> str | None:
        raise RuntimeError("machine broke")

    bench.core._fire = broken  # type: ignore[method-assign]
    actions = bench.feed(InternalError("store failed"))
    assert bench.state is State.FAULT
    assert any(isinstance(a, Send) and isinstance(a.command, Disarm) for a in actions)
    bench.pump()
    assert bench.sim.state.name == "IDLE"


@pytest.mark.req("SR-03")
@pytest.mark.req("SR-16")
def test_an_estop_that_could_not_reach_the_device_is_sent_again_when_the_link_returns() -> None:
    bench = emitting()
    bench.inject("pull cable")
    bench.operator(RequestEStop())
    assert bench.state is State.ESTOP
    bench.run(1.0)  # long enough for the link to give the ESTOP up
    assert bench.sim.state.name != "ESTOP"  # never heard it (the watchdog disarmed it)
    bench.inject("replug")
    bench.run(0.3)
    assert bench.sim.state.name == "ESTOP"
    assert bench.state is State.ESTOP
