"""The running controller: one owner thread, one queue, one HandpieceConnection.

Everything that can change the controller goes through the queue (operator commands from any
thread, the connection's notifications from its reader thread, command results, ticks,
calibration readings), and only the owner thread calls Controller.handle(), so there are no
races. The runner carries out the actions the core returns: commands go to connection.send(),
where DISARM and ESTOP are written at once ahead of all other traffic (they never wait behind
the queue); estop() and disarm() also write them straight from the caller's thread, to every
open transport (one still waiting for HELLO included), before queueing the operator command.

The owner thread never blocks on I/O it does not own: opening and reopening a connection (HELLO)
runs on a thread of its own (link_opening.py), and the calibration is read from the shot log on
another (calibration_reader.py), so an interlock event never waits behind a HELLO or a disk
commit (SR-02, SR-03).

An exception anywhere on this path (an action, the shot store, a subscriber) sends DISARM
directly and feeds InternalError to the core, which latches FAULT (SR-10).
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from drivers.host import (
    CommandError,
    ConnectionCrashed,
    HandpieceConnection,
    Notification,
)
from drivers.protocol import (
    CommandFailed,
    DeviceInfo,
    Disarm,
    EStop,
    Heartbeat,
    Reply,
    Response,
    SimControl,
)

from .calibration_reader import CalibrationReader
from .core import Controller
from .dosing import CalibrationSource, training_calibration
from .events import (
    Action,
    CloseLink,
    CommandDone,
    CommandLost,
    ControllerEvent,
    InternalError,
    Note,
    OpenLink,
    ReadCalibration,
    RecordShot,
    RequestDisarm,
    RequestEStop,
    Send,
    ShotsDurable,
    Tick,
)
from .link_opening import ConnectionFactory, Connections, Opened, OpenFailed
from .shots import MemoryShotStore, ShotStore
from .snapshot import Snapshot, SnapshotBoard
from .table import State

if TYPE_CHECKING:
    from laserctl.records.writer import GroupCommitWriter

T = TypeVar("T")
Clock = Callable[[], float]

TICK_S = 0.02  # timer resolution of the core: inactivity, ready countdown
# While the queue is busy (a burst of shots), a new snapshot at least this often; at once when
# the queue runs empty or the state changes. A snapshot costs ~50 us: one per shot would be
# most of a shot's CPU at a few thousand shots a second.
PUBLISH_S = 0.02


def default_connection(url: str, on_event: Callable[[Notification], None]) -> HandpieceConnection:
    return HandpieceConnection(url, on_event=on_event, reconnect=True)


class _Call:
    """Run fn(controller) on the owner thread (used for reports and as a barrier)."""

    def __init__(self, fn: Callable[[Controller], Any]) -> None:
        self.fn = fn
        self.future: Future[Any] = Future()


_STOP = object()


@dataclass(frozen=True, slots=True)
class _Durable:
    """From the group-commit writer: every record up to its ticket `written` is on disk."""

    written: int


class ControllerRunner:
    def __init__(
        self,
        url: str,
        controller: Controller,
        *,
        store: ShotStore | None = None,
        clock: Clock = time.monotonic,
        connection_factory: ConnectionFactory = default_connection,
        tick_s: float = TICK_S,
        writer: GroupCommitWriter | None = None,
        calibration: CalibrationSource = training_calibration,
        wall_clock: Clock = time.time,
    ) -> None:
        """`calibration`: where the connected handpiece's calibration is read from (SR-14:
        laserctl.calibration.calibration_lookup(store); the default lets only a simulated
        handpiece be armed, uncalibrated). `wall_clock`: the epoch time its readings are
        stamped with; the core carries it forward on `clock`."""
        self.url = url
        self.controller = controller
        self.store: ShotStore = store if store is not None else MemoryShotStore()
        self.clock = clock
        self.tick_s = tick_s
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()  # C: ~4x a Queue
        self.calibration = CalibrationReader(calibration, self._queue.put, wall_clock=wall_clock)
        self._links = Connections(
            connection_factory,
            url,
            self._on_notification,
            self._queue.put,
            self.calibration.read_now,
        )
        self._board = SnapshotBoard(controller.snapshot(0))
        self.notes: deque[Note] = deque(maxlen=10_000)
        self.on_note: Callable[[Note], None] | None = None
        self._thread: threading.Thread | None = None
        # Group commit (SR-11): shots go to the writer thread, whose completion the core hears
        # as ShotsDurable; (writer ticket, RecordShot ticket) of the shots still on their way.
        self._writer = writer
        self._writing: deque[tuple[int, int]] = deque()
        if writer is not None:
            writer.on_durable = lambda ticket: self._queue.put(_Durable(ticket))
            writer.on_error = lambda error: self._queue.put(
                InternalError(f"{type(error).__name__}: {error}")
            )

    # ---- lifecycle --------------------------------------------------------------------------
    def start(self) -> None:
        self.calibration.start()
        self._thread = threading.Thread(target=self._run, name="controller", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Disarm, stop the owner thread, close the link."""
        self._links.disarm()
        self._queue.put(_STOP)
        if self._thread is not None:
            self._thread.join(timeout)
        self.calibration.close()
        self._links.close()

    def __enter__(self) -> ControllerRunner:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- operator side (any thread) ---------------------------------------------------------
    def submit(self, event: ControllerEvent) -> None:
        self._queue.put(event)

    def estop(self) -> None:
        """ESTOP on the wire now, from this thread, on every open transport (SR-03), then
        through the core."""
        try:
            self._links.stop_now(EStop())
        finally:
            self.submit(RequestEStop())

    def disarm(self) -> None:
        try:
            self._links.stop_now(Disarm())
        finally:
            self.submit(RequestDisarm())

    def refresh_calibration(self) -> None:
        """Read the handpiece's calibration again now (e.g. after a service calibration)."""
        self.calibration.refresh()

    def call(self, fn: Callable[[Controller], T], timeout: float = 5.0) -> T:
        """fn(controller) on the owner thread, after everything queued before it."""
        item = _Call(fn)
        self._queue.put(item)
        result: T = item.future.result(timeout)
        return result

    def sync(self, timeout: float = 5.0) -> None:
        self.call(lambda _c: None, timeout)

    def report(self) -> dict[str, Any]:
        return self.call(lambda c: c.report())

    @property
    def device_info(self) -> DeviceInfo | None:
        return self.controller.device

    def sim_control(self, text: str, timeout: float = 1.0) -> Response:
        """A fault-injection command to a simulated handpiece (NAK UNSUPPORTED on hardware)."""
        connection = self._links.connection
        if connection is None:
            raise CommandError("not connected")
        return connection.call(SimControl(text), timeout)

    @property
    def _connection(self) -> HandpieceConnection | None:
        """The identified connection (the tests reach the simulator through it)."""
        return self._links.connection

    # ---- snapshots --------------------------------------------------------------------------
    @property
    def snapshot(self) -> Snapshot:
        return self._board.current

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        """callback(snapshot) on the owner thread at every change; keep it short. An exception
        in it is an exception in the controller path: FAULT."""
        return self._board.subscribe(callback)

    def wait_for(self, done: Callable[[Snapshot], bool], timeout: float) -> Snapshot | None:
        return self._board.wait_for(done, timeout)

    # ---- the owner thread -------------------------------------------------------------------
    def _run(self) -> None:
        next_tick = self.clock()
        published_at = -1e9
        published_state: State | None = None
        dirty = False  # fed since the last snapshot
        while True:
            try:
                item = self._queue.get(timeout=max(0.0, next_tick - self.clock()))
            except queue.Empty:
                item = Tick()
            if item is _STOP:
                return
            if isinstance(item, _Durable):
                self._durable(item.written)
                dirty = True
            elif isinstance(item, Opened | OpenFailed):
                if (taken := self._links.taken(item, self.clock())) is not None:
                    self._feed(taken)
                dirty = True
            elif isinstance(item, _Call):
                try:
                    item.future.set_result(item.fn(self.controller))
                except Exception as exc:
                    item.future.set_exception(exc)
            else:
                self._feed(item)  # type: ignore[arg-type]
                dirty = True
            now = self.clock()
            if now >= next_tick:
                if not isinstance(item, Tick):
                    self._feed(Tick())
                self._links.maybe_reopen(now)
                next_tick = now + self.tick_s
                dirty = True
            if dirty and (
                self._queue.empty()
                or self.controller.state is not published_state
                or now - published_at >= PUBLISH_S
            ):
                self._publish()
                dirty = False
                published_at, published_state = now, self.controller.state

    def _feed(self, event: ControllerEvent) -> None:
        try:
            actions = self.controller.handle(event, self.clock())
            self._execute(actions)
            if isinstance(event, ConnectionCrashed):
                self._links.reopen_at = self.clock()
        except Exception as exc:
            self._fail_safe(exc)

    def _execute(self, actions: list[Action]) -> None:
        stored = 0  # the last RecordShot the store took at once (no writer)
        for action in actions:  # in order; a failing one stops the rest (SR-10)
            match action:
                case Send():
                    self._send(action)
                case OpenLink():
                    self._links.open(reconnect=False)
                case CloseLink():
                    self._links.close()
                case ReadCalibration():
                    self.calibration.want(action.info)
                case RecordShot():
                    if self._writer is not None:
                        written = self._writer.submit_shot(action.record)
                        self._writing.append((written, action.ticket))
                    else:
                        self.store.record(action.record)  # durable when it returns
                        stored = action.ticket
                case Note():
                    self.notes.append(action)
                    if self.on_note is not None:
                        self.on_note(action)
        if stored:
            self._feed(ShotsDurable(stored))

    def _durable(self, written: int) -> None:
        """The writer committed up to its ticket `written`: the shots in it are ShotsDurable."""
        upto = 0
        while self._writing and self._writing[0][0] <= written:
            upto = self._writing.popleft()[1]
        if upto:
            self._feed(ShotsDurable(upto))

    def _send(self, action: Send) -> None:
        connection = self._links.connection
        if connection is None:
            self._queue.put(CommandLost(action.token, "not connected"))
            return
        future = connection.send(action.command)
        token = action.token

        def done(result: Future[Response]) -> None:
            error = result.exception()
            if error is not None:
                self._queue.put(CommandLost(token, str(error)))
            else:
                self._queue.put(CommandDone(token, result.result()))

        future.add_done_callback(done)

    def _on_notification(self, notification: Notification) -> None:
        """From a connection's reader thread, or from the thread opening it (what it reported
        during open(), handed over after Opened): onto the queue, nothing else."""
        if isinstance(notification, Reply):
            if isinstance(notification.command, Heartbeat):
                self._queue.put(notification)  # the heartbeat's STATUS keeps the view fresh
            return  # our own commands' answers come through their futures
        if isinstance(notification, CommandFailed):
            return
        self._queue.put(notification)

    def _fail_safe(self, exc: BaseException) -> None:
        """SR-10: DISARM straight to the wire, then FAULT in the core."""
        connection = self._links.connection
        with contextlib.suppress(Exception):
            self._links.stop_now(Disarm())
        error = f"{type(exc).__name__}: {exc}"
        actions = self.controller.handle(InternalError(error), self.clock())
        for action in actions:
            if isinstance(action, Send) and connection is not None:
                with contextlib.suppress(Exception):
                    self._send(action)
            elif isinstance(action, Note):
                self.notes.append(action)

    def _publish(self) -> None:
        self._board.publish(self.controller.snapshot(self._board.seq), self._fail_safe)
