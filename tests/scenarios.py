"""Host-and-simulator scenarios, written once and run over every transport.

A Rig is one simulated handpiece behind one transport: the simulator in its own process on a
real pty, the same on TCP (socket://), or in this process as a USB device through the pyusb
backend (usb: with LASERCTL_USB_BACKEND=sim). Each scenario drives it with the real host
(drivers.host.HandpieceConnection) and only through the URL, except for taking the link away,
which each rig does its own way. tests/test_transport_scenarios.py runs every scenario on every
rig; waits poll against deadlines.
"""

from __future__ import annotations

import math
import os
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path

from drivers.host import (
    CommandRefused,
    HandpieceConnection,
    Notification,
    Reconnected,
    TransportLost,
)
from drivers.protocol import (
    PROTOCOL_VERSION,
    Ack,
    Arm,
    DeviceEvent,
    DeviceState,
    Disarm,
    Fault,
    FaultCode,
    FrameDecoder,
    GetStatus,
    HandpieceType,
    LinkSilent,
    Nak,
    NakReason,
    Param,
    SelfTest,
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
    decode_message,
    encode_frame,
)
from drivers.protocol.framing import Frame
from drivers.transport import Transport, open_transport

ROOT = Path(__file__).resolve().parent.parent
# The installed console script when there is one (.venv/bin/laserctl), as a user runs it.
_SCRIPT = Path(sys.executable).with_name("laserctl")
LASERCTL = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "laserctl"]
REP_RATE_HZ = 15.0
PARAMS = {
    Param.ENERGY_MJ: 12_000,
    Param.DENSITY_PCT: 10_000,
    Param.DEPTH_UM: 600_000,
    Param.PASSES: 2_000,
    Param.REP_RATE_HZ: int(REP_RATE_HZ * 1000),
}  # fractional-1550, well inside its capability; thousandths of each unit


# ---- watching what the connection reports -------------------------------------------------------
class Recorder:
    """Every notification of a connection, kept in order, with waits on a condition."""

    def __init__(self) -> None:
        self.items: list[Notification] = []
        self._cond = threading.Condition()

    def __call__(self, item: Notification) -> None:
        with self._cond:
            self.items.append(item)
            self._cond.notify_all()

    def wait_for(
        self, match: Callable[[Notification], bool], timeout: float = 3.0, what: str = ""
    ) -> Notification:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for item in self.items:
                    if match(item):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"no {what or 'matching notification'} in {timeout} s")
                self._cond.wait(left)

    def shots(self, *, replayed: bool = False) -> list[Shot]:
        with self._cond:
            return [
                item.event
                for item in self.items
                if isinstance(item, DeviceEvent)
                and isinstance(item.event, Shot)
                and bool(item.event.flags & Shot.FLAG_REPLAY) == replayed
            ]

    def wait_for_shots(
        self, count: int, *, replayed: bool = False, timeout: float = 3.0
    ) -> list[Shot]:
        self.wait_for(
            lambda _: len(self.shots(replayed=replayed)) >= count, timeout, f"{count} shots"
        )
        return self.shots(replayed=replayed)


def is_event(
    kind: type, check: Callable[[object], bool] = lambda _: True
) -> Callable[[Notification], bool]:
    return lambda n: isinstance(n, DeviceEvent) and isinstance(n.event, kind) and check(n.event)


def poll(condition: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.01)


# ---- rigs ---------------------------------------------------------------------------------------
class Rig:
    """One simulated fractional-1550 handpiece behind one transport."""

    name = "rig"
    url = ""
    serial = ""

    def connect(
        self,
        recorder: Recorder,
        *,
        reconnect: bool = False,
        opener: Callable[[str], Transport] = open_transport,
    ) -> HandpieceConnection:
        connection = HandpieceConnection(
            self.url, on_event=recorder, reconnect=reconnect, opener=opener
        )
        connection.open()
        return connection

    def break_link(self, connection: HandpieceConnection) -> None:
        """Take the link away under a live connection."""
        raise NotImplementedError

    def restore_link(self) -> None:
        """Give it back (the connection reconnects by itself)."""

    def close(self) -> None:
        """Stop the simulator."""


