"""The simulated handpiece: a firmware model, not an echo.

It enforces its own interlocks whatever the host does: it never fires unless armed, every
interlock of the handpiece closed, the footswitch pressed, the ready delay elapsed and pulses
left in the grant. It runs the dead-man watchdog, keeps a shot counter and a bounded buffer of
unacknowledged shot records that survives host reconnects. What each command does (self test,
ARM, RESET ...) is commands.py; this is the state those handlers read and change, and what
happens by itself as time passes. Fault injection (faults.py) comes in as typed operations.

Time is injected: every entry point takes ``now`` (seconds), so tests are deterministic and fast.
The same object is served in-process, over a pty, over TCP and as a USB device (serve.py).
"""

from __future__ import annotations

import dataclasses
import random
from collections import deque
from collections.abc import Callable

from drivers.protocol import (
    Boot,
    Command,
    DeviceLink,
    DeviceState,
    Fault,
    FaultCode,
    HandpieceType,
    Interlock,
    Param,
    SelfTestItem,
    Shot,
    ShotsPending,
    ShotsSince,
    SimControl,
    StatusBody,
    StatusChanged,
)

from . import faults
from .commands import LATCHING, answer
from .models import AMBIENT_C, MODELS, EnergySource, Thermal

WATCHDOG_S = 0.250  # SR-09
EMISSION_LEAD_S = 0.010  # emission indicator on at least this long before the first pulse
ENERGY_FAULT = 0.20  # the device's own energy monitor trips beyond +-20 % (SR-06)
SHOT_BUFFER = 4096


