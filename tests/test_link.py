"""HostLink and DeviceLink wired back to back in memory, with injected time (no sockets, no clock).

A fake firmware executes the commands the DeviceLink hands over and records each execution, so
the tests can tell "answered" from "executed" (SR-16: never executed twice).
"""

from __future__ import annotations

import itertools
from collections import Counter
from dataclasses import dataclass, field

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.protocol import (
    MESSAGES,
    Ack,
    Arm,
    Boot,
    CalFire,
    Command,
    CommandFailed,
    DeviceEvent,
    DeviceLink,
    Disarm,
    EStop,
    EventGap,
    Fault,
    FaultCode,
    FrameDecoder,
    FrameRejected,
    GetStatus,
    HandpieceType,
    Heartbeat,
    Hello,
    HelloInfo,
    HostLink,
    IncomingCommand,
    LinkEvent,
    LinkSilent,
    Nak,
    NakReason,
    Reply,
    Reset,
    Response,
    SelfTest,
    SetParams,
    ShotAck,
    Status,
    StatusBody,
    decode_frame,
    decode_message,
    encode_frame,
)
from drivers.protocol.framing import Frame
from drivers.protocol.link import (
    HEARTBEAT_INTERVAL,
    LINK_TIMEOUT,
    MAX_ATTEMPTS,
    RETRY_TIMEOUT,
    SR09_MAX_GAP,
)

BODY = StatusBody(1, 0xBF, 0xBF, 0, 0, 0, 0, 0, 25_000, 0, 1, 0)
HELLO_INFO = HelloInfo(1, HandpieceType.FRACTIONAL_1550, 1, 1550, 0x5EED, 0xBF, "FX-1", "t", ())


def answer(command: Command) -> Response:
    """What the fake firmware answers: enough for the link, no device semantics."""
    if isinstance(command, GetStatus | Heartbeat):
        return Status(BODY)
    if isinstance(command, Hello):
        return HELLO_INFO
    return Ack(command.TYPE)


def frames(data: bytes) -> list[Frame]:
    decoder = FrameDecoder()
    decoder.feed(data)
    out = []
    while (item := decoder.next()) is not None:
        assert isinstance(item, Frame), item
        out.append(item)
    return out


def commands_in(data: bytes) -> list[tuple[int, Command]]:
    out = []
    for frame in frames(data):
        message = decode_message(frame.type, frame.payload)
        assert isinstance(message, Command)
        out.append((frame.seq, message))
    return out


def flip_bit(wire: bytes) -> bytes:
    """One bit of the middle byte flipped (the delimiter is left alone)."""
    mid = (len(wire) - 1) // 2
    return wire[:mid] + bytes([wire[mid] ^ 0x10]) + wire[mid + 1 :]


@dataclass
class Bench:
    """Both ends of the link and a fake firmware, moved by hand; `now` is injected."""

    first_seq: int = 100
    heartbeat: float | None = None
    now: float = 0.0
    host: HostLink = field(init=False)
    device: DeviceLink = field(default_factory=DeviceLink)
    executed: list[IncomingCommand] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.host = HostLink(self.now, first_seq=self.first_seq, heartbeat_interval=self.heartbeat)

    def send(self, command: Command) -> int:
        return self.host.send(command, self.now)

    def host_writes(self) -> bytes:
        data = self.host.data_to_send()
        if data:
            self.host.note_written(self.now)
        return data

    def device_reads(self, data: bytes) -> int:
        valid = self.device.receive_data(data)
        while (incoming := self.device.next_command()) is not None:
            self.executed.append(incoming)
            self.device.respond(incoming.seq, answer(incoming.command))
        return valid

    def host_reads(self, data: bytes) -> None:
        self.host.receive_data(data, self.now)

    def tick(self, now: float) -> None:
        self.now = now
        self.host.tick(now)

    def round_trip(self) -> None:
        """Host frames to the device, the device's answers back, nothing lost."""
        self.device_reads(self.host_writes())
        self.host_reads(self.device.data_to_send())

    def events(self) -> list[LinkEvent]:
        out = []
        while (event := self.host.next_event()) is not None:
            out.append(event)
        return out

    def executions(self, seq: int) -> int:
        return sum(1 for incoming in self.executed if incoming.seq == seq)


# ---- commands and answers ------------------------------------------------------------------------
def test_a_command_is_answered() -> None:
    bench = Bench()
    seq = bench.send(Arm(20, 1000))
    assert seq == 100  # first_seq is the first sequence number used
    assert bench.host.busy
    bench.round_trip()
    assert bench.events() == [Reply(seq, Arm(20, 1000), Ack(Arm.TYPE))]
    assert bench.executed == [IncomingCommand(seq, Arm(20, 1000))]
    assert not bench.host.busy
    assert (bench.host.stats.sent, bench.host.stats.retransmits) == (1, 0)


