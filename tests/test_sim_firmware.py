"""The simulated handpiece's firmware model, driven through the real wire protocol.

A HostLink and a SimulatedHandpiece are wired together in memory and share a clock the test
moves, so every test is deterministic and fast. The device must enforce its own interlocks
whatever the host does; the tests marked with a requirement check that device side.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Arm,
    Boot,
    CalFire,
    Command,
    CommandFailed,
    DeviceEvent,
    DeviceState,
    Disarm,
    EStop,
    Event,
    EventGap,
    Fault,
    FaultCode,
    FrameRejected,
    GetStatus,
    HandpieceType,
    Hello,
    HelloInfo,
    HostLink,
    Interlock,
    LinkEvent,
    LinkSilent,
    MeterReading,
    Nak,
    NakReason,
    Param,
    Reply,
    Reset,
    Response,
    SelfTest,
    SelfTestItem,
    SelfTestResult,
    SetParams,
    Shot,
    ShotAck,
    ShotsPending,
    ShotsSince,
    SimControl,
    Status,
    StatusBody,
    StatusChanged,
    describe_nak,
    encode_frame,
)
from drivers.sim import MODELS, InjectionError, SimulatedHandpiece
from drivers.sim.firmware import EMISSION_LEAD_S, WATCHDOG_S
from drivers.sim.models import AMBIENT_C, OVERTEMP_C

FRACTIONAL = "fractional-1550"
NDYAG = "ndyag-1064"
HANDPIECES = (FRACTIONAL, NDYAG)
EPS = 1e-5  # device times are whole microseconds

# A valid full parameter set per handpiece, 10 Hz, in thousandths of the unit.
PARAMS = {
    FRACTIONAL: {
        Param.ENERGY_MJ: 20_000,
        Param.DENSITY_PCT: 10_000,
        Param.DEPTH_UM: 600_000,
        Param.PASSES: 2_000,
        Param.REP_RATE_HZ: 10_000,
    },
    NDYAG: {
        Param.FLUENCE_J_CM2: 75_000,
        Param.PULSE_MS: 15_000,
        Param.SPOT_MM: 5_000,
        Param.REP_RATE_HZ: 10_000,
    },
}

# Interlocks by what their opening does to an armed device.
LATCHING = {Interlock.COOLING: FaultCode.COOLING, Interlock.TEMPERATURE: FaultCode.OVERTEMP}
INTERLOCK_WORD = {
    Interlock.KEY: "key",
    Interlock.DOOR: "door",
    Interlock.ESTOP: "estop",
    Interlock.COOLING: "cooling",
    Interlock.TEMPERATURE: "temperature",
    Interlock.SKIN_CONTACT: "skin",
    Interlock.AIMING_BEAM: "aiming",
    Interlock.SHUTTER: "shutter",
}
SELFTEST_WORD = {
    SelfTestItem.INTERLOCK_INPUTS: "inputs",
    SelfTestItem.SHUTTER: "shutter",
    SelfTestItem.ENERGY_MONITOR: "meter",
    SelfTestItem.TEMPERATURE_SENSORS: "sensors",
}


def interlocks_of(handpiece: str) -> list[Interlock]:
    return sorted(MODELS[HandpieceType.from_slug(handpiece)].interlocks)


def interlock_cases(*, plain: bool = False) -> list[object]:
    """(handpiece, interlock) pairs; plain: only those whose opening disarms without latching."""
    return [
        pytest.param(hp, i, id=f"{hp}-{i.name.lower()}")
        for hp in HANDPIECES
        for i in interlocks_of(hp)
        if not plain or (i not in LATCHING and i is not Interlock.ESTOP)
    ]


@dataclass
class TimedShot:
    at: float  # bench time the pulse fired (device clock + boot time)
    shot: Shot


class Bench:
    """A HostLink wired to a SimulatedHandpiece in memory, on a clock the test moves."""

    def __init__(self, handpiece: str = FRACTIONAL, *, seed: int = 7, buffer_size: int = 4096):
        self.handpiece = handpiece
        self.t = 0.0
        self.sim = SimulatedHandpiece(handpiece, seed=seed, now=self.t, buffer_size=buffer_size)
        self.log: list[tuple[float, LinkEvent]] = []  # (bench time received, what the host saw)
        self.fired: list[TimedShot] = []  # every live (not replayed) shot the host received
        self.replies: dict[int, Response] = {}
        self.last_sent = self.t  # when the host last wrote a frame
        self.info = self.connect()

    # ---- moving bytes and time ------------------------------------------------------------------
    def connect(self) -> HelloInfo:
        """A host (re)connects: a new HostLink whose first command is HELLO."""
        self.host = HostLink(self.t, first_seq=1)
        self.replies = {}
        info = self.call(Hello(PROTOCOL_VERSION, PROTOCOL_VERSION))
        assert isinstance(info, HelloInfo)
        return info

    def exchange(self) -> None:
        """Move bytes both ways at the current time until neither end has anything to say."""
        for _ in range(8):
            data = self.host.data_to_send()
            if data:
                self.host.note_written(self.t)
                self.last_sent = self.t
            self.sim.receive(data, self.t)
            out = self.sim.output(self.t)
            self.host.receive_data(out, self.t)
            self._drain()
            if not data and not out:
                return

    def listen(self) -> None:
        """The host only listens (its sending side is dead): the device's clock still runs."""
        self.sim.tick(self.t)
        self.host.receive_data(self.sim.output(self.t), self.t)
        self._drain()

    def run(self, seconds: float, *, step: float = 0.005, host_sends: bool = True) -> None:
        end = self.t + seconds
        while self.t < end - 1e-9:
            self.t = min(end, self.t + step)
            if host_sends:
                self.host.tick(self.t)
                self.exchange()
            else:
                self.listen()
            # Nothing the model waits for is ever behind its own time: a deadline in the past
            # makes a serving loop spin, or stops firmware time at it (drivers/sim/clock.py).
            assert self.sim.next_deadline() >= self.sim.now, (self.sim.state, self.sim.now)

    def _drain(self) -> None:
        while (event := self.host.next_event()) is not None:
            self.log.append((self.t, event))
            if isinstance(event, Reply):
                self.replies[event.seq] = event.response
            elif isinstance(event, DeviceEvent) and isinstance(event.event, Shot):
                shot = event.event
                if not shot.flags & Shot.FLAG_REPLAY:
                    at = self.sim.boot_time + shot.device_time_us / 1e6
                    self.fired.append(TimedShot(at, shot))

    # ---- commands -------------------------------------------------------------------------------
    def send(self, command: Command) -> int:
        seq = self.host.send(command, self.t)
        self.exchange()
        return seq

    def call(self, command: Command, *, wait: float = 0.0) -> Response:
        seq = self.send(command)
        end = self.t + wait
        while seq not in self.replies and self.t < end - 1e-9:
            self.run(0.005)
        assert seq in self.replies, f"no reply to {command}"
        return self.replies.pop(seq)

    def ok(self, command: Command) -> None:
        response = self.call(command)
        assert response == Ack(command.TYPE), f"{command}: {response}"

    def nak(self, command: Command) -> Nak:
        response = self.call(command)
        assert isinstance(response, Nak), f"{command} was not refused: {response}"
        return response

    def inject(self, text: str) -> None:
        self.sim.inject(text, self.t)
        self.exchange()

    def status(self) -> StatusBody:
        response = self.call(GetStatus())
        assert isinstance(response, Status)
        return response.body

    def self_test(self) -> SelfTestResult:
        response = self.call(SelfTest())
        assert isinstance(response, SelfTestResult)
        return response

    def prepare(self, params: dict[Param, int] | None = None) -> None:
        """Self test passed and every parameter set: IDLE, ready to be armed."""
        assert self.self_test().passed == 1
        self.ok(
            SetParams(tuple((int(p), v) for p, v in (params or PARAMS[self.handpiece]).items()))
        )
        assert self.status().state == DeviceState.IDLE

    def arm(self, grant: int = 100, delay_ms: int = 0) -> None:
        self.ok(Arm(grant, delay_ms))

    # ---- what the host saw ----------------------------------------------------------------------
    def mark(self) -> int:
        return len(self.log)

    def events(self, since: int = 0) -> list[Event]:
        return [e.event for _, e in self.log[since:] if isinstance(e, DeviceEvent)]

    def faults(self, since: int = 0) -> list[Fault]:
        return [e for e in self.events(since) if isinstance(e, Fault)]

    def statuses(self, since: int = 0) -> list[StatusBody]:
        return [e.body for e in self.events(since) if isinstance(e, StatusChanged)]

    def shots(self, since: int = 0, *, replayed: bool = False) -> list[Shot]:
        want = Shot.FLAG_REPLAY if replayed else 0
        return [
            e
            for e in self.events(since)
            if isinstance(e, Shot) and e.flags & Shot.FLAG_REPLAY == want
        ]

    def shots_after(self, t: float) -> list[TimedShot]:
        """Pulses fired after t. The device's own counter must agree that the host saw every
        pulse there was, so an empty answer means none was fired, not none was reported."""
        assert self.sim.shot_no == len(self.fired), "the device fired pulses the host never saw"
        return [s for s in self.fired if s.at > t + EPS]

    def link_events(self, kind: type, since: int = 0) -> list[LinkEvent]:
        return [e for _, e in self.log[since:] if isinstance(e, kind)]


