"""Reliable command link over the frame layer, the host end, sans-IO.

HostLink: commands go out with a sequence number and are retransmitted until the device answers
or the retry budget is spent; DISARM and ESTOP jump the queue. It also keeps the dead-man
heartbeat (SR-09) and notices a silent device. The device end, which answers a retransmitted
command again from a cache and never executes it twice (SR-16), is device_link.py.

HostLink reads no clock and touches no socket: the caller passes ``now`` (seconds, monotonic)
and moves bytes with receive_data() / data_to_send().
"""

from __future__ import annotations

import random
from collections import OrderedDict, deque
from dataclasses import dataclass, field

from .framing import Frame, FrameDecoder, ProtocolError, encode_frame
from .messages import Boot, Command, Event, Heartbeat, Response, decode_message

SR09_MAX_GAP = 0.100  # SR-09: the host writes a valid frame at least this often
# When the host has written nothing for this long it sends HEARTBEAT: 20 ms short of SR-09's
# 100 ms, a margin for the I/O thread waking late (measured 0.2-1.6 ms late on a loaded machine).
HEARTBEAT_INTERVAL = 0.080
LINK_TIMEOUT = 0.250  # SR-09: either end declares the link dead after this much silence
# A host whose own wait ended this much past its deadline was not running (the machine stalled:
# 0.2-0.25 s seen here under load). A device that shared the stall (a simulator on the same
# machine) then gets one round trip, the retry timeout, before its silence counts (SR-09).
STALL_S = 0.025
RETRY_TIMEOUT = 0.050  # a command unanswered for this long is sent again
MAX_ATTEMPTS = 4  # first transmission plus three retries, then CommandFailed


# ---- what the host link reports ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Reply:
    seq: int
    command: Command
    response: Response


@dataclass(frozen=True, slots=True)
class CommandFailed:
    """No answer after every retry: the caller must treat the command as not executed."""

    seq: int
    command: Command
    attempts: int


@dataclass(frozen=True, slots=True)
class DeviceEvent:
    event: Event


@dataclass(frozen=True, slots=True)
class EventGap:
    """Device events were lost between these numbers; the caller should re-read state."""

    expected: int
    received: int


@dataclass(frozen=True, slots=True)
class FrameRejected:
    error: ProtocolError


@dataclass(frozen=True, slots=True)
class LinkSilent:
    """Nothing valid arrived from the device for LINK_TIMEOUT (SR-09)."""

    silent_for: float


LinkEvent = Reply | CommandFailed | DeviceEvent | EventGap | FrameRejected | LinkSilent


@dataclass(slots=True)
class _Pending:
    seq: int
    command: Command
    frame: bytes
    deadline: float
    attempts: int = 1


@dataclass
class LinkStats:
    sent: int = 0
    retransmits: int = 0
    replies: int = 0
    stray_replies: int = 0  # a late answer to a command already answered or failed
    duplicate_events: int = 0
    event_gaps: int = 0
    unexpected: int = 0  # a command type arriving at the host, and the like
    rejected: dict[str, int] = field(default_factory=dict)