def test_sequence_numbers_count_up_and_wrap_past_zero() -> None:
    bench = Bench(first_seq=0xFFFE)
    seqs = []
    for _ in range(3):
        seqs.append(bench.send(GetStatus()))
        bench.round_trip()
    assert seqs == [0xFFFE, 0xFFFF, 1]
    assert [event.seq for event in bench.events() if isinstance(event, Reply)] == seqs


def test_the_first_sequence_number_is_random_when_not_given() -> None:
    firsts = {HostLink(0.0).send(GetStatus(), 0.0) for _ in range(20)}
    assert len(firsts) > 1
    assert all(1 <= seq <= 0xFFFF for seq in firsts)
    with pytest.raises(ValueError, match="first_seq"):
        HostLink(0.0, first_seq=0)


@pytest.mark.req("SR-16")
def test_a_lost_reply_is_retransmitted_and_answered_from_the_cache_without_executing_twice() -> (
    None
):
    bench = Bench()
    seq = bench.send(Arm(20, 1000))
    first = bench.host_writes()
    bench.device_reads(first)
    lost_reply = bench.device.data_to_send()  # the answer is lost on the way back
    assert lost_reply

    bench.tick(RETRY_TIMEOUT - 0.001)
    assert bench.host_writes() == b""  # not yet
    bench.tick(RETRY_TIMEOUT)
    again = bench.host_writes()
    assert again == first  # byte for byte: same seq, same payload
    bench.device_reads(again)
    assert bench.device.data_to_send() == lost_reply  # the cached response frame, again
    assert bench.executions(seq) == 1
    assert bench.device.duplicates == 1

    bench.host_reads(lost_reply)
    assert bench.events() == [Reply(seq, Arm(20, 1000), Ack(Arm.TYPE))]
    assert bench.host.stats.retransmits == 1
    # A late second copy of the answer is stray: no second Reply.
    bench.host_reads(lost_reply)
    assert bench.events() == []
    assert bench.host.stats.stray_replies == 1


@pytest.mark.req("SR-16")
def test_a_retransmission_of_a_command_still_executing_is_dropped() -> None:
    device = DeviceLink()
    wire = encode_frame(Arm.TYPE, 7, Arm(20, 1000).pack())
    assert device.receive_data(wire + wire) == 2  # both valid frames: both feed the watchdog
    assert device.next_command() == IncomingCommand(7, Arm(20, 1000))
    assert device.next_command() is None
    assert device.duplicates == 1
    device.respond(7, Ack(Arm.TYPE))
    assert [f.seq for f in frames(device.data_to_send())] == [7]  # answered once


@pytest.mark.req("SR-16")
def test_the_cache_holds_the_last_16_answers() -> None:
    bench = Bench()
    wires = []
    for _ in range(DeviceLink.CACHE + 1):
        bench.send(GetStatus())
        wires.append(bench.host_writes())
        bench.device_reads(wires[-1])
        bench.host_reads(bench.device.data_to_send())
    oldest, *kept = wires
    for wire in kept:  # every one of the last 16 is answered from the cache
        bench.device_reads(wire)
    assert len(frames(bench.device.data_to_send())) == DeviceLink.CACHE
    assert len(bench.executed) == DeviceLink.CACHE + 1
    bench.device_reads(oldest)  # evicted: a frame that old is executed as new
    assert len(bench.executed) == DeviceLink.CACHE + 2


@pytest.mark.req("SR-16")
def test_command_failed_after_max_attempts() -> None:
    bench = Bench()
    seq = bench.send(Arm(20, 1000))
    bench.send(GetStatus())  # queued behind the ARM
    written = [bench.host_writes()]
    for attempt in range(1, MAX_ATTEMPTS):
        bench.tick(attempt * RETRY_TIMEOUT)
        written.append(bench.host_writes())
    assert len(set(written)) == 1  # four identical transmissions
    assert commands_in(written[0]) == [(seq, Arm(20, 1000))]
    bench.tick(MAX_ATTEMPTS * RETRY_TIMEOUT - 0.001)
    assert bench.events() == []
    assert bench.host_writes() == b""

    bench.tick(MAX_ATTEMPTS * RETRY_TIMEOUT)
    assert bench.events() == [CommandFailed(seq, Arm(20, 1000), MAX_ATTEMPTS)]
    assert commands_in(bench.host_writes()) == [(seq + 1, GetStatus())]  # the queue moves on
    assert bench.host.stats.retransmits == MAX_ATTEMPTS - 1

    # A late answer to the failed command is not a Reply.
    bench.host_reads(encode_frame(Ack.TYPE, seq, Ack(Arm.TYPE).pack()))
    assert bench.events() == []
    assert bench.host.stats.stray_replies == 1


