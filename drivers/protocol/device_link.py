"""Reliable command link over the frame layer, the device end, sans-IO.

DeviceLink takes checked commands in (DISARM and ESTOP ahead of the rest) and sends responses
and events out. A retransmitted command is answered again from a cache of answered commands and
never executed twice (SR-16); a sound frame with a bad payload is answered NAK at this layer.
The host end is link.py. Nothing here reads a clock or touches a socket.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass

from .constants import NakReason
from .framing import Frame, FrameDecoder, ProtocolError, encode_frame
from .messages import MESSAGES, Command, Event, Hello, Nak, Response, decode_message


@dataclass(frozen=True, slots=True)
class IncomingCommand:
    seq: int
    command: Command


class DeviceLink:
    """Device end: checked commands in (priority first), responses and events out."""

    CACHE = 16  # answered commands remembered for retransmissions

    def __init__(self) -> None:
        self._decoder = FrameDecoder()
        self._commands: deque[IncomingCommand] = deque()
        self._answered: OrderedDict[tuple[int, int, bytes], bytes] = OrderedDict()
        self._awaiting: dict[int, tuple[int, int, bytes]] = {}
        self._out: deque[bytes] = deque()
        self.duplicates = 0
        self.rejected = 0

    def receive_data(self, data: bytes) -> int:
        """Feed bytes; returns how many valid frames arrived (each one feeds the watchdog)."""
        self._decoder.feed(data)
        valid = 0
        while (item := self._decoder.next()) is not None:
            if isinstance(item, ProtocolError):
                self.rejected += 1
                continue
            valid += 1
            self._take(item)
        return valid

    def _take(self, frame: Frame) -> None:
        key = (frame.seq, frame.type, frame.payload)
        if frame.type == Hello.TYPE:
            self._answered.clear()  # a new host session: its sequence numbers start afresh
        elif key in self._answered:
            self.duplicates += 1
            self._answered.move_to_end(key)
            self._out.append(self._answered[key])
            return
        elif key in self._awaiting.values():
            self.duplicates += 1  # still being executed: the answer will go out once
            return
        try:
            message = decode_message(frame.type, frame.payload)
        except ProtocolError:
            # The frame itself was sound (CRC and length), so its sender can be told why.
            reason = NakReason.MALFORMED if frame.type in _COMMAND_TYPES else NakReason.UNSUPPORTED
            nak = Nak(frame.type, reason, 0, 0)
            self._out.append(encode_frame(Nak.TYPE, frame.seq, nak.pack()))
            return
        if not isinstance(message, Command):
            self.rejected += 1
            return
        incoming = IncomingCommand(frame.seq, message)
        self._awaiting[frame.seq] = key
        if message.PRIORITY:
            self._commands.appendleft(incoming)
        else:
            self._commands.append(incoming)

    def next_command(self) -> IncomingCommand | None:
        return self._commands.popleft() if self._commands else None

    def forget(self, seq: int) -> None:
        """A command taken but never to be answered (it did not really arrive: the simulator's
        pulled cable). Its retransmission is then a new command, not one still executing."""
        self._awaiting.pop(seq, None)

    def respond(self, seq: int, response: Response) -> None:
        frame = encode_frame(response.TYPE, seq, response.pack())
        key = self._awaiting.pop(seq, None)
        if key is not None:
            self._answered[key] = frame
            while len(self._answered) > self.CACHE:
                self._answered.popitem(last=False)
        self._out.append(frame)

    def emit(self, event: Event) -> None:
        self._out.append(encode_frame(event.TYPE, event.event_no & 0xFFFF, event.pack()))

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def discard_output(self) -> None:
        self._out.clear()


_COMMAND_TYPES = frozenset(t for t, cls in MESSAGES.items() if issubclass(cls, Command))