class SimulatedHandpiece:
    """One handpiece: bytes in by receive(), bytes out by output(), time by tick()."""

    def __init__(
        self,
        handpiece: HandpieceType | str,
        *,
        serial: str | None = None,
        seed: int = 0,
        now: float = 0.0,
        gain: float = 1.0,
        watchdog_s: float = WATCHDOG_S,
        buffer_size: int = SHOT_BUFFER,
    ) -> None:
        if isinstance(handpiece, str):
            handpiece = HandpieceType.from_slug(handpiece)
        self.model = MODELS[handpiece]
        self.rng = random.Random(seed)
        self.serial = serial or f"{self.model.serial_prefix}-{seed % 100000:05d}"
        self.watchdog_s = watchdog_s
        self.energy = EnergySource(self.rng, gain)
        self.thermal = Thermal()
        self.inputs: dict[Interlock, bool | None] = {i: True for i in self.model.interlocks}
        self.footswitch = False
        self.footswitch_stuck = False
        self.selftest_failures: set[SelfTestItem] = set()
        self.shot_no = 0  # kept in non-volatile memory: survives a power cycle
        self.unacked: deque[Shot] = deque()
        self.buffer_size = buffer_size
        self.shaper = faults.OutputShaper(self.rng)
        self.link_up = True
        self.boots = 0
        self._boot(now)

    # ---- power ----------------------------------------------------------------------------------
    def _boot(self, now: float) -> None:
        self.link = DeviceLink()
        self.boots += 1
        self.boot_id = self.rng.getrandbits(32) or 1
        self.boot_time = now
        self.now = now
        self.event_no = 0
        self.state = DeviceState.NOT_TESTED
        self.self_tested = False  # a self test passed since power-up or the last e-stop reset
        self.fault = FaultCode.NONE
        self.params: dict[Param, int] = {}
        # The model and parameters of the last pulse, and what follows from them: the SHOT
        # record's params, pulse duration, heat per pulse (a burst fires one parameter set).
        self._pulse_of: tuple[object, tuple[tuple[int, int], ...], float, float] | None = None
        self.grant = 0
        self.ready_at = now
        self.next_pulse = now
        self.emission = False
        self.last_rx: float | None = None
        self._reported: tuple[int, ...] | None = None
        self._emit(lambda n: Boot(n, self.boot_id))
        self._report_status()

    def power_cycle(self, now: float, *, lose_counter: bool = False) -> None:
        """Reboot. With lose_counter the shot counter and its buffer are lost (a fault)."""
        if lose_counter:
            self.shot_no = 0
            self.unacked.clear()
        self._boot(now)
        if lose_counter:
            self.report_fault(FaultCode.REBOOTED, latched=False)

    # ---- bytes in, bytes out --------------------------------------------------------------------
    def receive(self, data: bytes, now: float) -> None:
        self._advance(now)
        valid = self.link.receive_data(data)
        while (incoming := self.link.next_command()) is not None:
            command = incoming.command
            if not self.link_up and not isinstance(command, SimControl):
                # The cable is "pulled": nothing but the trainer's control gets through, and a
                # retransmission after replug must find the command not received at all.
                self.link.forget(incoming.seq)
                continue
            if self.link_up:
                self.last_rx = now
            self._execute(incoming.seq, command, now)
        if valid and self.link_up:
            self.last_rx = now
        self._report_status()

    def tick(self, now: float) -> None:
        self._advance(now)
        self._report_status()

    def output(self, now: float) -> bytes:
        data = self.link.data_to_send()
        return self.shaper.shape_output(data, now)

    def next_deadline(self) -> float:
        """When tick() must next be called for pulses and the watchdog to be on time."""
        deadlines = [self.now + 0.05]
        if self.state is DeviceState.EMITTING:
            deadlines.append(self.next_pulse)
        elif self.state is DeviceState.ARMED and self.ready_at > self.now:
            # Once ready, nothing is due until an input changes (the footswitch): a ready time
            # in the past here made every serving loop spin while ARMED.
            deadlines.append(self.ready_at)
        if self.last_rx is not None and self.state in (DeviceState.ARMED, DeviceState.EMITTING):
            deadlines.append(self.last_rx + self.watchdog_s)
        held = self.shaper.next_release()
        if held is not None:
            deadlines.append(held)
        return min(deadlines)

    # ---- the model ------------------------------------------------------------------------------
    def _advance(self, now: float) -> None:
        now = max(now, self.now)
        self.thermal.advance(now)
        if (
            self.last_rx is not None
            and now - self.last_rx > self.watchdog_s
            and self.state in (DeviceState.ARMED, DeviceState.EMITTING)
        ):
            # Pulses due before the watchdog expired still fire, none after it.
            self._fire_until(min(now, self.last_rx + self.watchdog_s))
            self.stop_emission(DeviceState.IDLE)
            self.report_fault(FaultCode.WATCHDOG, latched=False, value=int(self.watchdog_s * 1000))
        self.now = now
        self._check_inputs()
        self._fire_until(now)

    def _fire_until(self, now: float) -> None:
        if self.state in (DeviceState.ARMED, DeviceState.EMITTING):
            gate = self.footswitch_down() and now >= self.ready_at
            if self.state is DeviceState.ARMED and gate:
                self.state = DeviceState.EMITTING
                self.emission = True  # SR-05: the indication goes out before the first pulse
                self._report_status()
                self.next_pulse = max(now, self.ready_at) + EMISSION_LEAD_S
            elif self.state is DeviceState.EMITTING and not self.footswitch_down():
                self.state = DeviceState.ARMED
                self.emission = False
        while self.state is DeviceState.EMITTING and self.next_pulse <= now:
            self._fire(self.next_pulse)
            self.next_pulse += 1.0 / (self.params[Param.REP_RATE_HZ] / 1000.0)

    def _fire(self, t: float) -> None:
        dose = self.model.dose_param
        set_milli = self.params[dose]
        delivered = self.energy.deliver(set_milli / 1000.0)
        key = (self.model, tuple(self.params.items()))
        if self._pulse_of is None or self._pulse_of[0] != key:
            values = {p: v / 1000.0 for p, v in key[1]}
            self._pulse_of = (
                key,
                tuple(sorted((int(p), v) for p, v in key[1])),
                self.model.pulse_us(values),
                self.model.heat_per_pulse_c(values),
            )
        _, params, pulse_us, heat_c = self._pulse_of
        self.shot_no += 1
        self.grant -= 1
        shot = Shot(
            event_no=self._next_event_no(),
            shot_no=self.shot_no,
            device_time_us=int((t - self.boot_time) * 1e6),
            flags=0,
            dose_param=dose,
            set_milli=set_milli,
            measured_milli=round(delivered * 1000),
            pulse_us=round(pulse_us * (1 + self.rng.gauss(0, 0.01))),
            params=params,
        )
        self.unacked.append(shot)
        self.link.emit(shot)
        if not self.link_up:
            self.link.discard_output()  # lost on the pulled cable; the record stays in the buffer
        self.thermal.pulse(heat_c)
        deviation = delivered / (set_milli / 1000.0) - 1.0
        if abs(deviation) > ENERGY_FAULT:
            self.stop_emission(DeviceState.FAULT, FaultCode.ENERGY_DEVIATION)
            self.report_fault(
                FaultCode.ENERGY_DEVIATION, latched=True, value=round(deviation * 1000)
            )
        elif self.grant <= 0:
            self.stop_emission(DeviceState.IDLE)
            self.report_fault(FaultCode.GRANT_EXHAUSTED, latched=False)
        elif len(self.unacked) >= self.buffer_size:
            self.stop_emission(DeviceState.IDLE)
            self.report_fault(FaultCode.SHOT_BUFFER_FULL, latched=False, value=len(self.unacked))

    def footswitch_down(self) -> bool:
        return self.footswitch or self.footswitch_stuck

    def is_closed(self, interlock: Interlock) -> bool:
        return self.inputs.get(interlock) is True  # unknown (None) counts as open

    def first_open(self, ignore: frozenset[Interlock] = frozenset()) -> Interlock | None:
        for interlock in sorted(self.model.interlocks):
            if interlock not in ignore and not self.is_closed(interlock):
                return interlock
        return None

    def _check_inputs(self) -> None:
        """Derived inputs, then the hard interlocks: an open one stops emission at once."""
        if Interlock.TEMPERATURE in self.inputs and self.inputs[Interlock.TEMPERATURE] is not None:
            self.inputs[Interlock.TEMPERATURE] = self.thermal.in_range
        self.thermal.cooling_ok = self.is_closed(Interlock.COOLING)
        for interlock, code in LATCHING.items():
            if not self.is_closed(interlock) and self.state not in (
                DeviceState.FAULT,
                DeviceState.ESTOP,
            ):
                self.stop_emission(DeviceState.FAULT, code)
                self.report_fault(code, latched=True, value=round(self.thermal.temp_c * 1000))
        if not self.is_closed(Interlock.ESTOP) and self.state is not DeviceState.ESTOP:
            self.stop_emission(DeviceState.ESTOP, FaultCode.ESTOP)
            self.report_fault(FaultCode.ESTOP, latched=True)
        if self.state in (DeviceState.ARMED, DeviceState.EMITTING):
            opened = self.first_open()
            if opened is not None:
                self.stop_emission(DeviceState.IDLE)
                self.report_fault(FaultCode.INTERLOCK_OPENED, latched=False, detail=opened)

    def stop_emission(self, state: DeviceState, fault: FaultCode = FaultCode.NONE) -> None:
        self.state = state
        self.emission = False
        self.grant = 0
        if fault is not FaultCode.NONE:
            self.fault = fault

    # ---- events ---------------------------------------------------------------------------------
    def _next_event_no(self) -> int:
        self.event_no += 1
        return self.event_no

    def _emit(self, make: Callable[[int], Shot | StatusChanged | Fault | Boot]) -> None:
        event = make(self._next_event_no())
        self.link.emit(event)
        if not self.link_up:
            self.link.discard_output()

    def report_fault(
        self, code: FaultCode, *, latched: bool, detail: int = 0, value: int = 0
    ) -> None:
        self._emit(lambda n: Fault(n, code, int(latched), detail, value))
        self._report_status()

    def _interlock_bits(self) -> tuple[int, int]:
        """(closed, known): a bit per interlock input, as STATUS carries them."""
        closed = known = 0
        for interlock, value in self.inputs.items():
            if value is not None:
                known |= 1 << interlock
                if value:
                    closed |= 1 << interlock
        return closed, known

    def status(self) -> StatusBody:
        closed, known = self._interlock_bits()
        return StatusBody(
            state=self.state,
            closed=closed,
            known=known,
            footswitch=int(self.footswitch_down()),
            emission=int(self.emission),
            grant_remaining=self.grant,
            shot_no=self.shot_no,
            unacked=min(len(self.unacked), 0xFFFF),
            temp_mc=round(self.thermal.temp_c * 1000),
            fault=self.fault,
            event_no=self.event_no,
            device_time_us=int((self.now - self.boot_time) * 1e6),
        )

    def _report_status(self) -> None:
        """A STATUS_CHANGED event whenever a discrete field changed (not for temperature drift).
        Called after every step: the whole status is built only when it goes out."""
        closed, known = self._interlock_bits()
        signature = (
            self.state,
            closed,
            known,
            int(self.footswitch_down()),
            int(self.emission),
            self.fault,
        )
        if signature != self._reported:
            self._reported = signature
            body = self.status()
            self._emit(lambda n: StatusChanged(n, dataclasses.replace(body, event_no=n)))

    # ---- commands -------------------------------------------------------------------------------
    def _execute(self, seq: int, command: Command, now: float) -> None:
        response = answer(self, command, now)
        self.link.respond(seq, response)
        if isinstance(command, ShotsSince) and isinstance(response, ShotsPending):
            for shot in [s for s in self.unacked if s.shot_no > command.after_shot]:
                self._emit(_replay(shot))
        if not self.link_up and not isinstance(command, SimControl):
            self.link.discard_output()  # on a pulled cable only the trainer's control answers

    # ---- fault injection ------------------------------------------------------------------------
    def inject(self, text: str, now: float) -> None:
        """Apply a fault-injection command (docs/protocol.md 14); InjectionError if it is none."""
        self._advance(now)  # time passes first, even for a command that turns out not to be one
        self.apply(faults.parse_injection(text, self.model), now)

    def apply(self, injection: faults.Injection, now: float) -> None:
        """Carry out one fault-injection operation (faults.py) at `now`."""
        self._advance(now)
        match injection:
            case faults.SetInterlock(interlock, closed):
                self.inputs[interlock] = closed
                # The temperature input follows the thermal model, so move the temperature.
                if interlock is Interlock.TEMPERATURE and closed is True:
                    self.thermal.temp_c = min(self.thermal.temp_c, AMBIENT_C)
                elif interlock is Interlock.TEMPERATURE and closed is False:
                    self.thermal.temp_c = max(self.thermal.temp_c, faults.OVERHEATED_C)
            case faults.SetFootswitch(pressed):
                self.footswitch = pressed
            case faults.StickFootswitch(stuck):
                self.footswitch_stuck = stuck
            case faults.SetCable(plugged):
                self.link_up = plugged
                if not plugged:
                    self.link.discard_output()
            case faults.SetDrift(fraction):
                self.energy.drift = fraction
            case faults.SetGain(gain):
                self.energy.gain = gain
            case faults.SetTemperature(temp_c):
                self.thermal.temp_c = temp_c
            case faults.SetSelfTestItem(item, fails):
                (self.selftest_failures.add if fails else self.selftest_failures.discard)(item)
            case faults.PowerCycle(lose_counter):
                self.power_cycle(now, lose_counter=lose_counter)
            case _:  # what is left is an OutputFault (mypy checks it is)
                self.shaper.apply(injection)
        self._advance(now)
        self._report_status()


def _replay(shot: Shot) -> Callable[[int], Shot]:
    return lambda n: dataclasses.replace(shot, event_no=n, flags=Shot.FLAG_REPLAY)