@pytest.mark.req("SR-16")
def test_a_command_can_fail_even_though_the_device_executed_it_once() -> None:
    """Every answer lost: the host reports failure, the device executed it exactly once."""
    bench = Bench()
    seq = bench.send(Arm(20, 1000))
    for attempt in range(MAX_ATTEMPTS):
        bench.tick(attempt * RETRY_TIMEOUT)
        bench.device_reads(bench.host_writes())
        bench.device.data_to_send()  # lost
    bench.tick(MAX_ATTEMPTS * RETRY_TIMEOUT)
    assert bench.events() == [CommandFailed(seq, Arm(20, 1000), MAX_ATTEMPTS)]
    assert bench.executions(seq) == 1
    assert bench.device.duplicates == MAX_ATTEMPTS - 1


@pytest.mark.req("SR-16")
def test_a_corrupted_command_is_neither_executed_nor_answered() -> None:
    bench = Bench()
    seq = bench.send(Arm(20, 1000))
    assert bench.device_reads(flip_bit(bench.host_writes())) == 0
    assert bench.executed == []
    assert bench.device.data_to_send() == b""
    assert bench.device.rejected == 1
    bench.tick(RETRY_TIMEOUT)  # the retransmission gets through
    bench.round_trip()
    assert bench.events() == [Reply(seq, Arm(20, 1000), Ack(Arm.TYPE))]
    assert bench.executions(seq) == 1


@pytest.mark.req("SR-16")
def test_a_corrupted_answer_is_rejected_and_the_retransmission_is_answered() -> None:
    bench = Bench()
    seq = bench.send(Arm(20, 1000))
    bench.device_reads(bench.host_writes())
    bench.host_reads(flip_bit(bench.device.data_to_send()))
    events = bench.events()
    assert len(events) == 1
    assert isinstance(events[0], FrameRejected)
    assert sum(bench.host.stats.rejected.values()) == 1
    bench.tick(RETRY_TIMEOUT)
    bench.round_trip()
    assert bench.events() == [Reply(seq, Arm(20, 1000), Ack(Arm.TYPE))]
    assert bench.executions(seq) == 1


# ---- priority commands ---------------------------------------------------------------------------
@pytest.mark.req("SR-03")
@pytest.mark.req("SR-16")
def test_disarm_and_estop_jump_the_queue_and_do_not_wait() -> None:
    bench = Bench()
    status = bench.send(GetStatus())
    in_flight = bench.host_writes()
    assert commands_in(in_flight) == [(status, GetStatus())]  # written, not yet answered
    params = bench.send(SetParams(((1, 16500),)))
    arm = bench.send(Arm(20, 1000))
    disarm = bench.send(Disarm())
    estop = bench.send(EStop())
    # Priority frames go out at once, without waiting for the GET_STATUS in flight.
    priority = bench.host_writes()
    assert commands_in(priority) == [(disarm, Disarm()), (estop, EStop())]

    bench.device_reads(in_flight + priority)
    assert {i.seq for i in bench.executed[:2]} == {disarm, estop}  # executed ahead, too
    bench.host_reads(bench.device.data_to_send())
    sent_after = []
    for _ in range(2):  # the queued ones follow, one at a time, in order
        data = bench.host_writes()
        sent_after += commands_in(data)
        bench.device_reads(data)
        bench.host_reads(bench.device.data_to_send())
    assert sent_after == [(params, SetParams(((1, 16500),))), (arm, Arm(20, 1000))]
    replies = [event.seq for event in bench.events() if isinstance(event, Reply)]
    assert sorted(replies) == sorted([status, params, arm, disarm, estop])


@pytest.mark.req("SR-03")
@pytest.mark.req("SR-16")
def test_priority_frames_are_written_ahead_of_ordinary_frames_not_yet_written() -> None:
    bench = Bench()
    status = bench.send(GetStatus())
    estop = bench.send(EStop())
    assert commands_in(bench.host_writes()) == [(estop, EStop()), (status, GetStatus())]


