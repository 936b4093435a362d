"""The controller in this process against a device URL, wired as `laserctl session` wires it
(shot log, group-commit writer, event stream, calibration from the log), with the host's
transport tapped: every read and write is kept with its time (time.monotonic_ns(), taken next
to the system call), so a test can say when an event reached the host and when the host's
answer left, without adding work between the two.

    with Controlled(url, db, plan) as ctl:
        ctl.ready(); ctl.sim("press")
        mark = ctl.tap.mark()
        ctl.sim("open key")
        seen = ctl.tap.first_read(mark, lambda m: ...)    # (ns, message)
        sent = ctl.tap.first_write(mark, lambda m: isinstance(m, Disarm))
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from drivers.host import HandpieceConnection, Notification
from drivers.protocol import FrameDecoder, Message, ProtocolError, decode_message
from drivers.protocol.framing import Frame
from drivers.transport import Transport, open_transport
from laserctl.calibration import calibration_lookup
from laserctl.controller.core import Controller
from laserctl.controller.events import ConfirmEyewear, Connect, RefreshStatus, RequestArm
from laserctl.controller.runner import ControllerRunner
from laserctl.controller.snapshot import Snapshot
from laserctl.controller.table import State
from laserctl.logging import EventStream
from laserctl.plan import load_plan
from laserctl.records import controller_context, open_store
from laserctl.records.writer import GroupCommitWriter


@dataclass(frozen=True)
class Chunk:
    at_ns: int
    data: bytes


class TapTransport:
    """A transport that keeps what crossed it, each chunk with its time."""

    def __init__(self, inner: Transport, log: Tap) -> None:
        self.inner, self.log = inner, log
        self.description = inner.description

    def write(self, data: bytes) -> None:
        at = time.monotonic_ns()
        self.inner.write(data)
        self.log.writes.append(Chunk(at, bytes(data)))

    def read(self, timeout: float) -> bytes:
        data = self.inner.read(timeout)
        if data:
            self.log.reads.append(Chunk(time.monotonic_ns(), data))
        return data

    def close(self) -> None:
        self.inner.close()


class Tap:
    """What crossed every transport the connection opened (reconnects included)."""

    def __init__(self) -> None:
        self.reads: list[Chunk] = []
        self.writes: list[Chunk] = []

    def open(self, url: str) -> Transport:
        return TapTransport(open_transport(url), self)

    def mark(self) -> tuple[int, int]:
        return len(self.reads), len(self.writes)

    def first_read(
        self, mark: tuple[int, int], match: Callable[[Message], bool]
    ) -> tuple[int, Message] | None:
        return _first(self.reads[mark[0] :], match)

    def first_write(
        self, mark: tuple[int, int], match: Callable[[Message], bool], after_ns: int = 0
    ) -> tuple[int, Message] | None:
        return _first([c for c in self.writes[mark[1] :] if c.at_ns >= after_ns], match)

    def write_times(self, since: int = 0, until: int | None = None) -> list[int]:
        return [
            c.at_ns for c in self.writes if c.at_ns >= since and (until is None or c.at_ns <= until)
        ]


def _first(chunks: list[Chunk], match: Callable[[Message], bool]) -> tuple[int, Message] | None:
    """The chunk in which a matching message's frame was completed, and the message."""
    decoder = FrameDecoder()
    for chunk in chunks:
        decoder.feed(chunk.data)
        while (item := decoder.next()) is not None:
            if not isinstance(item, Frame):
                continue
            try:
                message = decode_message(item.type, item.payload)
            except (ProtocolError, ValueError):
                continue
            if match(message):
                return chunk.at_ns, message
    return None


class Controlled:
    """A controller session in this process: plan file, shot log (already calibrated)."""

    def __init__(self, url: str, db: Path, plan_path: Path, *, patient: str, area: str) -> None:
        self.tap = Tap()
        self.store = open_store(db)
        self.session_id = self.store.new_session_id()
        self.controller = Controller(load_plan(plan_path), session_id=self.session_id)
        context = controller_context(self.controller)
        self.store.begin_session(patient, area, session_id=self.session_id, context=context)
        self.writer = GroupCommitWriter(self.store)

        def connect(url: str, on_event: Callable[[Notification], None]) -> HandpieceConnection:
            return HandpieceConnection(url, on_event=on_event, reconnect=True, opener=self.tap.open)

        self.runner = ControllerRunner(
            url,
            self.controller,
            store=self.store,
            writer=self.writer,
            connection_factory=connect,
            calibration=calibration_lookup(self.store),
        )
        stream = EventStream(
            self.store, self.session_id, sink=self.writer.submit_event, context=context
        )
        self.runner.on_note = stream.on_note
        self.states: list[tuple[int, State]] = []  # (monotonic ns, state) at each change
        self._lock = threading.Lock()
        self.runner.subscribe(self._changed)

    def _changed(self, snapshot: Snapshot) -> None:
        at = time.monotonic_ns()
        with self._lock:
            if not self.states or self.states[-1][1] is not snapshot.state:
                self.states.append((at, snapshot.state))

    def entered(self, state: State, after_ns: int) -> int | None:
        """When the controller (first) entered `state` after `after_ns`."""
        with self._lock:
            return next((t for t, s in self.states if s is state and t >= after_ns), None)

    def __enter__(self) -> Controlled:
        self.runner.start()
        self.runner.submit(Connect())
        self.runner.sync()
        self.wait(lambda s: s.state is State.STANDBY and not s.awaiting, "STANDBY")
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self.runner.close()
            self.writer.flush()
        finally:
            self.writer.close()
            self.store.end_session(
                self.session_id, {"final_state": str(self.runner.snapshot.state)}
            )
            self.store.close()

    def wait(self, done: Callable[[Snapshot], bool], what: str, timeout: float = 5.0) -> Snapshot:
        snap = self.runner.wait_for(done, timeout)
        assert snap is not None, f"not {what} within {timeout} s: {self.runner.snapshot}"
        return snap

    def sim(self, text: str) -> None:
        self.runner.sim_control(text)

    def ready(self) -> None:
        """Eyewear confirmed and armed: READY (after the plan's ready delay the device fires
        when the footswitch goes down)."""
        self.runner.submit(ConfirmEyewear())
        self.runner.submit(RequestArm())
        self.wait(lambda s: s.state is State.READY, "READY")

    def device_counter(self) -> int:
        """The device's shot counter, as its latest STATUS says (for a simulator that lives in
        this process: no other connection reaches it)."""
        self.runner.submit(RefreshStatus())
        self.runner.sync()
        self.wait(lambda s: s.commands_in_flight == 0, "STATUS answered")
        status = self.runner.call(lambda c: c.status)
        assert status is not None
        return int(status.shot_no)
