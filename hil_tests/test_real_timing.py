"""Reaction times at the real line rate: the simulator throttled to 115200 baud 8N1 (`laserctl
sim --throttle 115200`), or the --device URL as it is. The controller runs in this process,
wired as `laserctl session` wires it, with its transport tapped (hil_tests/timing.py): each
read and write is timed at the system call.

These are requirements, not benchmarks: each test asserts the requirement's own deadline,
which the measured times clear by a wide margin (docs/hil.md gives typical figures; bench/
measures them). They never fire on real hardware.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from drivers.protocol import Disarm, Fault, FaultCode, Interlock, Message, StatusChanged
from laserctl.controller.table import State

from .rig import FAST_RATE_HZ, PATIENT, Dut, check_log, stored_shots
from .timing import Controlled

SR02_S = 0.050  # SR-02: detected within 50 ms of the event reaching the host
SR09_SILENCE_S = 0.250  # SR-09: the host declares a device silent this long lost ...
SR09_DECLARE_MARGIN_S = 0.050  # ... and does so promptly: the reader checks every <= 20 ms
SR09_HEARTBEAT_S = 0.100  # SR-09: the host sends a valid frame at least this often
SAMPLES = 6


def opened(interlock: Interlock) -> object:
    def match(message: Message) -> bool:
        if isinstance(message, Fault):
            return message.code == FaultCode.INTERLOCK_OPENED and message.detail == interlock
        return isinstance(message, StatusChanged) and not message.body.is_closed(interlock)

    return match


def emitting(ctl: Controlled) -> None:
    ctl.ready()
    ctl.sim("press")
    ctl.wait(lambda s: s.state is State.EMITTING, "EMITTING")
    time.sleep(0.1)  # a pulse or two


@pytest.mark.req("SR-02")
def test_interlock_opened_mid_burst_disarms_within_50_ms_of_the_event(
    timed_dut: Dut, tmp_path: Path
) -> None:
    """From the read that brought the device's INTERLOCK_OPENED to the host, to the DISARM
    written and to the controller's new state: the key (STANDBY) several times, the door
    (FAULT, latched) once."""
    dut = timed_dut
    db = tmp_path / "log.db"
    dut.calibrate(db)
    plan = dut.plan("abdomen", max_pulses=500, ready_delay_s=0.05)
    reactions: list[tuple[str, float, float]] = []
    with Controlled(dut.url, db, plan, patient=PATIENT, area="abdomen") as ctl:
        first = ctl.device_counter()
        for n in range(SAMPLES + 1):
            name, interlock, state = ("door", Interlock.DOOR, State.FAULT)
            if n < SAMPLES:
                name, interlock, state = ("key", Interlock.KEY, State.STANDBY)
            emitting(ctl)
            mark = ctl.tap.mark()
            ctl.sim(f"open {name}")
            ctl.wait(lambda snap, want=state: bool(snap.state is want), str(state))  # type: ignore[misc]
            time.sleep(0.02)
            event = ctl.tap.first_read(mark, opened(interlock))  # type: ignore[arg-type]
            assert event is not None, f"no INTERLOCK_OPENED for {name} reached the host"
            disarm = ctl.tap.first_write(mark, lambda m: isinstance(m, Disarm), event[0])
            assert disarm is not None, f"no DISARM after {name} opened"
            entered = ctl.entered(state, mark_time(ctl, mark))
            assert entered is not None
            reactions.append((name, (disarm[0] - event[0]) / 1e9, (entered - event[0]) / 1e9))
            ctl.sim(f"close {name}")
            ctl.sim("release")
        assert ctl.runner.snapshot.state is State.FAULT  # the door latched
        last = ctl.device_counter()
    print("SR-02 reactions (interlock, to DISARM ms, to state ms):")
    for name, to_disarm, to_state in reactions:
        print(f"  {name} {to_disarm * 1e3:.2f} {to_state * 1e3:.2f}")
    for name, to_disarm, to_state in reactions:
        assert to_disarm <= SR02_S, f"{name}: DISARM {to_disarm * 1e3:.1f} ms after the event"
        assert to_state <= SR02_S, f"{name}: state {to_state * 1e3:.1f} ms after the event"
    check_log(db, dut, first=first, last=last)


def mark_time(ctl: Controlled, mark: tuple[int, int]) -> int:
    """The time of the first read after the mark (the reaction cannot start before it)."""
    return ctl.tap.reads[mark[0]].at_ns if len(ctl.tap.reads) > mark[0] else 0


@pytest.mark.req("SR-09")
@pytest.mark.req("SR-11")
def test_cable_pulled_both_ends_give_up_after_250_ms(timed_dut: Dut, tmp_path: Path) -> None:
    """The cable pulled mid-burst: the host declares the link lost 250 ms after the last byte
    it received (and not much later); the device stops emission 250 ms after the last frame
    it received; after the replug the shots fired in between are re-read and logged."""
    dut = timed_dut
    rate = FAST_RATE_HZ[dut.handpiece]
    db = tmp_path / "log.db"
    dut.calibrate(db)
    plan = dut.plan("abdomen", max_pulses=500, ready_delay_s=0.05)
    with Controlled(dut.url, db, plan, patient=PATIENT, area="abdomen") as ctl:
        first = ctl.device_counter()
        emitting(ctl)
        time.sleep(0.3)
        ctl.sim("pull cable")  # its ACK is the last byte the host receives
        last_byte = ctl.tap.reads[-1].at_ns
        ctl.wait(lambda s: s.state is State.FAULT, "FAULT", timeout=2.0)
        declared = ctl.entered(State.FAULT, last_byte)
        assert declared is not None
        assert all(c.at_ns <= last_byte for c in ctl.tap.reads), "bytes through a pulled cable"
        silent_for = (declared - last_byte) / 1e9
        print(f"SR-09 host: link declared lost {silent_for * 1e3:.1f} ms after the last byte")
        assert SR09_SILENCE_S <= silent_for <= SR09_SILENCE_S + SR09_DECLARE_MARGIN_S, silent_for
        time.sleep(0.6)
        ctl.sim("replug")
        time.sleep(0.2)
        ctl.wait(
            lambda s: (
                s.link_alive and s.commands_in_flight == 0 and s.shots_seen >= s.device_shots_fired
            ),
            "the shots fired meanwhile re-read",
        )
        ctl.sim("release")
        last = ctl.device_counter()
    shots = check_log(db, dut, first=first, last=last)
    # The device's own clock: the last pulse it fired came at most 250 ms (and a pulse period)
    # after the last one the host saw before the pull; every pulse until then was fired.
    dark = [s for s in shots if s.replayed]
    seen = [s for s in shots if not s.replayed and s.shot_no < dark[0].shot_no]
    quiet = (dark[-1].device_us - seen[-1].device_us) / 1e6
    print(f"SR-09 device: {len(dark)} pulses in the dark, the last {quiet * 1e3:.1f} ms after")
    assert quiet <= SR09_SILENCE_S + 1 / rate + 0.005, quiet
    assert len(dark) >= int(SR09_SILENCE_S * rate) - 1, len(dark)
    assert len(stored_shots(db)) == last - first


@pytest.mark.req("SR-09")
def test_host_sends_a_frame_at_least_every_100_ms(timed_dut: Dut, tmp_path: Path) -> None:
    dut = timed_dut
    db = tmp_path / "log.db"
    dut.calibrate(db)
    plan = dut.plan("abdomen", max_pulses=50, ready_delay_s=0.05)
    with Controlled(dut.url, db, plan, patient=PATIENT, area="abdomen") as ctl:
        ctl.ready()  # armed and idle: only heartbeats keep the device armed
        start = time.monotonic_ns()
        time.sleep(1.5)
        writes = ctl.tap.write_times(start)
        assert ctl.runner.snapshot.state is State.READY
    gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(writes)]
    assert len(gaps) >= 10
    assert max(gaps) <= SR09_HEARTBEAT_S, f"longest gap {max(gaps) * 1e3:.2f} ms"