@pytest.mark.req("SR-03")
@pytest.mark.req("SR-16")
def test_the_device_executes_priority_commands_ahead_of_those_waiting() -> None:
    device = DeviceLink()
    device.receive_data(
        encode_frame(SetParams.TYPE, 1, SetParams(((1, 16500),)).pack())
        + encode_frame(Arm.TYPE, 2, Arm(20, 1000).pack())
        + encode_frame(Disarm.TYPE, 3, b"")
        + encode_frame(EStop.TYPE, 4, b"")
    )
    order = []
    while (incoming := device.next_command()) is not None:
        order.append(incoming.seq)
    assert order[:2] in ([4, 3], [3, 4])  # both priority commands first
    assert order[2:] == [1, 2]  # the others keep their order


@pytest.mark.req("SR-16")
@pytest.mark.parametrize("command", [Disarm(), EStop()], ids=["DISARM", "ESTOP"])
def test_priority_commands_are_retried_until_answered(command: Command) -> None:
    """Past MAX_ATTEMPTS: a lost DISARM or ESTOP does not fail while the link is alive."""
    bench = Bench()
    seq = bench.send(command)
    attempts = 0
    for step in range(2 * MAX_ATTEMPTS):
        bench.tick(step * RETRY_TIMEOUT)
        assert commands_in(bench.host_writes()) == [(seq, command)]  # lost, every time
        attempts += 1
        # The device is alive meanwhile: its events arrive (numbered, no gap).
        bench.host_reads(emitted(*(fault(n) for n in range(1, step + 2)))[-1])
    assert not any(isinstance(e, CommandFailed) for e in bench.events())
    bench.tick(2 * MAX_ATTEMPTS * RETRY_TIMEOUT)
    bench.round_trip()  # the next retransmission gets through
    assert bench.events() == [Reply(seq, command, Ack(command.TYPE))]
    assert attempts > MAX_ATTEMPTS
    assert bench.executions(seq) == 1


@pytest.mark.req("SR-16")
@pytest.mark.parametrize("command", [Disarm(), EStop()], ids=["DISARM", "ESTOP"])
def test_priority_commands_fail_only_once_the_link_is_declared_lost(command: Command) -> None:
    bench = Bench()
    seq = bench.send(command)
    events: list[LinkEvent] = []
    t = 0.0
    for _ in range(100):  # bounded: each tick at next_deadline() must make progress
        bench.tick(t)
        bench.host_writes()  # lost
        events += bench.events()
        if any(isinstance(e, CommandFailed) for e in events):
            break
        t = bench.host.next_deadline()
    silent = next(i for i, e in enumerate(events) if isinstance(e, LinkSilent))
    failed = next(i for i, e in enumerate(events) if isinstance(e, CommandFailed))
    assert silent < failed
    assert events[failed] == CommandFailed(seq, command, events[failed].attempts)  # type: ignore[union-attr]
    assert bench.now >= LINK_TIMEOUT


# ---- heartbeat and link silence (SR-09) ----------------------------------------------------------
@pytest.mark.req("SR-09")
def test_a_heartbeat_goes_out_after_80_ms_idle() -> None:
    assert SR09_MAX_GAP - HEARTBEAT_INTERVAL >= 0.010  # a margin for a late wake-up
    bench = Bench(heartbeat=HEARTBEAT_INTERVAL)
    assert bench.host.next_deadline() <= HEARTBEAT_INTERVAL
    bench.tick(HEARTBEAT_INTERVAL - 0.001)
    assert bench.host_writes() == b""
    bench.tick(HEARTBEAT_INTERVAL)
    (sent,) = commands_in(bench.host_writes())
    assert sent[1] == Heartbeat()
    bench.device_reads(encode_frame(Heartbeat.TYPE, sent[0], b""))
    bench.host_reads(bench.device.data_to_send())
    assert bench.events() == [Reply(sent[0], Heartbeat(), Status(BODY))]


@pytest.mark.req("SR-09")
def test_any_frame_written_postpones_the_heartbeat() -> None:
    bench = Bench(heartbeat=HEARTBEAT_INTERVAL)
    bench.tick(0.060)
    bench.send(GetStatus())
    bench.round_trip()  # written at 60 ms
    bench.tick(0.060 + HEARTBEAT_INTERVAL - 0.001)
    assert bench.host_writes() == b""
    bench.tick(0.060 + HEARTBEAT_INTERVAL)
    assert [command for _, command in commands_in(bench.host_writes())] == [Heartbeat()]


