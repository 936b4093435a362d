"""The console's background pusher: `fleet push` in a worker thread of its own, at start,
after each session end (kick) and every `every_s` seconds.

It never touches the controller, its owner thread or the console's own connection to the
shot log: each push opens its own SQLite connection (WAL: its reads never block the
controller's writes) and its own PostgreSQL connection, with bounded connect and statement
times. A failure (offline, refused) is reported through `report` for the status line and
retried at the next kick or interval; nothing is lost, the outbox only advances after the
central store committed.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from laserctl.auth.console_key import ConsoleKey

from .central import CentralError, FleetRefused
from .push import DEFAULT_BATCH, PushReport, push

DEFAULT_EVERY_S = 300.0


@dataclass(frozen=True, slots=True)
class PushOutcome:
    ok: bool
    at: float  # time.time() when the push ended
    shipped: int  # rows new to the central store
    error: str  # why not ("" when ok)
    refused: bool = False  # the store refused the log (not merely unreachable)

    def line(self) -> str:
        """The status line's words for it."""
        when = time.strftime("%H:%M", time.localtime(self.at))
        if self.ok:
            return (
                f"fleet: shipped {self.shipped} rows {when}"
                if self.shipped
                else (f"fleet: up to date {when}")
            )
        if self.refused:
            return f"[b red]fleet: REFUSED {when}[/] {_markup_safe(self.error)}"
        return f"[b yellow]fleet: not shipped {when}, will retry[/] {_markup_safe(self.error)}"


def _markup_safe(text: str) -> str:
    from rich.markup import escape

    return escape(text)


class FleetPusher:
    def __init__(
        self,
        db: Path,
        url: str,
        report: Callable[[PushOutcome], object],
        *,
        key: Callable[[], ConsoleKey] | None = None,
        every_s: float = DEFAULT_EVERY_S,
        batch: int = DEFAULT_BATCH,
        push_fn: Callable[..., PushReport] = push,
    ) -> None:
        self.db = db
        self.url = url
        self.every_s = every_s
        self.batch = batch
        self._report = report
        self._key = key
        self._push = push_fn
        self._kick = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.pushes = 0  # pushes attempted (for tests and the status)

    def start(self) -> None:
        """Start the worker; it pushes at once, then on kick() and every every_s."""
        if self._thread is not None:
            return
        self._kick.set()
        self._thread = threading.Thread(target=self._run, name="fleet-push", daemon=True)
        self._thread.start()

    def kick(self) -> None:
        """Push soon (a session ended). Never blocks."""
        self._kick.set()

    def stop(self, timeout: float = 2.0) -> None:
        """Stop the worker; a push in progress is left to finish (or time out) on its own
        daemon thread: closing the console never waits on the network for long."""
        self._stop.set()
        self._kick.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.every_s)
            self._kick.clear()
            if self._stop.is_set():
                break
            outcome = self._once()
            self.pushes += 1
            with contextlib.suppress(Exception):  # the console may be shutting down
                self._report(outcome)

    def _once(self) -> PushOutcome:
        try:
            key = self._key() if self._key is not None else None
            done = self._push(self.db, self.url, key=key, batch=self.batch)
            return PushOutcome(True, time.time(), sum(done.shipped.values()), "")
        except FleetRefused as exc:
            return PushOutcome(False, time.time(), 0, str(exc), refused=True)
        except CentralError as exc:
            return PushOutcome(False, time.time(), 0, str(exc))
        except Exception as exc:  # a local problem (key, log): said, retried, never raised
            return PushOutcome(False, time.time(), 0, f"{type(exc).__name__}: {exc}")
