"""The runner's connections: the identified one (the core's), and one being opened (or
reopened) off the runner's owner thread.

HandpieceConnection.open() blocks until the handpiece answers HELLO (up to its hello timeout);
the owner thread must never wait for that, since it serves every interlock event and operator
command (SR-02, SR-10). So the opening runs on a thread of its own, and:

- the connection is a stop target from the moment its transport is open: DISARM and ESTOP sent
  to it go on the wire while HELLO is still unanswered (HandpieceConnection writes them through
  the handshake's link, SR-03);
- what the connection reports before the owner thread has taken it is held, then queued after
  the marker that hands it over, so the core hears LinkOpened (or Reconnected) first;
- an opening the runner no longer wants (closed, disconnected) is dropped: its connection is
  closed and anything it still reports is ignored.

Connections holds both for the runner: changed on its owner thread only, while stop_now()
(DISARM, ESTOP) may come from any thread.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from dataclasses import dataclass

from drivers.host import CommandError, HandpieceConnection, Notification, Reconnected
from drivers.protocol import Command, DeviceInfo, Disarm

from .events import CalibrationLoaded, LinkOpened, LinkOpenFailed

ConnectionFactory = Callable[[str, Callable[[Notification], None]], HandpieceConnection]
ReadCalibration = Callable[[DeviceInfo], CalibrationLoaded]
REOPEN_S = 1.0  # after a connection crash, how often to try a new one


@dataclass(frozen=True, slots=True)
class Opened:
    """On the runner's queue: the opening's connection identified the handpiece; the owner
    thread takes it (then feeds LinkOpened or Reconnected)."""

    opening: LinkOpening
    info: DeviceInfo


@dataclass(frozen=True, slots=True)
class OpenFailed:
    opening: LinkOpening
    error: str


class LinkOpening:
    def __init__(
        self,
        factory: ConnectionFactory,
        url: str,
        forward: Callable[[Notification], None],
        *,
        reconnect: bool,
    ) -> None:
        self.reconnect = reconnect  # after a crash: Reconnected, and retried on failure
        self._forward = forward
        self._lock = threading.Lock()
        self._held: list[Notification] | None = []
        self._dropped = False
        self.connection = factory(url, self._notify)

    def start(
        self,
        put: Callable[[object], None],
        read_calibration: ReadCalibration,
    ) -> None:
        """open() on a thread of its own. Then, on that thread: OpenFailed onto the queue
        (`put`); or the handpiece's calibration read (so the first identification has it),
        and that reading and Opened queued ahead of what the connection reported meanwhile."""
        threading.Thread(
            target=self._run, args=(put, read_calibration), name="link open", daemon=True
        ).start()

    def _run(
        self,
        put: Callable[[object], None],
        read_calibration: ReadCalibration,
    ) -> None:
        try:
            info = self.connection.open()
        except CommandError as exc:
            put(OpenFailed(self, str(exc)))
            return
        except Exception as exc:  # SR-10: reported, never a silent dead thread
            put(OpenFailed(self, f"opening the link failed: {type(exc).__name__}: {exc}"))
            return
        reading = read_calibration(info)
        if not self._hand_over(put, (reading, Opened(self, info))):
            self.connection.close()  # dropped meanwhile

    def _notify(self, notification: Notification) -> None:
        """The connection's reader thread (or open() itself, for events of the handshake)."""
        with self._lock:
            if self._dropped:
                return
            if self._held is not None:
                self._held.append(notification)
                return
        self._forward(notification)

    def _hand_over(self, put: Callable[[object], None], first: tuple[object, ...]) -> bool:
        """Queue `first` (ending with the marker that hands the connection to the owner
        thread), then what the connection reported meanwhile; from now on its notifications
        go straight on. False when the opening was dropped."""
        with self._lock:
            if self._dropped:
                return False
            for item in first:
                put(item)
            held, self._held = self._held or [], None
            for notification in held:
                self._forward(notification)
        return True

    def drop(self) -> None:
        """Not wanted any more: close the connection, ignore what it still reports."""
        with self._lock:
            self._dropped = True
            self._held = None
        self.connection.close()


class Connections:
    def __init__(
        self,
        factory: ConnectionFactory,
        url: str,
        forward: Callable[[Notification], None],
        put: Callable[[object], None],
        read_calibration: ReadCalibration,
    ) -> None:
        """`forward` takes the connections' notifications; `put` queues what an opening
        reports, `read_calibration` reads the handpiece's calibration once it is identified."""
        self._factory = factory
        self.url = url
        self._forward = forward
        self._put = put
        self._read_calibration = read_calibration
        self.connection: HandpieceConnection | None = None  # identified, the core's
        self.opening: LinkOpening | None = None  # being opened (HELLO), off the owner thread
        self.reopen_at: float | None = None  # when to open a new one after a crash

    def stop_now(self, command: Command) -> None:
        """DISARM or ESTOP to the identified connection and to one being opened: a transport
        that is open but has not answered HELLO yet takes it too (HandpieceConnection)."""
        opening = self.opening  # read first: taken() sets connection, then clears opening
        connection = self.connection
        if connection is not None:
            connection.send(command)
        if opening is not None and opening.connection is not connection:
            opening.connection.send(command)

    def open(self, *, reconnect: bool) -> None:
        """Open the URL off the owner thread (HELLO blocks); the result comes back queued."""
        if self.opening is not None:
            return  # one at a time: that one reports
        self.opening = LinkOpening(self._factory, self.url, self._forward, reconnect=reconnect)
        self.opening.start(self._put, self._read_calibration)

    def taken(
        self, item: Opened | OpenFailed, now: float
    ) -> LinkOpened | Reconnected | LinkOpenFailed | None:
        """What an opening reported, on the owner thread: the event for the core, if any (a
        reopening that failed is tried again REOPEN_S later)."""
        opening = item.opening
        if opening is not self.opening:
            opening.drop()  # closed or disconnected meanwhile
            return None
        if isinstance(item, OpenFailed):
            self.opening = None
            if opening.reconnect:
                self.reopen_at = now + REOPEN_S
                return None
            return LinkOpenFailed(item.error)
        self.connection = opening.connection  # before opening is cleared: see stop_now
        self.opening = None
        return Reconnected(item.info) if opening.reconnect else LinkOpened(item.info)

    def maybe_reopen(self, now: float) -> None:
        """After a connection crash its reader thread is gone: open a new connection."""
        if self.reopen_at is None or now < self.reopen_at or self.opening is not None:
            return
        self.reopen_at = None
        old, self.connection = self.connection, None
        if old is not None:
            old.close()
        self.open(reconnect=True)

    def disarm(self) -> None:
        """Before closing: DISARM answered by the identified connection, and sent to one still
        waiting for HELLO."""
        connection = self.connection
        if connection is not None and connection.connected:
            with contextlib.suppress(CommandError):
                connection.call(Disarm(), timeout=0.5)
        opening = self.opening
        if opening is not None:
            opening.connection.send(Disarm())

    def close(self) -> None:
        """Drop the one being opened, close the identified one."""
        opening, self.opening = self.opening, None
        if opening is not None:
            opening.drop()
        if self.connection is not None:
            self.connection.close()
            self.connection = None