@pytest.mark.req("SR-09")
@pytest.mark.parametrize("device_answers", [True, False], ids=["answering", "silent"])
def test_the_host_writes_at_least_every_100_ms(device_answers: bool) -> None:
    """Two simulated seconds, tick() called exactly at next_deadline(), with commands sent now
    and then: no gap between written frames exceeds the heartbeat interval, whether the device
    answers or not."""
    bench = Bench(heartbeat=HEARTBEAT_INTERVAL)
    writes = [0.0]
    send_at = [0.33, 0.34, 0.9, 1.5]
    for _ in range(1000):  # bounded: tick() must move next_deadline() forward
        if bench.now >= 2.0:
            break
        now = min(bench.host.next_deadline(), *(t for t in send_at if t > bench.now), 2.0)
        bench.tick(now)
        if now in send_at:
            bench.send(Arm(1, 0))
        data = bench.host_writes()
        if data:
            writes.append(now)
            bench.device_reads(data)
        reply = bench.device.data_to_send()
        if device_answers:
            bench.host_reads(reply)
    else:
        pytest.fail("next_deadline() did not advance")
    gaps = [b - a for a, b in itertools.pairwise(writes)]
    assert len(writes) >= 20
    assert max(gaps) <= HEARTBEAT_INTERVAL + 1e-9 < SR09_MAX_GAP


@pytest.mark.req("SR-09")
@pytest.mark.parametrize("start", [k * 0.1 for k in range(1, 40)], ids=lambda t: f"{t!r}")
def test_a_tick_at_next_deadline_always_acts(start: float) -> None:
    """next_deadline() is when the heartbeat or the silence report is due: a tick at exactly
    that time must act, whatever the float rounding of the start time (else an injected-time
    loop never advances, and a real one spins)."""
    host = HostLink(start, first_seq=1)
    host.tick(host.next_deadline())
    assert [type(c) for c in host.pending()] == [Heartbeat]
    host.note_written(host.next_deadline())  # keep the heartbeat out of the way
    host.tick(start + LINK_TIMEOUT)
    assert host.next_event() == LinkSilent(pytest.approx(LINK_TIMEOUT))


@pytest.mark.req("SR-09")
def test_link_silent_after_250_ms_without_device_frames() -> None:
    bench = Bench()
    assert bench.host.next_deadline() <= LINK_TIMEOUT
    bench.tick(LINK_TIMEOUT - 0.001)
    assert bench.events() == []
    bench.tick(LINK_TIMEOUT)
    assert bench.events() == [LinkSilent(LINK_TIMEOUT)]
    bench.tick(0.4)
    assert bench.events() == []  # reported once per silence

    bench.host_reads(encode_frame(Fault.TYPE, 5, Fault(5, FaultCode.WATCHDOG, 0, 0, 250).pack()))
    bench.events()
    bench.tick(0.4 + LINK_TIMEOUT - 0.001)
    assert bench.events() == []
    bench.tick(0.4 + LINK_TIMEOUT)
    assert bench.events() == [LinkSilent(pytest.approx(LINK_TIMEOUT))]


@pytest.mark.req("SR-09")
def test_after_a_stall_of_its_own_the_host_gives_the_device_one_round_trip() -> None:
    """The host's I/O thread was not running from 0.1 s to 0.4 s: the device's silence was due
    at 0.25 s, but a device that shared the stall gets one round trip from the wake-up."""
    bench = Bench()
    bench.now = 0.4
    bench.host.defer_silence(0.4)
    assert bench.host.next_deadline() <= 0.4 + RETRY_TIMEOUT
    bench.tick(0.4 + RETRY_TIMEOUT - 0.001)
    assert bench.events() == []
    bench.tick(0.4 + RETRY_TIMEOUT)  # nothing came in the round trip: silent, as SR-09 says
    assert bench.events() == [LinkSilent(pytest.approx(0.4 + RETRY_TIMEOUT))]


@pytest.mark.req("SR-09")
def test_a_device_heard_within_the_round_trip_after_a_stall_is_not_silent() -> None:
    bench = Bench(heartbeat=HEARTBEAT_INTERVAL)
    bench.host.defer_silence(0.4)
    bench.tick(0.4)  # the heartbeat, overdue, goes out at the wake-up ...
    assert [type(c) for c in bench.host.pending()] == [Heartbeat]
    bench.round_trip()  # ... and the device answers it
    assert bench.host.pending() == []
    bench.tick(0.4 + RETRY_TIMEOUT)
    bench.round_trip()
    bench.tick(0.4 + LINK_TIMEOUT - 0.001)
    assert [e for e in bench.events() if isinstance(e, LinkSilent)] == []