def armed_and_firing(handpiece: str = FRACTIONAL, grant: int = 100, **kw: int) -> Bench:
    bench = Bench(handpiece, **kw)
    bench.prepare()
    bench.arm(grant)
    bench.inject("press")
    bench.run(0.35)
    assert len(bench.shots()) >= 3
    return bench


# ---- identity --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("handpiece", "wavelength", "extra", "dose", "serial"),
    [
        (FRACTIONAL, 1550, Interlock.SKIN_CONTACT, Param.ENERGY_MJ, "FX-00007"),
        (NDYAG, 1064, Interlock.AIMING_BEAM, Param.FLUENCE_J_CM2, "ND-00007"),
    ],
)
def test_hello_reports_the_model(
    handpiece: str, wavelength: int, extra: Interlock, dose: Param, serial: str
) -> None:
    bench = Bench(handpiece)
    info = bench.info
    model = bench.sim.model
    assert (info.handpiece, info.wavelength_nm, info.flags) == (
        HandpieceType.from_slug(handpiece),
        wavelength,
        HelloInfo.FLAG_SIMULATED,
    )
    common = {Interlock.KEY, Interlock.DOOR, Interlock.ESTOP, Interlock.COOLING}
    common |= {Interlock.TEMPERATURE, Interlock.SHUTTER}
    assert {i for i in Interlock if info.interlocks & (1 << i)} == common | {extra}
    assert info.capabilities == tuple(
        (int(p), round(lo * 1000), round(hi * 1000))
        for p, (lo, hi) in sorted(model.capabilities.items())
    )
    assert model.dose_param == dose
    assert (info.serial, info.firmware) == (serial, "sim-1.0.0")  # prefix and seed 7


# ---- SR-01 / SR-04: the device fires only when every condition holds ----------------------------
@pytest.mark.req("SR-01")
@pytest.mark.parametrize("handpiece", HANDPIECES)
def test_footswitch_without_arm_never_fires(handpiece: str) -> None:
    bench = Bench(handpiece)
    bench.prepare()
    bench.inject("press")
    bench.run(1.0)
    assert bench.shots() == []
    body = bench.status()
    assert (body.state, body.footswitch, body.emission) == (DeviceState.IDLE, 1, 0)


@pytest.mark.req("SR-01")
def test_armed_without_footswitch_never_fires() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm()
    bench.run(1.0)
    assert bench.shots() == []
    body = bench.status()
    assert (body.state, body.emission, body.grant_remaining) == (DeviceState.ARMED, 0, 100)


@pytest.mark.req("SR-01")
@pytest.mark.parametrize("verb", ["open", "unknown"])
@pytest.mark.parametrize(("handpiece", "interlock"), interlock_cases())
def test_arm_refused_with_any_interlock_open_or_unknown(
    handpiece: str, interlock: Interlock, verb: str
) -> None:
    bench = Bench(handpiece)
    bench.prepare()
    bench.inject(f"{verb} {INTERLOCK_WORD[interlock]}")
    body = bench.status()
    assert not body.is_closed(interlock)
    nak = bench.nak(Arm(100, 0))
    if interlock is Interlock.ESTOP:
        assert (nak.reason, nak.detail) == (NakReason.LATCHED, FaultCode.ESTOP)
    elif interlock in LATCHING:
        assert (nak.reason, nak.detail) == (NakReason.LATCHED, LATCHING[interlock])
    else:
        assert (nak.reason, nak.detail) == (NakReason.INTERLOCK_OPEN, interlock)
    bench.inject("press")
    bench.run(0.5)
    assert bench.shots() == []


@pytest.mark.req("SR-01")
@pytest.mark.req("SR-04")
def test_first_pulse_waits_for_the_ready_delay() -> None:
    bench = Bench()
    bench.prepare()
    armed_at = bench.t
    bench.arm(grant=100, delay_ms=1000)
    bench.inject("press")
    bench.run(0.99)
    assert bench.shots() == []
    assert all(b.emission == 0 for b in bench.statuses())
    bench.run(0.51)
    assert bench.fired, "no pulse after the ready delay"
    assert bench.fired[0].at >= armed_at + 1.0 + EMISSION_LEAD_S - EPS


@pytest.mark.req("SR-04")
def test_arm_refused_while_footswitch_pressed() -> None:
    bench = Bench()
    bench.prepare()
    bench.inject("press")
    nak = bench.nak(Arm(100, 0))
    assert nak.reason == NakReason.FOOTSWITCH_PRESSED
    bench.run(0.5)
    assert bench.shots() == []
    bench.inject("release")
    bench.arm()  # released: arming is an explicit action that now succeeds


@pytest.mark.req("SR-04")
def test_stuck_footswitch_cannot_arm_or_fire() -> None:
    bench = Bench()
    bench.prepare()
    bench.inject("stick footswitch")
    bench.inject("release")  # releasing the pedal does not free a stuck switch
    assert bench.status().footswitch == 1
    assert bench.nak(Arm(100, 0)).reason == NakReason.FOOTSWITCH_PRESSED
    bench.run(0.5)
    assert bench.shots() == []
    bench.inject("unstick footswitch")
    assert bench.status().footswitch == 0
    bench.arm()


