"""One connection being opened (or reopened) off the runner's owner thread.

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
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from drivers.host import CommandError, HandpieceConnection, Notification
from drivers.protocol import DeviceInfo

from .events import CalibrationLoaded

ConnectionFactory = Callable[[str, Callable[[Notification], None]], HandpieceConnection]


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
        read_calibration: Callable[[DeviceInfo], CalibrationLoaded],
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
        read_calibration: Callable[[DeviceInfo], CalibrationLoaded],
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
