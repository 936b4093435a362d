"""Between one ControllerRunner and the console, in both directions, without either waiting.

Out (controller -> console): the runner calls our subscriber on its owner thread at every
change. We build the ConsoleView there (reading the controller is race-free on that thread),
keep only the newest, and wake the console at most once until it has taken it: the owner
thread never waits for the interface (an interlock reaction must not queue behind a redraw,
SR-02), and a burst of changes costs the interface one redraw. `wake` must not block: the app
passes its thread-safe post_message (Textual's call_from_thread would wait for the interface
to run the callback, which is exactly what the owner thread must never do).

In (console -> controller): submit() only puts the command on the runner's queue. estop() and
disarm() write to the wire at once (runner.estop/disarm, SR-03); they run on a thread of their
own per press, so a slow transport write never freezes the interface and a stop never waits
behind any other console work.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from .view import CauseView, ConsoleView, RefusalView, ShotPoint

if TYPE_CHECKING:
    from laserctl.controller.events import ControllerEvent, Note
    from laserctl.controller.runner import ControllerRunner
    from laserctl.controller.snapshot import Snapshot
    from laserctl.shotrecord import ShotRecord

SHOTS_KEPT = 60  # the sparkline's width
LOG_KEPT = 200
RECENT = 5  # refusals and warnings shown


class ControllerBridge:
    def __init__(self, runner: ControllerRunner, wake: Callable[[], None]) -> None:
        self.runner = runner
        self._wake = wake
        self._lock = threading.Lock()
        self._latest: ConsoleView | None = None
        self._woken = False
        self._shots: deque[ShotPoint] = deque(maxlen=SHOTS_KEPT)
        self._log: deque[str] = deque(maxlen=LOG_KEPT)
        self._unsubscribe: Callable[[], None] | None = None

    def attach(self) -> None:
        self._unsubscribe = self.runner.subscribe(self._on_snapshot)

    def detach(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None

    # ---- the controller's owner thread: short, never blocking, never raising ------------------
    def on_note(self, note: Note) -> None:
        with self._lock:
            self._log.append(f"[{note.kind}] {note.message}")

    def on_shot(self, shot: ShotRecord) -> None:
        point = ShotPoint(
            shot.shot_no, shot.dose_param.field_name, shot.set_value, shot.measured_value
        )
        with self._lock:
            self._shots.append(point)

    def _on_snapshot(self, snapshot: Snapshot) -> None:
        controller = self.runner.controller  # safe: this is its owner thread
        causes = tuple(
            CauseView(str(c.kind), c.message, str(c.interlock) if c.interlock is not None else None)
            for c in controller.causes
        )
        refusals = tuple(RefusalView(r.command, r.reason) for r in controller.refusals[-RECENT:])
        warnings = tuple(controller.warnings[-RECENT:])
        view = ConsoleView(snapshot, causes, refusals, warnings)
        with self._lock:
            self._latest = view
            if self._woken:
                return
            self._woken = True
        self._wake()

    # ---- the interface's thread ---------------------------------------------------------------
    def take(self) -> ConsoleView | None:
        """The newest view (with the shots and log as they are now); re-arms the wake-up."""
        with self._lock:
            self._woken = False
            view = self._latest
            if view is None:
                return None
            return ConsoleView(
                view.snapshot,
                view.causes,
                view.refusals,
                view.warnings,
                tuple(self._shots),
                tuple(list(self._log)[-12:]),
            )

    def submit(self, event: ControllerEvent) -> None:
        self.runner.submit(event)

    def estop(self) -> None:
        _now_on_own_thread(self.runner.estop, "console e-stop")

    def disarm(self) -> None:
        _now_on_own_thread(self.runner.disarm, "console disarm")


def _now_on_own_thread(stop: Callable[[], None], name: str) -> None:
    """Run a stop command on a fresh thread; if no thread can be started, right here (a stop
    that waits for the interface is better than no stop)."""
    try:
        threading.Thread(target=stop, name=name, daemon=True).start()
    except RuntimeError:
        stop()