def test_arm_preconditions() -> None:
    bench = Bench()
    assert bench.nak(Arm(100, 0)).reason == NakReason.SELF_TEST_REQUIRED
    assert bench.self_test().passed == 1
    nak = bench.nak(Arm(100, 0))
    assert (nak.reason, nak.detail) == (NakReason.NO_PARAMS, Param.ENERGY_MJ)
    bench.ok(SetParams(tuple((int(p), v) for p, v in PARAMS[FRACTIONAL].items())))
    assert bench.nak(Arm(0, 0)).reason == NakReason.ZERO_GRANT
    bench.arm()
    nak = bench.nak(Arm(100, 0))
    assert (nak.reason, nak.detail) == (NakReason.BAD_STATE, DeviceState.ARMED)
    bench.ok(Disarm())
    assert bench.status().state == DeviceState.IDLE


# ---- SR-02: an interlock opening mid-burst ------------------------------------------------------
@pytest.mark.req("SR-02")
@pytest.mark.parametrize(("handpiece", "interlock"), interlock_cases(plain=True))
def test_interlock_opened_mid_burst_stops_pulses_and_disarms(
    handpiece: str, interlock: Interlock
) -> None:
    bench = armed_and_firing(handpiece)
    mark, opened_at = bench.mark(), bench.t
    bench.inject(f"open {INTERLOCK_WORD[interlock]}")
    bench.run(0.5)
    assert bench.shots_after(opened_at) == []
    fault = bench.faults(mark)[0]
    assert (fault.code, fault.latched, fault.detail) == (
        FaultCode.INTERLOCK_OPENED,
        0,
        interlock,
    )
    body = bench.status()
    assert (body.state, body.emission, body.grant_remaining) == (DeviceState.IDLE, 0, 0)
    # Closing it again does not resume: the footswitch is still down but the grant is gone.
    bench.inject(f"close {INTERLOCK_WORD[interlock]}")
    bench.run(0.5)
    assert bench.shots_after(opened_at) == []


@pytest.mark.req("SR-02")
@pytest.mark.parametrize(
    ("interlock", "state", "code"),
    [
        (Interlock.ESTOP, DeviceState.ESTOP, FaultCode.ESTOP),
        (Interlock.COOLING, DeviceState.FAULT, FaultCode.COOLING),
        (Interlock.TEMPERATURE, DeviceState.FAULT, FaultCode.OVERTEMP),
    ],
)
def test_latching_interlock_opened_mid_burst_latches(
    interlock: Interlock, state: DeviceState, code: FaultCode
) -> None:
    bench = armed_and_firing()
    mark, opened_at = bench.mark(), bench.t
    bench.inject(f"open {INTERLOCK_WORD[interlock]}")
    bench.run(0.5)
    assert bench.shots_after(opened_at) == []
    fault = bench.faults(mark)[0]
    assert (fault.code, fault.latched) == (code, 1)
    body = bench.status()
    assert (body.state, body.fault, body.emission, body.grant_remaining) == (state, code, 0, 0)


# ---- SR-03: emergency stop ----------------------------------------------------------------------
def bench_in_state(state: DeviceState) -> Bench:
    bench = Bench()
    if state is DeviceState.NOT_TESTED:
        return bench
    bench.prepare()
    if state is DeviceState.ARMED:
        bench.arm()
    elif state is DeviceState.EMITTING:
        bench.arm()
        bench.inject("press")
        bench.run(0.25)
    elif state is DeviceState.FAULT:
        bench.inject("open cooling")
        bench.inject("close cooling")
    elif state is DeviceState.ESTOP:
        bench.ok(EStop())
    assert bench.status().state == state
    return bench


@pytest.mark.req("SR-03")
@pytest.mark.parametrize("source", ["command", "button"])
@pytest.mark.parametrize("state", list(DeviceState))
def test_estop_from_every_state_latches(state: DeviceState, source: str) -> None:
    bench = bench_in_state(state)
    mark, stopped_at = bench.mark(), bench.t
    if source == "command":
        bench.ok(EStop())
    else:
        bench.inject("estop")
    bench.inject("press")
    bench.run(0.5)
    assert bench.shots_after(stopped_at) == []
    body = bench.status()
    assert (body.state, body.fault, body.emission, body.grant_remaining) == (
        DeviceState.ESTOP,
        FaultCode.ESTOP,
        0,
        0,
    )
    if state is not DeviceState.ESTOP:
        assert [(f.code, f.latched) for f in bench.faults(mark)] == [(FaultCode.ESTOP, 1)]
    assert bench.nak(Arm(100, 0)).reason == NakReason.LATCHED


@pytest.mark.req("SR-03")
def test_estop_is_executed_ahead_of_commands_queued_before_it() -> None:
    bench = Bench()
    bench.prepare()
    # ARM and then ESTOP reach the device in one read; the device takes ESTOP first.
    arm_seq = bench.host.send(Arm(100, 0), bench.t)
    arm_bytes = bench.host.data_to_send()
    estop_seq = bench.host.send(EStop(), bench.t)
    bench.sim.receive(arm_bytes + bench.host.data_to_send(), bench.t)
    bench.listen()
    assert bench.replies[estop_seq] == Ack(EStop.TYPE)
    nak = bench.replies[arm_seq]
    assert isinstance(nak, Nak)
    assert (nak.reason, nak.detail) == (NakReason.LATCHED, FaultCode.ESTOP)
    assert bench.status().state == DeviceState.ESTOP


@pytest.mark.req("SR-03")
def test_leaving_estop_needs_release_reset_and_self_test() -> None:
    bench = armed_and_firing()
    bench.inject("estop")
    bench.inject("release")
    nak = bench.nak(Reset())
    assert (nak.reason, nak.detail) == (NakReason.LATCHED, FaultCode.ESTOP)
    assert bench.status().state == DeviceState.ESTOP
    bench.inject("release estop")
    assert bench.status().state == DeviceState.ESTOP  # releasing the button alone is not enough
    bench.ok(Reset())
    body = bench.status()
    assert (body.state, body.fault) == (DeviceState.NOT_TESTED, FaultCode.NONE)
    assert bench.nak(Arm(100, 0)).reason == NakReason.SELF_TEST_REQUIRED
    assert bench.self_test().passed == 1
    bench.arm()


@pytest.mark.req("SR-03")
def test_estop_command_reset_needs_self_test() -> None:
    bench = bench_in_state(DeviceState.ARMED)
    bench.ok(EStop())
    bench.ok(Reset())  # the console button was never pressed: reset is allowed at once
    assert bench.status().state == DeviceState.NOT_TESTED
    assert bench.nak(Arm(100, 0)).reason == NakReason.SELF_TEST_REQUIRED


# ---- SR-05: emission indicator ------------------------------------------------------------------
def burst_pattern(bench: Bench) -> str:
    """The emission indicator and the pulses as the host saw them: "[" on, "]" off, "s" a shot."""
    out, emission = "", 0
    for event in bench.events():
        if isinstance(event, StatusChanged) and event.body.emission != emission:
            emission = event.body.emission
            out += "[" if emission else "]"
        elif isinstance(event, Shot):
            out += "s"
    return out