@pytest.mark.req("SR-09")
@given(stall_end=st.floats(0.0, 2.0), last_heard=st.floats(0.0, 2.0), now=st.floats(0.0, 3.0))
def test_deferring_silence_never_makes_it_sooner_nor_later_than_one_round_trip(
    stall_end: float, last_heard: float, now: float
) -> None:
    host = HostLink(last_heard, first_seq=1, heartbeat_interval=None)
    due = host.next_deadline()
    host.defer_silence(stall_end)
    deferred = host.next_deadline()
    assert deferred >= due
    assert deferred == max(due, stall_end + RETRY_TIMEOUT)
    host.defer_silence(stall_end + 1.0)  # once per silence: a second stall defers no further
    assert host.next_deadline() == deferred or deferred == due


@pytest.mark.req("SR-09")
def test_a_host_late_at_every_step_still_declares_the_device_silent() -> None:
    """The reader is 30 ms late at every step, for good: it defers the silence once, by at
    most one round trip, and then declares it."""
    host = HostLink(0.0, first_seq=1, heartbeat_interval=None)
    now, silent = 0.0, None
    while silent is None and now < 2.0:
        now += 0.05
        host.defer_silence(now)
        host.tick(now)
        silent = next((e for e in iter(host.next_event, None) if isinstance(e, LinkSilent)), None)
    assert silent is not None
    assert LINK_TIMEOUT <= now <= LINK_TIMEOUT + RETRY_TIMEOUT + 0.05


@pytest.mark.req("SR-09")
@pytest.mark.req("SR-16")
def test_only_valid_device_frames_count_as_hearing_from_the_device() -> None:
    bench = Bench()
    good = encode_frame(Fault.TYPE, 5, Fault(5, FaultCode.WATCHDOG, 0, 0, 250).pack())
    bench.tick(0.2)
    bench.host_reads(flip_bit(good))  # corrupted
    bench.host_reads(encode_frame(Fault.TYPE, 6, b"\x01"))  # good CRC, malformed payload
    bench.host_reads(encode_frame(0xBE, 7, b""))  # good CRC, unknown type
    bench.host_reads(b"\x55\x66\x77\x00")  # line noise
    assert all(isinstance(event, FrameRejected) for event in bench.events())
    assert bench.host.stats.rejected == {
        "crc_errors": 1,
        "malformed": 1,
        "unknown_type": 1,
        "cobs_errors": 1,
    }
    bench.tick(LINK_TIMEOUT)
    assert bench.events() == [LinkSilent(LINK_TIMEOUT)]


# ---- events --------------------------------------------------------------------------------------
def fault(event_no: int) -> Fault:
    return Fault(event_no, FaultCode.GRANT_EXHAUSTED, 0, 0, 0)


def emitted(*events: Boot | Fault) -> list[bytes]:
    device = DeviceLink()
    out = []
    for event in events:
        device.emit(event)
        out.append(device.data_to_send())
    return out


def test_event_gaps_are_reported_and_duplicates_dropped() -> None:
    bench = Bench()
    boot, f2, f3, f4 = emitted(Boot(1, 0xB007), fault(2), fault(3), fault(4))
    del f3  # lost
    for wire in (boot, f2, f4, f2, f4):
        bench.host_reads(wire)
    assert bench.events() == [
        DeviceEvent(Boot(1, 0xB007)),
        DeviceEvent(fault(2)),
        EventGap(expected=3, received=4),
        DeviceEvent(fault(4)),
    ]
    assert bench.host.stats.duplicate_events == 2
    assert bench.host.stats.event_gaps == 1


def test_a_new_boot_restarts_event_numbering_and_a_repeated_boot_is_a_duplicate() -> None:
    bench = Bench()
    first = emitted(Boot(1, 0xB007), fault(2), fault(3))
    second = emitted(Boot(1, 0xB008), fault(2))
    for wire in (*first, first[0], *second, second[0]):
        bench.host_reads(wire)
    assert bench.events() == [
        DeviceEvent(Boot(1, 0xB007)),
        DeviceEvent(fault(2)),
        DeviceEvent(fault(3)),
        DeviceEvent(Boot(1, 0xB008)),  # a reboot: no gap, no duplicate
        DeviceEvent(fault(2)),
    ]
    assert bench.host.stats.duplicate_events == 2  # each BOOT repeated once
    assert bench.host.stats.event_gaps == 0


def test_the_first_event_seen_sets_the_numbering() -> None:
    bench = Bench()
    for wire in emitted(fault(41), fault(42)):
        bench.host_reads(wire)
    assert bench.events() == [DeviceEvent(fault(41)), DeviceEvent(fault(42))]