class HostLink:
    """Host end. One ordinary command is in flight at a time, in order; priority commands
    (DISARM, ESTOP) are written ahead of everything not yet on the wire and never wait."""

    RECENT_EVENTS = 64  # events remembered to tell a duplicate from a restarted numbering

    def __init__(
        self,
        now: float,
        *,
        retry_timeout: float = RETRY_TIMEOUT,
        max_attempts: int = MAX_ATTEMPTS,
        heartbeat_interval: float | None = HEARTBEAT_INTERVAL,
        link_timeout: float = LINK_TIMEOUT,
        first_seq: int | None = None,
    ) -> None:
        self.retry_timeout = retry_timeout
        self.max_attempts = max_attempts
        self.heartbeat_interval = heartbeat_interval
        self.link_timeout = link_timeout
        # A random first sequence number keeps a restarted host from colliding with the
        # device's cache of answered commands (HELLO clears it as well).
        first = first_seq if first_seq is not None else random.randrange(1, 0x10000)
        if not 1 <= first <= 0xFFFF:
            raise ValueError(f"first_seq {first} is outside 1..65535")
        self._seq = first - 1  # send() advances before use, so the first command gets `first`
        self._decoder = FrameDecoder()
        self._urgent: deque[bytes] = deque()
        self._normal: deque[bytes] = deque()
        self._queue: deque[_Pending] = deque()
        self._inflight: dict[int, _Pending] = {}
        self._current: int | None = None  # seq of the ordinary command in flight
        self._events: deque[LinkEvent] = deque()
        self._last_tx = now
        self._last_rx = now
        self._silence_floor = now  # silence is declared no sooner than this (defer_silence)
        self._deferred = False  # defer_silence used since the device was last heard
        self._silent_reported = False
        self._last_event_no: int | None = None
        self._boot_id: int | None = None  # of the last BOOT seen: a repeat of it is a duplicate
        # Payloads of the last events by number: a duplicate is the same frame again.
        self._recent: OrderedDict[int, bytes] = OrderedDict()
        self.stats = LinkStats()

    # -- sending ----------------------------------------------------------------------------------
    def send(self, command: Command, now: float) -> int:
        """Queue a command; returns its sequence number. Its answer arrives as a Reply, or as
        CommandFailed once every retry went unanswered."""
        seq = self._seq = self._seq % 0xFFFF + 1
        pending = _Pending(seq, command, encode_frame(command.TYPE, seq, command.pack()), 0.0)
        if command.PRIORITY:
            self._transmit(pending, now)
        else:
            self._queue.append(pending)
            self._pump(now)
        return seq

    def _transmit(self, pending: _Pending, now: float) -> None:
        pending.deadline = now + self.retry_timeout
        self._inflight[pending.seq] = pending
        (self._urgent if pending.command.PRIORITY else self._normal).append(pending.frame)
        self.stats.sent += 1

    def _pump(self, now: float) -> None:
        if self._current is None and self._queue:
            pending = self._queue.popleft()
            self._current = pending.seq
            self._transmit(pending, now)

    def data_to_send(self) -> bytes:
        """Everything due on the wire, priority frames first."""
        if not self._urgent and not self._normal:
            return b""
        out = b"".join(self._urgent) + b"".join(self._normal)
        self._urgent.clear()
        self._normal.clear()
        return out

    def note_written(self, now: float) -> None:
        """The I/O layer wrote data_to_send() out at `now` (feeds the heartbeat timer)."""
        self._last_tx = now

    @property
    def busy(self) -> bool:
        return bool(self._inflight or self._queue)

    def pending(self) -> list[Command]:
        return [p.command for p in (*self._inflight.values(), *self._queue)]

    # -- time -------------------------------------------------------------------------------------
    def tick(self, now: float) -> None:
        # Compare with the same sums next_deadline() returns, so that a tick at that deadline
        # acts (now - last >= interval can be False there by float rounding).
        if not self._silent_reported and now >= self._silent_at():
            self._silent_reported = True
            self._events.append(LinkSilent(now - self._last_rx))
        for pending in list(self._inflight.values()):
            if now < pending.deadline:
                continue
            # SR-16: DISARM and ESTOP are retried until answered or the link is declared lost.
            gives_up = pending.attempts >= self.max_attempts and not (
                pending.command.PRIORITY and not self._silent_reported
            )
            if gives_up:
                del self._inflight[pending.seq]
                self._events.append(CommandFailed(pending.seq, pending.command, pending.attempts))
                if pending.seq == self._current:
                    self._current = None
                continue
            pending.attempts += 1
            pending.deadline = now + self.retry_timeout
            self.stats.retransmits += 1
            (self._urgent if pending.command.PRIORITY else self._normal).append(pending.frame)
        self._pump(now)
        if (
            self.heartbeat_interval is not None
            and now >= self._last_tx + self.heartbeat_interval
            and not self._urgent
            and not self._normal
            and not any(isinstance(c, Heartbeat) for c in self.pending())
        ):
            self.send(Heartbeat(), now)

    def defer_silence(self, now: float) -> None:
        """The I/O layer was not running until `now` (its wait ended more than STALL_S late).
        Whatever the device sent meanwhile is read first, as always; but a device that shared
        the stall had no chance to speak, so it gets one round trip (the heartbeat now due, and
        its answer: `retry_timeout`) before the link counts as silent.

        Once per silence: a host late at every step (a machine overloaded for good) still
        declares the device silent, at most one round trip late. A deferral that would change
        nothing (the silence is more than a round trip away) does not use it up."""
        if self._deferred or now + self.retry_timeout <= self._last_rx + self.link_timeout:
            return
        self._deferred = True
        self._silence_floor = now + self.retry_timeout

    def _silent_at(self) -> float:
        return max(self._last_rx + self.link_timeout, self._silence_floor)

    def next_deadline(self) -> float:
        """The latest time by which tick() must be called again."""
        deadlines = [p.deadline for p in self._inflight.values()]
        if self.heartbeat_interval is not None:
            deadlines.append(self._last_tx + self.heartbeat_interval)
        if not self._silent_reported:
            deadlines.append(self._silent_at())
        return min(deadlines) if deadlines else float("inf")

    # -- receiving --------------------------------------------------------------------------------
    def receive_data(self, data: bytes, now: float) -> None:
        self._decoder.feed(data)
        while (item := self._decoder.next()) is not None:
            if isinstance(item, ProtocolError):
                self._reject(item)
            else:
                self._take(item, now)
        self._pump(now)

    def _reject(self, error: ProtocolError) -> None:
        self.stats.rejected[error.counter] = self.stats.rejected.get(error.counter, 0) + 1
        self._events.append(FrameRejected(error))

    def _take(self, frame: Frame, now: float) -> None:
        try:
            message = decode_message(frame.type, frame.payload)
        except ProtocolError as exc:
            self._reject(exc)
            return
        self._last_rx = now
        self._deferred = False
        self._silent_reported = False
        if isinstance(message, Response):
            pending = self._inflight.pop(frame.seq, None)
            if pending is None:
                self.stats.stray_replies += 1
                return
            if pending.seq == self._current:
                self._current = None
            self.stats.replies += 1
            self._events.append(Reply(frame.seq, pending.command, message))
        elif isinstance(message, Event):
            self._take_event(message, frame.payload)
        else:
            self.stats.unexpected += 1

    def _take_event(self, event: Event, payload: bytes) -> None:
        last = self._last_event_no
        if isinstance(event, Boot) and event.boot_id != self._boot_id:
            self._boot_id = event.boot_id  # a new boot: event numbering restarts here
        elif last is None:
            pass
        elif event.event_no <= last:
            if self._recent.get(event.event_no) == payload:
                self.stats.duplicate_events += 1  # the very frame again: drop it
                return
            # An old number with new content: the device restarted its numbering and its BOOT
            # was lost. Dropping these as duplicates would lose shots (SR-11): report the gap.
            self.stats.event_gaps += 1
            self._recent.clear()
            self._events.append(EventGap(last + 1, event.event_no))
        elif event.event_no != last + 1:
            self.stats.event_gaps += 1
            self._events.append(EventGap(last + 1, event.event_no))
        self._last_event_no = event.event_no
        self._recent[event.event_no] = payload
        while len(self._recent) > self.RECENT_EVENTS:
            self._recent.popitem(last=False)
        self._events.append(DeviceEvent(event))

    def next_event(self) -> LinkEvent | None:
        return self._events.popleft() if self._events else None


__all__ = [
    "CommandFailed",
    "DeviceEvent",
    "EventGap",
    "FrameRejected",
    "HostLink",
    "LinkEvent",
    "LinkSilent",
    "Reply",
]