@pytest.mark.req("SR-05")
def test_emission_indicator_before_first_shot_of_every_burst_and_cleared_after() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm(grant=7)
    for _ in range(2):  # two bursts ended by releasing the footswitch
        bench.inject("press")
        bench.run(0.15)  # pulses 10 ms and 110 ms after the press
        bench.inject("release")
        bench.run(0.2)
    bench.inject("press")  # a third burst ended by the grant running out
    bench.run(1.0)
    assert burst_pattern(bench) == "[ss][ss][sss]"
    assert len(bench.shots()) == 7
    # The indicator is on for at least EMISSION_LEAD_S before the first pulse of each burst.
    ons = [b for b in bench.statuses() if b.emission == 1]
    firsts = [bench.fired[0], bench.fired[2], bench.fired[4]]
    for on, first in zip(ons, firsts, strict=True):
        assert first.shot.device_time_us - on.device_time_us >= EMISSION_LEAD_S * 1e6 - 1


# ---- SR-06: the device's own energy monitor -----------------------------------------------------
@pytest.mark.req("SR-06")
@pytest.mark.parametrize("drift", [30, -30])
def test_energy_deviation_beyond_20_percent_latches_fault(drift: int) -> None:
    bench = Bench()
    bench.prepare()
    bench.arm()
    bench.inject(f"drift {drift}")
    mark = bench.mark()
    bench.inject("press")
    bench.run(0.5)
    shots = bench.shots(mark)
    assert len(shots) == 1, "emission must stop at the first deviating pulse"
    ratio = shots[0].measured_milli / shots[0].set_milli
    assert ratio == pytest.approx(1 + drift / 100, abs=0.06)
    fault = bench.faults(mark)[0]
    assert (fault.code, fault.latched) == (FaultCode.ENERGY_DEVIATION, 1)
    assert fault.value == pytest.approx(drift * 10, abs=60)  # 0.1 % units
    body = bench.status()
    assert (body.state, body.fault, body.emission) == (
        DeviceState.FAULT,
        FaultCode.ENERGY_DEVIATION,
        0,
    )
    assert bench.nak(Arm(100, 0)).reason == NakReason.LATCHED


def test_drift_within_tolerance_keeps_firing() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm()
    bench.inject("drift 8")
    bench.inject("press")
    bench.run(1.0)
    shots = bench.shots()
    assert len(shots) >= 9
    assert bench.faults() == []
    mean = sum(s.measured_milli / s.set_milli for s in shots) / len(shots)
    assert mean == pytest.approx(1.08, abs=0.02)


# ---- SR-07: capability --------------------------------------------------------------------------
def beyond_capability() -> list[tuple[str, Param, int]]:
    cases = []
    for hp in HANDPIECES:
        model = SimulatedHandpiece(hp).model
        for param, (lo, hi) in model.capabilities.items():
            cases += [(hp, param, round(lo * 1000) - 1), (hp, param, round(hi * 1000) + 1)]
    return cases


@pytest.mark.req("SR-07")
@pytest.mark.parametrize(("handpiece", "param", "value"), beyond_capability())
def test_set_params_beyond_capability_refused_naming_parameter_and_value(
    handpiece: str, param: Param, value: int
) -> None:
    bench = Bench(handpiece)
    command = SetParams(((int(param), value),))
    nak = bench.nak(command)
    assert (nak.reason, nak.detail, nak.value) == (NakReason.OUT_OF_RANGE, param, value)
    assert f"OUT_OF_RANGE: {param.field_name} = {value / 1000:g}" in describe_nak(command, nak)


@pytest.mark.parametrize("handpiece", HANDPIECES)
def test_set_params_accepts_the_capability_bounds(handpiece: str) -> None:
    bench = Bench(handpiece)
    for param, (lo, hi) in bench.sim.model.capabilities.items():
        for value in (round(lo * 1000), round(hi * 1000)):
            bench.ok(SetParams(((int(param), value),)))


@pytest.mark.req("SR-07")
def test_set_params_refusal_is_atomic() -> None:
    bench = Bench()
    bench.prepare()  # density 10 %, energy 20 mJ
    nak = bench.nak(SetParams(((Param.DENSITY_PCT, 30_000), (Param.ENERGY_MJ, 70_001))))
    assert (nak.reason, nak.detail, nak.value) == (
        NakReason.OUT_OF_RANGE,
        Param.ENERGY_MJ,
        70_001,
    )
    nak = bench.nak(SetParams(((Param.DENSITY_PCT, 30_000), (Param.PULSE_MS, 10_000))))
    assert (nak.reason, nak.detail) == (NakReason.UNKNOWN_PARAM, Param.PULSE_MS)
    bench.arm(grant=1)
    bench.inject("press")
    bench.run(0.2)
    (shot,) = bench.shots()
    assert dict(shot.params) == PARAMS[FRACTIONAL]  # neither refused command changed anything


@pytest.mark.req("SR-07")
@pytest.mark.parametrize(
    ("handpiece", "code"),
    [
        (FRACTIONAL, Param.PULSE_MS),
        (FRACTIONAL, Param.SPOT_MM),
        (NDYAG, Param.DEPTH_UM),
        (NDYAG, 99),
    ],
)
def test_parameter_the_handpiece_lacks_is_refused(handpiece: str, code: int) -> None:
    bench = Bench(handpiece)
    nak = bench.nak(SetParams(((int(code), 1000),)))
    assert (nak.reason, nak.detail, nak.value) == (NakReason.UNKNOWN_PARAM, code, 1000)


def test_set_params_refused_while_armed() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm()
    nak = bench.nak(SetParams(((Param.ENERGY_MJ, 30_000),)))
    assert (nak.reason, nak.detail) == (NakReason.BAD_STATE, DeviceState.ARMED)


# ---- SR-08: pulse grant -------------------------------------------------------------------------
@pytest.mark.req("SR-08")
@pytest.mark.parametrize("grant", [1, 5])
def test_never_more_pulses_than_the_grant(grant: int) -> None:
    bench = Bench()
    bench.prepare()
    bench.arm(grant=grant)
    bench.inject("press")
    bench.run(2.0)
    assert len(bench.shots()) == grant
    assert [(f.code, f.latched) for f in bench.faults()] == [(FaultCode.GRANT_EXHAUSTED, 0)]
    body = bench.status()
    assert (body.state, body.emission, body.grant_remaining) == (DeviceState.IDLE, 0, 0)
    bench.run(1.0)  # footswitch still down
    assert len(bench.shots()) == grant


@pytest.mark.req("SR-08")
def test_grant_remaining_counts_down() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm(grant=10)
    bench.inject("press")
    bench.run(0.25)  # pulses at 0.01 and 0.11 and 0.21 after pressing
    bench.inject("release")
    assert len(bench.shots()) == 3
    assert bench.status().grant_remaining == 7