def test_event_frames_carry_the_low_16_bits_of_the_event_number() -> None:
    (wire,) = emitted(fault(0x1_2345))
    frame = decode_frame(wire[:-1])
    assert frame.seq == 0x2345
    assert decode_message(frame.type, frame.payload) == fault(0x1_2345)


# ---- HELLO and the device's cache ----------------------------------------------------------------
@pytest.mark.req("SR-16")
def test_hello_clears_the_device_cache() -> None:
    device = DeviceLink()
    executed: list[IncomingCommand] = []

    def run(wire: bytes) -> list[Frame]:
        device.receive_data(wire)
        while (incoming := device.next_command()) is not None:
            executed.append(incoming)
            device.respond(incoming.seq, answer(incoming.command))
        return frames(device.data_to_send())

    arm = encode_frame(Arm.TYPE, 500, Arm(20, 1000).pack())
    assert [f.seq for f in run(arm)] == [500]
    # A restarted host that happens to reuse seq 500 without HELLO is answered from the cache:
    # its ARM would be acknowledged without being executed.
    assert [f.seq for f in run(arm)] == [500]
    assert len(executed) == 1
    # With HELLO first, the cache is gone and the same frame is a new command.
    hello = encode_frame(Hello.TYPE, 499, Hello(1, 1).pack())
    (reply,) = run(hello)
    assert decode_message(reply.type, reply.payload) == HELLO_INFO
    run(arm)
    assert [incoming.seq for incoming in executed] == [500, 499, 500]
    # HELLO itself is never answered from the cache: it is executed again (it is idempotent).
    run(hello)
    assert [incoming.seq for incoming in executed] == [500, 499, 500, 499]


def test_a_host_session_starting_with_hello_gets_hello_info() -> None:
    bench = Bench()
    seq = bench.send(Hello(1, 1))
    bench.round_trip()
    assert bench.events() == [Reply(seq, Hello(1, 1), HELLO_INFO)]


# ---- NAKs from the link layer --------------------------------------------------------------------
def device_answer(wire: bytes) -> tuple[int, Nak]:
    device = DeviceLink()
    assert device.receive_data(wire) == 1  # a valid frame: it feeds the watchdog
    assert device.next_command() is None  # but nothing is executed
    (frame,) = frames(device.data_to_send())
    nak = decode_message(frame.type, frame.payload)
    assert isinstance(nak, Nak)
    return frame.seq, nak


@pytest.mark.parametrize(
    "payload",
    [b"\x01\x02", Arm(20, 1000).pack() + b"\x00", b""],
    ids=["short", "extra byte", "empty"],
)
def test_a_malformed_payload_with_a_good_crc_gets_nak_malformed(payload: bytes) -> None:
    assert device_answer(encode_frame(Arm.TYPE, 5, payload)) == (
        5,
        Nak(Arm.TYPE, NakReason.MALFORMED, 0, 0),
    )


def test_a_malformed_command_is_reported_to_the_host_as_a_nak_reply() -> None:
    bench = Bench()
    seq = bench.send(CalFire(30000))
    bench.host_writes()
    # The frame that arrives has the right seq, type and CRC but a payload that does not parse.
    bench.device_reads(encode_frame(CalFire.TYPE, seq, b"\x30\x75"))
    bench.host_reads(bench.device.data_to_send())
    assert bench.events() == [
        Reply(seq, CalFire(30000), Nak(CalFire.TYPE, NakReason.MALFORMED, 0, 0))
    ]
    assert bench.executed == []


@pytest.mark.parametrize("type_code", [0x0D, 0x70, 0x7E], ids=hex)
def test_an_unknown_type_gets_nak_unsupported(type_code: int) -> None:
    assert type_code not in MESSAGES
    assert device_answer(encode_frame(type_code, 9, b"\x01")) == (
        9,
        Nak(type_code, NakReason.UNSUPPORTED, 0, 0),
    )


def test_a_response_or_event_sent_to_the_device_is_ignored() -> None:
    device = DeviceLink()
    device.receive_data(encode_frame(Ack.TYPE, 3, Ack(1).pack()) + emitted(fault(1))[0])
    assert device.next_command() is None
    assert device.data_to_send() == b""
    assert device.rejected == 2


# ---- random loss, duplication, corruption and delay (SR-16) -------------------------------------
ORDINARY = [
    GetStatus(),
    SetParams(((1, 16500), (5, 20000))),
    Arm(20, 1000),
    ShotAck(17),
    Reset(),
    SelfTest(),
    CalFire(30000),
]
PRIORITY = [Disarm(), EStop()]
FATES = ["deliver", "deliver", "deliver", "drop", "duplicate", "corrupt", "delay"]
STEP = 0.010  # a delayed frame arrives one step (10 ms) late: less than RETRY_TIMEOUT