class SimProcessRig(Rig):
    """`laserctl sim` in its own process, on a pty or on TCP."""

    def __init__(self, listen: str, serial: str) -> None:
        self.name = listen
        self.serial = serial
        self.proc = subprocess.Popen(
            [*LASERCTL, "sim", "--handpiece", "fractional-1550",
             "--listen", "pty" if listen == "pty" else "tcp:0", "--serial", serial, "--seed", "7"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=ROOT,
        )  # fmt: skip
        try:
            first = self._first_line(timeout=10.0)
            kind, _, value = first.partition(": ")
            if kind not in ("pty", "url"):
                raise RuntimeError(f"laserctl sim printed {first!r} as its first line")
        except BaseException:
            self.close()
            raise
        self.url = value

    def _first_line(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        fd, line, deadline = self.proc.stdout.fileno(), b"", time.monotonic() + timeout
        while not line.endswith(b"\n"):
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise RuntimeError(f"laserctl sim said nothing in {timeout} s")
            chunk = os.read(fd, 1)
            if not chunk:
                raise RuntimeError("laserctl sim exited before saying where it listens")
            line += chunk
        return line.decode().strip()

    def break_link(self, connection: HandpieceConnection) -> None:
        transport = connection.transport
        assert transport is not None
        if self.name == "tcp":
            # The peer is gone: the socket stays open, reads find it disconnected.
            transport._port._socket.shutdown(socket.SHUT_RDWR)  # type: ignore[attr-defined]
        else:
            # The host's port goes away under the reader thread (a pulled USB-serial adapter).
            transport.close()

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=3)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


class UsbRig(Rig):
    """The first handpiece of a fresh simulated USB bus, through pyusb (usb:)."""

    name = "usb"
    url = "usb:"

    def __init__(self) -> None:
        from drivers.sim.usb_backend import current_bus, install_bus

        install_bus(None)  # a fresh bus: new firmware, shot counters at zero
        self.device = current_bus().devices[0]
        self.serial = self.device.serial

    def break_link(self, connection: HandpieceConnection) -> None:
        self.device.unplug()

    def restore_link(self) -> None:
        self.device.replug()

    def close(self) -> None:
        from drivers.sim.usb_backend import install_bus

        install_bus(None)


# ---- a transport that shows what crossed it -----------------------------------------------------
class TapTransport:
    """Wraps a transport: keeps every byte read, and lets a test put its own bytes on the wire."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.description = inner.description
        self.received = bytearray()
        self._lock = threading.Lock()

    def write(self, data: bytes) -> None:
        with self._lock:
            self.inner.write(data)

    def inject(self, data: bytes) -> None:
        self.write(data)

    def read(self, timeout: float) -> bytes:
        data = self.inner.read(timeout)
        with self._lock:
            self.received += data
        return data

    def close(self) -> None:
        self.inner.close()

    def frames(self) -> list[Frame]:
        decoder = FrameDecoder()
        with self._lock:
            decoder.feed(bytes(self.received))
        out = []
        while (item := decoder.next()) is not None:
            if isinstance(item, Frame):
                out.append(item)
        return out


# ---- helpers -----------------------------------------------------------------------------------
def status(connection: HandpieceConnection) -> StatusBody:
    reply = connection.call(GetStatus())
    assert isinstance(reply, Status)
    return reply.body


def make_ready(connection: HandpieceConnection) -> None:
    """Self test passed and every parameter set: the device is IDLE and may be armed."""
    result = connection.call(SelfTest())
    assert isinstance(result, SelfTestResult) and result.passed == 1
    assert connection.call(SetParams(tuple(PARAMS.items()))) == Ack(SetParams.TYPE)
    assert status(connection).state == DeviceState.IDLE


def fire(connection: HandpieceConnection, recorder: Recorder, grant: int) -> list[Shot]:
    """Arm with a grant, press the footswitch, and wait until the grant is used up."""
    assert connection.call(Arm(grant, 0)) == Ack(Arm.TYPE)
    assert connection.call(SimControl("press")) == Ack(SimControl.TYPE)
    recorder.wait_for(
        is_event(Fault, lambda e: isinstance(e, Fault) and e.code == FaultCode.GRANT_EXHAUSTED),
        timeout=2.0 + grant / REP_RATE_HZ,
        what="GRANT_EXHAUSTED",
    )
    return recorder.shots()


def replay(connection: HandpieceConnection, recorder: Recorder, after: int = 0) -> list[Shot]:
    """SHOTS_SINCE: the count the device announces, then that many replayed SHOT events."""
    before = len(recorder.shots(replayed=True))
    pending = connection.call(ShotsSince(after))
    assert isinstance(pending, ShotsPending)
    return recorder.wait_for_shots(before + pending.count, replayed=True)[before:]


# ---- the scenarios ------------------------------------------------------------------------------
def identify(rig: Rig) -> None:
    """The handpiece says who it is at connect: type, serial, firmware, protocol (SR-15)."""
    connection = rig.connect(Recorder())
    try:
        info = connection.info
        assert info is not None
        assert info.handpiece is HandpieceType.FRACTIONAL_1550
        assert info.serial == rig.serial
        assert info.firmware == "sim-1.0.0"
        assert info.protocol == PROTOCOL_VERSION
        assert info.simulated
        assert info.capabilities[Param.ENERGY_MJ] == (4.0, 70.0)
    finally:
        connection.close()


def status_and_events(rig: Rig) -> None:
    """STATUS answers, and a change at the device arrives unasked as STATUS_CHANGED."""
    recorder = Recorder()
    connection = rig.connect(recorder)
    try:
        body = status(connection)
        assert body.state == DeviceState.NOT_TESTED
        assert connection.info is not None
        assert all(body.is_closed(i) for i in connection.info.interlocks)
        assert (body.footswitch, body.emission, body.shot_no, body.unacked) == (0, 0, 0, 0)
        assert connection.call(SimControl("press")) == Ack(SimControl.TYPE)
        recorder.wait_for(
            is_event(
                StatusChanged, lambda e: isinstance(e, StatusChanged) and e.body.footswitch == 1
            ),
            what="STATUS_CHANGED with the footswitch pressed",
        )
        assert connection.call(SimControl("open door")) == Ack(SimControl.TYPE)
        recorder.wait_for(
            is_event(
                StatusChanged, lambda e: isinstance(e, StatusChanged) and not e.body.is_closed(1)
            ),
            what="STATUS_CHANGED with the door open",
        )
        body = status(connection)
        assert body.footswitch == 1 and not body.is_closed(1)
    finally:
        connection.close()


def set_parameters(rig: Rig) -> None:
    """Parameters inside the capability are taken; outside it, or unknown, refused by name."""
    connection = rig.connect(Recorder())
    try:
        make_ready(connection)
        try:
            connection.call(SetParams(((Param.ENERGY_MJ, 90_000),)))  # 90 mJ: above 70
            raise AssertionError("90 mJ was accepted")
        except CommandRefused as refused:
            assert refused.nak.reason == NakReason.OUT_OF_RANGE
            assert (refused.nak.detail, refused.nak.value) == (Param.ENERGY_MJ, 90_000)
        try:
            connection.call(SetParams(((Param.SPOT_MM, 5_000),)))  # no spot size on a 1550
            raise AssertionError("a spot size was accepted")
        except CommandRefused as refused:
            assert refused.nak.reason == NakReason.UNKNOWN_PARAM
        # The refusals changed nothing: every parameter is still set, so ARM is accepted.
        assert connection.call(Arm(1, 0)) == Ack(Arm.TYPE)
        assert connection.call(Disarm()) == Ack(Disarm.TYPE)
    finally:
        connection.close()


def arm_fire_and_acknowledge(rig: Rig) -> None:
    """Armed and idle, the heartbeat keeps the device armed; the footswitch fires exactly the
    grant, each shot streamed with its values; SHOT_ACK releases the device's records."""
    recorder = Recorder()
    connection = rig.connect(recorder)
    try:
        make_ready(connection)
        assert connection.call(Arm(3, 0)) == Ack(Arm.TYPE)
        idle_until = time.monotonic() + 0.6  # more than twice the device's 250 ms watchdog
        while time.monotonic() < idle_until:
            assert status(connection).state == DeviceState.ARMED
            time.sleep(0.1)
        assert connection.call(SimControl("press")) == Ack(SimControl.TYPE)
        recorder.wait_for(
            is_event(Fault, lambda e: isinstance(e, Fault) and e.code == FaultCode.GRANT_EXHAUSTED),
            what="GRANT_EXHAUSTED",
        )
        shots = recorder.shots()
        assert [s.shot_no for s in shots] == [1, 2, 3]
        for shot in shots:
            assert shot.params == tuple(sorted((int(p), v) for p, v in PARAMS.items()))
            assert (shot.dose_param, shot.set_milli) == (Param.ENERGY_MJ, PARAMS[Param.ENERGY_MJ])
            assert abs(shot.measured_milli - shot.set_milli) < 0.2 * shot.set_milli
        gaps = [b.device_time_us - a.device_time_us for a, b in pairwise(shots)]
        assert all(abs(gap - 1e6 / REP_RATE_HZ) < 2_000 for gap in gaps), gaps
        # The footswitch is still down for three more pulse periods: no fourth shot.
        time.sleep(3 / REP_RATE_HZ)
        body = status(connection)
        assert (body.state, body.footswitch, body.shot_no) == (DeviceState.IDLE, 1, 3)
        assert body.unacked == 3
        assert connection.call(ShotAck(3)) == Ack(ShotAck.TYPE)
        assert status(connection).unacked == 0
        assert len(recorder.shots()) == 3
    finally:
        connection.close()


def heartbeat_loss_stops_emission(rig: Rig) -> None:
    """Mid-burst the device stops hearing the host: it stops emission and disarms by itself
    within its 250 ms watchdog, and the host declares the silent device lost (SR-09)."""
    recorder = Recorder()
    connection = rig.connect(recorder)
    try:
        make_ready(connection)
        assert connection.call(Arm(1000, 0)) == Ack(Arm.TYPE)
        assert connection.call(SimControl("press")) == Ack(SimControl.TYPE)
        recorder.wait_for_shots(2)
        # The cable is "pulled" at the device: no host frame counts any more, heartbeats included.
        assert connection.call(SimControl("pull cable")) == Ack(SimControl.TYPE)
        pulled = time.monotonic()
        silent = recorder.wait_for(lambda n: isinstance(n, LinkSilent), 1.0, "LinkSilent")
        assert isinstance(silent, LinkSilent) and silent.silent_for >= 0.25
        poll(lambda: time.monotonic() - pulled >= 0.8, 1.0, "the cable stays pulled")
        assert connection.call(SimControl("replug")) == Ack(SimControl.TYPE)
        body = status(connection)
        assert body.footswitch == 1  # still pressed: what stopped the pulses was the watchdog
        assert (body.state, body.emission, body.grant_remaining) == (DeviceState.IDLE, 0, 0)
        fired = replay(connection, recorder)
        assert len(fired) == body.shot_no >= 2
        # Emission ended a watchdog period after the pull, not at the replug 0.8 s later:
        # were the device still firing, its last shot would be one pulse period old.
        quiet_us = body.device_time_us - fired[-1].device_time_us
        assert quiet_us > (0.8 - 0.25 - 1 / REP_RATE_HZ - 0.1) * 1e6, quiet_us
        assert len(fired) <= len(recorder.shots()) + math.ceil(0.25 * REP_RATE_HZ) + 2
        time.sleep(3 / REP_RATE_HZ)
        assert status(connection).shot_no == body.shot_no  # and it stays stopped
    finally:
        connection.close()


def reconnect_rereads_unacknowledged_shots(rig: Rig) -> None:
    """The link drops after a burst that was not acknowledged; after the reconnect (HELLO
    first, the same handpiece, not rebooted) SHOTS_SINCE brings every shot back (SR-11)."""
    recorder = Recorder()
    connection = rig.connect(recorder, reconnect=True)
    try:
        first = connection.info
        assert first is not None
        make_ready(connection)
        originals = fire(connection, recorder, 3)
        assert [s.shot_no for s in originals] == [1, 2, 3]
        assert connection.call(SimControl("release")) == Ack(SimControl.TYPE)
        rig.break_link(connection)
        lost = recorder.wait_for(lambda n: isinstance(n, TransportLost), 2.0, "TransportLost")
        rig.restore_link()
        again = recorder.wait_for(lambda n: isinstance(n, Reconnected), 5.0, "Reconnected")
        assert isinstance(lost, TransportLost) and isinstance(again, Reconnected)
        assert again.info.same_handpiece(first) and again.info.boot_id == first.boot_id
        replayed = replay(connection, recorder)
        key = [(s.shot_no, s.device_time_us, s.set_milli, s.measured_milli) for s in originals]
        assert [
            (s.shot_no, s.device_time_us, s.set_milli, s.measured_milli) for s in replayed
        ] == key
        assert connection.call(ShotAck(3)) == Ack(ShotAck.TYPE)
        assert replay(connection, recorder) == []
        assert connection.stats.connects == 2
    finally:
        connection.close()


def duplicate_not_executed_twice(rig: Rig) -> None:
    """Copies of one ARM frame are executed once (SR-16): a copy arriving while the first is
    executed gets no second answer, a later copy gets the first answer again, and a copy
    arriving after DISARM does not arm again."""
    taps: list[TapTransport] = []

    def tapped(url: str) -> Transport:
        taps.append(TapTransport(open_transport(url)))
        return taps[-1]

    connection = rig.connect(Recorder(), opener=tapped)
    try:
        make_ready(connection)
        frame = encode_frame(Arm.TYPE, 0, Arm(5, 0).pack())  # seq 0: the host never uses it

        def answers() -> list[object]:
            return [
                decode_message(f.type, f.payload)
                for f in taps[0].frames()
                if f.seq == 0 and f.type in (Ack.TYPE, Nak.TYPE)
            ]

        # One write: the copies usually reach the device in one read, and the second, arriving
        # while the first is executed, gets no answer of its own; split across two reads it
        # gets the first one's answer again. Executed twice, it would be NAK BAD_STATE.
        taps[0].inject(frame + frame)
        poll(lambda: len(answers()) >= 1, 2.0, "an answer to the ARM frame")
        body = status(connection)  # a round trip later, both copies have been taken
        assert (body.state, body.grant_remaining) == (DeviceState.ARMED, 5)
        first = answers()
        assert first in ([Ack(Arm.TYPE)], [Ack(Arm.TYPE), Ack(Arm.TYPE)]), first
        taps[0].inject(frame)
        poll(lambda: len(answers()) > len(first), 2.0, "the answer to a later copy")
        assert answers() == [*first, Ack(Arm.TYPE)]
        assert status(connection).grant_remaining == 5
        assert connection.call(Disarm()) == Ack(Disarm.TYPE)
        taps[0].inject(frame)
        poll(lambda: len(answers()) > len(first) + 1, 2.0, "the answer to a copy after DISARM")
        assert answers()[-1] == Ack(Arm.TYPE)
        assert status(connection).state == DeviceState.IDLE
    finally:
        connection.close()


SCENARIOS: dict[str, Callable[[Rig], None]] = {
    f.__name__: f
    for f in (
        identify,
        status_and_events,
        set_parameters,
        arm_fire_and_acknowledge,
        heartbeat_loss_stops_emission,
        reconnect_rereads_unacknowledged_shots,
        duplicate_not_executed_twice,
    )
}