# ---- SR-09: watchdog ----------------------------------------------------------------------------
@pytest.mark.req("SR-09")
def test_watchdog_disarms_and_stops_pulses_when_host_goes_silent() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm()
    bench.inject("press")
    bench.run(1.0)  # heartbeats keep it firing well past the watchdog period
    assert len(bench.shots()) == 10
    last_frame = bench.last_sent
    mark = bench.mark()
    bench.run(0.6, host_sends=False)
    expiry = last_frame + WATCHDOG_S
    assert bench.shots_after(expiry) == []
    assert bench.shots(mark), "pulses due before the watchdog expired still fire"
    fault = bench.faults(mark)[0]
    assert (fault.code, fault.latched, fault.value) == (FaultCode.WATCHDOG, 0, 250)
    body = bench.statuses(mark)[-1]
    assert (body.state, body.emission, body.grant_remaining) == (DeviceState.IDLE, 0, 0)
    # The host comes back: the device stays disarmed.
    bench.run(0.5)
    assert bench.shots_after(expiry) == []
    assert bench.status().state == DeviceState.IDLE


@pytest.mark.req("SR-09")
@pytest.mark.req("SR-16")
def test_corrupted_frames_do_not_feed_the_watchdog() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm()
    start = bench.t
    frame = bytearray(encode_frame(GetStatus.TYPE, 900, b""))
    frame[2] ^= 0x01
    while bench.t < start + 0.5:
        bench.t += 0.02
        bench.sim.receive(bytes(frame), bench.t)  # a bad CRC every 20 ms
        bench.listen()
    ((tripped_at, fault),) = [
        (t, e.event)
        for t, e in bench.log
        if isinstance(e, DeviceEvent) and isinstance(e.event, Fault)
    ]
    assert (fault.code, fault.latched) == (FaultCode.WATCHDOG, 0)
    assert start + WATCHDOG_S <= tripped_at <= start + WATCHDOG_S + 0.02
    assert bench.sim.state is DeviceState.IDLE


# ---- SR-11: shot records ------------------------------------------------------------------------
@pytest.mark.req("SR-11")
def test_unacked_shots_are_replayed_after_a_host_reconnect() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm(grant=5)
    bench.inject("press")
    bench.run(1.0)
    originals = bench.shots()
    assert [s.shot_no for s in originals] == [1, 2, 3, 4, 5]
    assert bench.status().unacked == 5

    bench.connect()  # a new host process: new HostLink, HELLO first
    mark = bench.mark()
    assert bench.call(ShotsSince(0)) == ShotsPending(5)
    replayed = bench.shots(mark, replayed=True)
    assert [s.shot_no for s in replayed] == [1, 2, 3, 4, 5]
    for old, new in zip(originals, replayed, strict=True):
        assert (new.set_milli, new.measured_milli, new.device_time_us, new.params) == (
            old.set_milli,
            old.measured_milli,
            old.device_time_us,
            old.params,
        )
    assert bench.link_events(EventGap, mark) == []

    bench.ok(ShotAck(3))
    assert bench.status().unacked == 2
    mark = bench.mark()
    assert bench.call(ShotsSince(0)) == ShotsPending(2)
    assert [s.shot_no for s in bench.shots(mark, replayed=True)] == [4, 5]
    mark = bench.mark()
    assert bench.call(ShotsSince(4)) == ShotsPending(1)
    assert [s.shot_no for s in bench.shots(mark, replayed=True)] == [5]
    bench.ok(ShotAck(5))
    assert bench.call(ShotsSince(0)) == ShotsPending(0)


@pytest.mark.req("SR-11")
def test_full_shot_buffer_disarms_until_acknowledged() -> None:
    bench = Bench(buffer_size=3)
    bench.prepare()
    bench.arm(grant=10)
    bench.inject("press")
    bench.run(1.0)
    assert len(bench.shots()) == 3
    fault = bench.faults()[-1]
    assert (fault.code, fault.latched, fault.value) == (FaultCode.SHOT_BUFFER_FULL, 0, 3)
    bench.inject("release")
    nak = bench.nak(Arm(10, 0))
    assert (nak.reason, nak.value) == (NakReason.BUSY, 3)
    bench.ok(ShotAck(3))
    bench.arm(grant=10)


@pytest.mark.req("SR-11")
def test_power_cycle_keeps_shot_counter_and_records() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm(grant=2)
    bench.inject("press")
    bench.run(0.5)
    old_boot = bench.info.boot_id
    mark = bench.mark()
    bench.inject("power cycle")
    boot = bench.events(mark)[0]
    assert isinstance(boot, Boot)
    assert boot.boot_id != old_boot
    body = bench.status()
    assert (body.state, body.shot_no, body.unacked) == (DeviceState.NOT_TESTED, 2, 2)
    assert bench.call(ShotsSince(0)) == ShotsPending(2)
    assert not any(f.code == FaultCode.REBOOTED for f in bench.faults(mark))
    bench.inject("release")
    bench.prepare()
    bench.arm(grant=1)
    bench.inject("press")
    bench.run(0.3)
    assert bench.shots()[-1].shot_no == 3


# ---- SR-15: reboot ------------------------------------------------------------------------------
@pytest.mark.req("SR-15")
def test_reboot_resets_shot_counter_and_announces_a_new_boot() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm(grant=3)
    bench.inject("press")
    bench.run(0.5)
    assert bench.status().shot_no == 3
    old_boot = bench.info.boot_id
    mark = bench.mark()
    bench.inject("reboot")
    events = bench.events(mark)
    assert isinstance(events[0], Boot)
    assert events[0].event_no == 1
    assert events[0].boot_id != old_boot
    assert [(f.code, f.latched) for f in bench.faults(mark)] == [(FaultCode.REBOOTED, 0)]
    body = bench.status()
    assert (body.state, body.shot_no, body.unacked) == (DeviceState.NOT_TESTED, 0, 0)
    assert bench.connect().boot_id == events[0].boot_id
    assert bench.call(ShotsSince(0)) == ShotsPending(0)


# ---- SR-16: link integrity at the device --------------------------------------------------------
@pytest.mark.req("SR-16")
def test_duplicate_arm_frame_is_not_executed_twice() -> None:
    bench = Bench()
    bench.prepare()
    arm = encode_frame(Arm.TYPE, 700, Arm(3, 0).pack())
    ack = encode_frame(Ack.TYPE, 700, Ack(Arm.TYPE).pack())
    bench.sim.receive(arm, bench.t)
    assert ack in bench.sim.output(bench.t)
    assert bench.sim.state is DeviceState.ARMED
    bench.inject("press")
    bench.run(0.5)  # fires the whole grant of 3 and disarms
    assert len(bench.shots()) == 3
    assert bench.sim.state is DeviceState.IDLE
    # The same ARM frame again (a late retransmission): answered from the cache, not re-armed.
    bench.sim.receive(arm, bench.t)
    assert bench.sim.output(bench.t) == ack  # the same answer again, and nothing else
    assert bench.sim.link.duplicates == 1
    bench.run(0.5)
    assert len(bench.shots()) == 3
    assert bench.status().state == DeviceState.IDLE