class Wire:
    """One direction of a lossy wire: each frame meets the next fate in the list."""

    def __init__(self, fates: list[str]) -> None:
        self.fates = fates
        self.held: list[bytes] = []

    def carry(self, data: bytes) -> bytes:
        out, self.held = self.held, []
        for piece in data.split(b"\x00"):
            if not piece:
                continue
            frame = piece + b"\x00"
            fate = self.fates.pop(0) if self.fates else "deliver"
            if fate == "deliver":
                out.append(frame)
            elif fate == "duplicate":
                out += [frame, frame]
            elif fate == "corrupt":
                out.append(flip_bit(frame))
            elif fate == "delay":
                self.held.append(frame)
        return b"".join(out)


@pytest.mark.req("SR-16")
@given(
    plan=st.lists(
        st.tuples(st.integers(0, 40), st.sampled_from(ORDINARY + PRIORITY)), min_size=1, max_size=8
    ),
    to_device=st.lists(st.sampled_from(FATES), max_size=60),
    to_host=st.lists(st.sampled_from(FATES), max_size=60),
    first_seq=st.integers(1, 0xFFFF),
)
def test_loss_and_duplication_never_execute_a_command_twice_and_every_command_ends_once(
    plan: list[tuple[int, Command]], to_device: list[str], to_host: list[str], first_seq: int
) -> None:
    bench = Bench(first_seq=first_seq)
    down, up = Wire(to_device), Wire(to_host)
    sent: dict[int, Command] = {}
    outcomes: dict[int, list[Reply | CommandFailed]] = {}
    step = 0
    while step < 400:
        bench.tick(step * STEP)
        for at, command in plan:
            if at == step:
                sent[bench.send(command)] = command
        bench.device_reads(down.carry(bench.host_writes()))
        bench.host_reads(up.carry(bench.device.data_to_send()))
        for event in bench.events():
            if isinstance(event, Reply | CommandFailed):
                outcomes.setdefault(event.seq, []).append(event)
        step += 1
        if step > 40 and not bench.host.busy and not down.held and not up.held:
            break

    executions = Counter(incoming.seq for incoming in bench.executed)
    assert all(count == 1 for count in executions.values()), executions
    for incoming in bench.executed:
        assert sent[incoming.seq] == incoming.command  # only what was sent, as it was sent
    assert set(outcomes) == set(sent)
    for seq, (outcome, *more) in outcomes.items():
        assert more == [], f"command {seq} ended more than once: {outcomes[seq]}"
        assert outcome.command == sent[seq]
        if isinstance(outcome, Reply):
            assert outcome.response == answer(sent[seq])
            assert executions[seq] == 1  # answered means executed, once
        else:  # priority commands keep trying until the link is declared lost
            assert outcome.attempts >= MAX_ATTEMPTS
    # One ordinary command in flight: the device executes ordinary commands in the order sent.
    ordinary = [i.seq for i in bench.executed if not i.command.PRIORITY]
    order = [seq for seq in sent if not sent[seq].PRIORITY]
    assert ordinary == [seq for seq in order if seq in ordinary]


@pytest.mark.req("SR-11")
def test_lost_boot_restarted_numbering_is_a_gap_not_a_duplicate() -> None:
    """A reboot whose BOOT frame was lost: the new boot's low-numbered events differ from the
    old ones and must be delivered (a shot dropped as a 'duplicate' would never be logged)."""
    from drivers.protocol import DeviceEvent, EventGap, Fault, HostLink, Shot, encode_frame

    host = HostLink(0.0, first_seq=1, heartbeat_interval=None)

    def deliver(event: Fault | Shot) -> None:
        host.receive_data(encode_frame(event.TYPE, event.event_no & 0xFFFF, event.pack()), 0.0)

    for n in range(1, 11):
        deliver(Fault(n, 0, 0, 0, n))
    deliver(Fault(10, 0, 0, 0, 10))  # the very frame again: a duplicate
    shot = Shot(3, 1, 5_000, 0, 1, 16_000, 15_900, 1_800, ((1, 16_000),))
    deliver(shot)  # event 3 of the new boot, different content
    events = []
    while (item := host.next_event()) is not None:
        events.append(item)
    delivered = [e.event for e in events if isinstance(e, DeviceEvent)]
    assert len(delivered) == 11
    assert delivered[-1] == shot
    assert EventGap(11, 3) in events
    assert host.stats.duplicate_events == 1