@pytest.mark.req("SR-16")
@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_damaged_arm_frame_is_never_acted_upon(damage: str) -> None:
    bench = Bench()
    bench.prepare()
    frame = bytearray(encode_frame(Arm.TYPE, 700, Arm(3, 0).pack()))
    if damage == "flip":
        frame[5] ^= 0x04
    else:
        del frame[len(frame) // 2 : -1]
    bench.sim.receive(bytes(frame), bench.t)
    assert bench.sim.output(bench.t) == b""  # not answered: it never arrived as a command
    assert bench.sim.link.rejected >= 1
    bench.inject("press")
    bench.run(0.3)
    assert bench.shots() == []
    assert bench.status().state == DeviceState.IDLE


# ---- SR-17: self test ---------------------------------------------------------------------------
@pytest.mark.req("SR-17")
@pytest.mark.parametrize("item", list(SelfTestItem))
def test_failed_self_test_latches_fault_naming_the_item(item: SelfTestItem) -> None:
    bench = Bench()
    bench.inject(f"fail {SELFTEST_WORD[item]}")
    mark = bench.mark()
    result = bench.self_test()
    assert result.passed == 0
    assert dict(result.items) == {i: int(i != item) for i in SelfTestItem}
    fault = bench.faults(mark)[0]
    assert (fault.code, fault.latched, fault.detail) == (FaultCode.SELF_TEST_FAILED, 1, item)
    assert bench.status().state == DeviceState.FAULT
    nak = bench.nak(Reset())
    assert (nak.reason, nak.detail, nak.value) == (
        NakReason.LATCHED,
        FaultCode.SELF_TEST_FAILED,
        item,
    )
    bench.inject(f"pass {SELFTEST_WORD[item]}")
    bench.ok(Reset())
    # The item was repaired, but nothing has shown that yet: a self test must pass again.
    assert bench.status().state == DeviceState.NOT_TESTED
    assert bench.nak(Arm(1, 0)).reason == NakReason.SELF_TEST_REQUIRED
    bench.prepare()
    bench.arm()


@pytest.mark.req("SR-17")
def test_unknown_interlock_input_fails_the_self_test() -> None:
    bench = Bench()
    bench.inject("unknown door")
    result = bench.self_test()
    assert result.passed == 0
    assert dict(result.items)[SelfTestItem.INTERLOCK_INPUTS] == 0
    assert bench.faults()[-1].detail == SelfTestItem.INTERLOCK_INPUTS


@pytest.mark.req("SR-17")
def test_fault_before_the_first_self_test_still_needs_one() -> None:
    bench = Bench()
    bench.inject("overheat")
    assert bench.status().state == DeviceState.FAULT
    bench.inject("cool")
    bench.ok(Reset())
    assert bench.status().state == DeviceState.NOT_TESTED
    assert bench.nak(Arm(1, 0)).reason == NakReason.SELF_TEST_REQUIRED


def test_self_test_refused_while_armed() -> None:
    bench = Bench()
    bench.prepare()
    bench.arm()
    nak = bench.nak(SelfTest())
    assert (nak.reason, nak.detail) == (NakReason.BAD_STATE, DeviceState.ARMED)


# ---- SR-20: temperature and cooling -------------------------------------------------------------
@pytest.mark.req("SR-20")
def test_overheat_latches_fault_until_cooled_and_reset() -> None:
    bench = armed_and_firing()
    mark, hot_at = bench.mark(), bench.t
    bench.inject("overheat")
    bench.run(0.5)
    assert bench.shots_after(hot_at) == []
    fault = bench.faults(mark)[0]
    assert (fault.code, fault.latched) == (FaultCode.OVERTEMP, 1)
    assert fault.value > OVERTEMP_C * 1000
    body = bench.status()
    assert (body.state, body.fault, body.emission) == (DeviceState.FAULT, FaultCode.OVERTEMP, 0)
    assert not body.is_closed(Interlock.TEMPERATURE)
    nak = bench.nak(Reset())
    assert (nak.reason, nak.detail, nak.value) == (
        NakReason.LATCHED,
        FaultCode.OVERTEMP,
        Interlock.TEMPERATURE,
    )
    bench.run(1.0)
    assert bench.nak(Reset()).reason == NakReason.LATCHED  # still hot a second later
    bench.inject("cool")
    assert bench.status().temp_mc == AMBIENT_C * 1000
    bench.ok(Reset())
    assert bench.status().state == DeviceState.IDLE
    bench.inject("release")
    bench.arm()


@pytest.mark.req("SR-20")
def test_cooling_failure_latches_fault_until_restored_and_reset() -> None:
    bench = armed_and_firing()
    mark, failed_at = bench.mark(), bench.t
    bench.inject("open cooling")
    bench.run(0.5)
    assert bench.shots_after(failed_at) == []
    fault = bench.faults(mark)[0]
    assert (fault.code, fault.latched) == (FaultCode.COOLING, 1)
    nak = bench.nak(Reset())
    assert (nak.reason, nak.detail, nak.value) == (
        NakReason.LATCHED,
        FaultCode.COOLING,
        Interlock.COOLING,
    )
    bench.inject("close cooling")
    bench.ok(Reset())
    assert bench.status().state == DeviceState.IDLE


@pytest.mark.req("SR-20")
def test_sustained_firing_heats_the_handpiece_until_it_stops_itself() -> None:
    bench = Bench()
    bench.prepare({**PARAMS[FRACTIONAL], Param.ENERGY_MJ: 70_000, Param.REP_RATE_HZ: 15_000})
    bench.arm(grant=100_000)
    bench.inject("press")
    bench.run(30.0, step=0.05)
    ((hot_at, fault),) = [
        (t, e.event)
        for t, e in bench.log
        if isinstance(e, DeviceEvent) and isinstance(e.event, Fault)
    ]
    assert (fault.code, fault.latched) == (FaultCode.OVERTEMP, 1)
    assert fault.value > OVERTEMP_C * 1000
    assert 150 < len(bench.shots()) < 450  # 0.08 degC a pulse, relaxing with tau 30 s
    assert bench.shots_after(hot_at) == []
    assert bench.status().state == DeviceState.FAULT


def test_thermal_model_relaxes_towards_ambient() -> None:
    bench = Bench()
    bench.inject("overheat")
    start = bench.status().temp_mc / 1000
    bench.run(30.0, step=0.05)
    now = bench.status().temp_mc / 1000
    expected = AMBIENT_C + (start - AMBIENT_C) * math.exp(-1)  # tau 30 s
    assert now == pytest.approx(expected, abs=0.05)
    # Temperature is back in range by now, but the latched fault still needs RESET.
    assert bench.status().state == DeviceState.FAULT
    bench.ok(Reset())


# ---- calibration pulses -------------------------------------------------------------------------
def meter_ratio(bench: Bench, set_milli: int, n: int = 20) -> float:
    ratios = []
    for _ in range(n):
        reading = bench.call(CalFire(set_milli))
        assert isinstance(reading, MeterReading)
        assert reading.set_milli == set_milli
        ratios.append(reading.measured_milli / set_milli)
    return sum(ratios) / n


@pytest.mark.parametrize("handpiece", HANDPIECES)
def test_cal_fire_reads_near_the_set_value(handpiece: str) -> None:
    bench = Bench(handpiece)
    bench.prepare()
    dose = bench.sim.model.dose_param
    reading = bench.call(CalFire(PARAMS[handpiece][dose]))
    assert isinstance(reading, MeterReading)
    assert reading.measured_milli == pytest.approx(PARAMS[handpiece][dose], rel=0.07)
    assert meter_ratio(bench, PARAMS[handpiece][dose]) == pytest.approx(1.0, abs=0.015)
    assert bench.shots() == []  # test pulses into the internal meter are not treatment shots


@pytest.mark.parametrize(("command", "ratio"), [("drift 25", 1.25), ("drift -8", 0.92)])
def test_cal_fire_follows_drift(command: str, ratio: float) -> None:
    bench = Bench()
    bench.prepare()
    bench.inject(command)
    assert meter_ratio(bench, 30_000) == pytest.approx(ratio, abs=0.02)


def test_cal_fire_follows_gain() -> None:
    bench = Bench()
    bench.prepare()
    bench.inject("gain 1.1")
    assert meter_ratio(bench, 30_000) == pytest.approx(1.1, abs=0.02)
    bench.inject("gain 1")
    assert meter_ratio(bench, 30_000) == pytest.approx(1.0, abs=0.02)


def test_cal_fire_refusals() -> None:
    bench = Bench()
    assert bench.nak(CalFire(20_000)).reason == NakReason.BAD_STATE  # not self-tested
    bench.prepare()
    nak = bench.nak(CalFire(70_001))
    assert (nak.reason, nak.detail, nak.value) == (
        NakReason.OUT_OF_RANGE,
        Param.ENERGY_MJ,
        70_001,
    )
    bench.inject("open skin")  # the beam stays inside the handpiece: no skin contact needed
    assert isinstance(bench.call(CalFire(20_000)), MeterReading)
    bench.inject("open shutter")
    nak = bench.nak(CalFire(20_000))
    assert (nak.reason, nak.detail) == (NakReason.INTERLOCK_OPEN, Interlock.SHUTTER)
    bench.inject("close shutter")
    bench.inject("close skin")
    bench.arm()
    assert bench.nak(CalFire(20_000)).reason == NakReason.BAD_STATE


# ---- fault injection ----------------------------------------------------------------------------
def known(body: StatusBody, interlock: Interlock) -> bool:
    return bool(body.known & (1 << interlock))


@pytest.mark.parametrize(("handpiece", "interlock"), interlock_cases())
def test_open_close_unknown_each_interlock(handpiece: str, interlock: Interlock) -> None:
    bench = Bench(handpiece)
    word = INTERLOCK_WORD[interlock]
    assert bench.status().is_closed(interlock)
    bench.inject(f"open {word}")
    body = bench.status()
    assert known(body, interlock)
    assert not body.is_closed(interlock)
    bench.inject(f"close {word}")
    assert bench.status().is_closed(interlock)
    bench.inject(f"unknown {word}")
    body = bench.status()
    assert not known(body, interlock)
    assert not body.is_closed(interlock)
    bench.inject(f"close {word}")
    assert bench.status().is_closed(interlock)


@pytest.mark.parametrize(
    ("command", "interlock"),
    [
        ("open remote", Interlock.DOOR),
        ("OPEN Door", Interlock.DOOR),
        ("open e-stop", Interlock.ESTOP),
        ("open skin_contact", Interlock.SKIN_CONTACT),
    ],
)
def test_interlock_aliases_and_case(command: str, interlock: Interlock) -> None:
    bench = Bench()
    bench.inject(command)
    assert not bench.status().is_closed(interlock)


def test_footswitch_commands() -> None:
    bench = Bench()
    for command, pressed in [
        ("press", 1),
        ("release", 0),
        ("press footswitch", 1),
        ("release footswitch", 0),
        ("stick footswitch", 1),
        ("unstick footswitch", 0),
    ]:
        bench.inject(command)
        assert bench.status().footswitch == pressed, command


def test_estop_button_commands() -> None:
    bench = Bench()
    bench.inject("estop")
    body = bench.status()
    assert (body.state, body.is_closed(Interlock.ESTOP)) == (DeviceState.ESTOP, False)
    bench.inject("release estop")
    body = bench.status()
    assert (body.state, body.is_closed(Interlock.ESTOP)) == (DeviceState.ESTOP, True)


def test_overheat_and_cool_commands() -> None:
    bench = Bench()
    bench.inject("overheat")
    assert bench.status().temp_mc > OVERTEMP_C * 1000
    bench.inject("cool")
    assert bench.status().temp_mc == AMBIENT_C * 1000


@pytest.mark.parametrize(
    "command",
    [
        "",
        "explode",
        "open",
        "open window",
        "open aiming",  # a fractional handpiece has no aiming beam
        "fail laser",
        "corrupt many",
        "delay soon",
        "drift lots",
        "gain x",
        "press harder",
    ],
)
def test_unknown_injection_raises_and_is_refused_over_the_wire(command: str) -> None:
    bench = Bench()
    before = bench.status()
    with pytest.raises(InjectionError):
        bench.sim.inject(command, bench.t)
    nak = bench.nak(SimControl(command))
    assert (nak.command, nak.reason) == (SimControl.TYPE, NakReason.MALFORMED)
    after = bench.status()
    assert (after.state, after.closed, after.known, after.footswitch) == (
        before.state,
        before.closed,
        before.known,
        before.footswitch,
    )


def test_injection_over_sim_control() -> None:
    bench = Bench()
    bench.ok(SimControl("open door"))
    assert not bench.status().is_closed(Interlock.DOOR)
    bench.ok(SimControl("close door"))
    assert bench.status().is_closed(Interlock.DOOR)


def test_pull_cable_drops_everything_but_sim_control_until_replug() -> None:
    bench = Bench()
    bench.prepare()
    bench.ok(SimControl("pull cable"))
    mark = bench.mark()
    seq = bench.send(GetStatus())
    bench.inject("open door")  # a status change the host must not hear about
    bench.run(0.3)
    assert seq not in bench.replies
    assert bench.link_events(CommandFailed, mark)
    assert bench.link_events(LinkSilent, mark)
    assert bench.events(mark) == []
    # SIM_CONTROL still gets through (once the commands ahead of it have failed)...
    assert bench.call(SimControl("replug"), wait=0.5) == Ack(SimControl.TYPE)
    # ...and after replug everything does; the event lost meanwhile shows up as a gap.
    assert not bench.status().is_closed(Interlock.DOOR)
    bench.inject("close door")
    assert bench.link_events(EventGap, mark)
    assert bench.statuses(mark)[-1].is_closed(Interlock.DOOR)


def test_command_retransmitted_after_replug_is_answered() -> None:
    bench = Bench()
    bench.inject("pull cable")
    seq = bench.send(GetStatus())  # lost on the pulled cable
    bench.run(0.02)
    bench.inject("replug")
    bench.run(0.1)  # the host's retry (after 50 ms) reaches the device
    assert isinstance(bench.replies.get(seq), Status)


def test_pulled_cable_trips_the_watchdog_and_keeps_the_shots() -> None:
    bench = armed_and_firing()
    seen = bench.shots()[-1].shot_no
    pulled_at = bench.t
    bench.inject("pull cable")
    bench.run(0.6)  # the host's heartbeats are lost on the cable
    bench.inject("replug")
    status = bench.call(GetStatus(), wait=0.3)  # behind the retries of a lost heartbeat
    assert isinstance(status, Status)
    body = status.body
    assert (body.state, body.fault, body.emission) == (DeviceState.IDLE, FaultCode.NONE, 0)
    # Shots fired after the pull never reached the host; the device kept them.
    assert bench.shots()[-1].shot_no == seen
    mark = bench.mark()
    pending = bench.call(ShotsSince(seen))
    replayed = bench.shots(mark, replayed=True)
    assert pending == ShotsPending(len(replayed))
    assert [s.shot_no for s in replayed] == list(range(seen + 1, body.shot_no + 1))
    assert replayed, "pulses were due between the pull and the watchdog"
    expiry = pulled_at + WATCHDOG_S
    assert all(s.device_time_us <= expiry * 1e6 for s in replayed)  # boot time is 0


@pytest.mark.parametrize("command", ["corrupt 1", "corrupt 3", "truncate 1", "garbage 40"])
def test_output_shaping_is_rejected_then_recovered(command: str) -> None:
    bench = Bench()
    bench.inject(command)
    mark = bench.mark()
    response = bench.call(GetStatus(), wait=0.3)  # the host's retries get through
    assert isinstance(response, Status)
    assert bench.link_events(FrameRejected, mark)
    mark = bench.mark()
    assert isinstance(bench.call(GetStatus()), Status)  # clean again, at once
    assert bench.link_events(FrameRejected, mark) == []


def test_delay_holds_replies_and_events() -> None:
    bench = Bench()
    bench.inject("delay 100")
    start = bench.t
    seq = bench.send(GetStatus())
    bench.inject("open door")
    bench.run(0.15, step=0.001)
    answered = next(t for t, e in bench.log if isinstance(e, Reply) and e.seq == seq)
    assert answered == pytest.approx(start + 0.1, abs=0.0015)
    changed = next(t for t, e in bench.log if isinstance(e, DeviceEvent) and t > start)
    assert changed == pytest.approx(start + 0.1, abs=0.0015)
    bench.inject("delay 0")
    # Bytes already held keep their order; after them nothing waits any more.
    assert isinstance(bench.call(GetStatus(), wait=0.2), Status)
    mark = bench.mark()
    bench.inject("close door")
    assert bench.statuses(mark), "no delay after delay 0"


# ---- property: whatever happens, never a pulse it should not fire -------------------------------
INJECTIONS = [
    *(
        f"{verb} {word}"
        for verb in ("open", "close")
        for word in ("key", "door", "skin", "shutter")
    ),
    "unknown door",
    "open cooling",
    "close cooling",
    "press",
    "release",
    "stick footswitch",
    "unstick footswitch",
    "estop",
    "release estop",
    "pull cable",
    "replug",
    "drift 30",
    "drift 0",
    "reboot",
    "power cycle",
]
COMMANDS: dict[str, Command] = {
    "self_test": SelfTest(),
    "reset": Reset(),
    "disarm": Disarm(),
    "estop": EStop(),
    "set": SetParams(tuple((int(p), v) for p, v in PARAMS[FRACTIONAL].items())),
}
ACTION = st.one_of(
    # The operator's cycle, most often: release, ARM, press.
    st.tuples(st.just("fire"), st.integers(1, 6), st.sampled_from([0, 50, 300])),
    st.tuples(st.just("wait"), st.sampled_from([0.02, 0.08, 0.15, 0.4])),
    st.tuples(st.just("inject"), st.sampled_from(INJECTIONS)),
    st.tuples(st.just("command"), st.sampled_from(sorted(COMMANDS))),
)


@dataclass
class Truth:
    """What the test did to the inputs, kept apart from the simulator's own bookkeeping."""

    open_since: dict[str, float] = field(default_factory=dict)
    pressed: set[str] = field(default_factory=set)  # "pedal", "stuck"
    released_since: float | None = 0.0
    forbidden: list[tuple[float, float]] = field(default_factory=list)  # (from, to]

    def apply(self, command: str, t: float) -> None:
        words = command.split()
        if words[0] in ("open", "unknown") or command == "estop":
            name = "estop" if command == "estop" else words[1]
            self.open_since.setdefault(name, t)
        elif words[0] == "close" or command == "release estop":
            name = "estop" if command == "release estop" else words[1]
            if name in self.open_since:
                self.forbidden.append((self.open_since.pop(name), t))
        elif command in ("press", "stick footswitch", "release", "unstick footswitch"):
            was_down = bool(self.pressed)
            key = "pedal" if command in ("press", "release") else "stuck"
            if command in ("press", "stick footswitch"):
                self.pressed.add(key)
            else:
                self.pressed.discard(key)
            if was_down and not self.pressed:
                self.released_since = t
            elif not was_down and self.pressed and self.released_since is not None:
                self.forbidden.append((self.released_since, t))
                self.released_since = None

    def close_all(self, t: float) -> None:
        for since in self.open_since.values():
            self.forbidden.append((since, t))
        if self.released_since is not None:
            self.forbidden.append((self.released_since, t))


@pytest.mark.req("SR-01")
@pytest.mark.req("SR-05")
@pytest.mark.req("SR-08")
@given(st.lists(ACTION, min_size=1, max_size=30), st.integers(0, 2**16))
def test_property_random_sequences_never_fire_when_they_must_not(
    actions: list[tuple], seed: int
) -> None:
    bench = Bench(seed=seed)
    bench.prepare()
    truth = Truth()
    for action in actions:
        kind = action[0]
        if kind == "inject":
            truth.apply(action[1], bench.t)
            bench.inject(action[1])
        elif kind == "fire":
            for text in ("release", "unstick footswitch"):
                truth.apply(text, bench.t)
                bench.inject(text)
            bench.send(Arm(action[1], action[2]))
            truth.apply("press", bench.t)
            bench.inject("press")
        elif kind == "command":
            bench.send(COMMANDS[action[1]])
        bench.run(action[1] if kind == "wait" else 0.01, step=0.01)
    bench.run(0.5, step=0.01)
    truth.close_all(bench.t)

    # Never while an interlock was open or the footswitch up (pulses at the instant an input
    # changed were due before the change took effect).
    for shot in bench.fired:
        for start, end in truth.forbidden:
            assert not start + EPS < shot.at <= end + EPS, (shot, start, end)

    # Never beyond the grant, never before the ready delay, and the emission indicator is on
    # before every pulse (unless the link itself lost events, as a pulled cable does).
    grant = 0
    ready_at = math.inf
    emission: bool | None = False
    timed = iter(bench.fired)
    for t, event in bench.log:
        if isinstance(event, Reply) and isinstance(event.command, Arm):
            if event.response == Ack(Arm.TYPE):
                grant = event.command.grant
                ready_at = t + event.command.delay_ms / 1000 + EMISSION_LEAD_S
        elif isinstance(event, EventGap):
            emission = None
        elif isinstance(event, DeviceEvent):
            device_event = event.event
            if isinstance(device_event, StatusChanged):
                emission = bool(device_event.body.emission)
            elif isinstance(device_event, Boot):
                emission = False
            elif isinstance(device_event, Shot) and not device_event.flags & Shot.FLAG_REPLAY:
                fired = next(timed)
                grant -= 1
                assert grant >= 0, f"pulse {device_event.shot_no} beyond the grant"
                assert fired.at >= ready_at - EPS, "pulse before the ready delay"
                assert emission is not False, "pulse without the emission indicator"
