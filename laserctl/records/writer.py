"""Group commit: many shots and events per transaction, on a thread of its own.

The controller's owner thread must not wait for the disk (a commit on a clinic PC's eMMC can
take tens of milliseconds, longer than an interlock may wait, SR-02). It hands each shot to
submit_shot(), which captures the shot's context at once and returns a ticket; the writer
thread commits everything waiting in one transaction and then reports the highest durable
ticket through on_durable. The runner holds a SHOT_ACK back until every shot before it is
durable (SR-11): nothing is acknowledged that is not on disk, and a crash loses only shots the
device still keeps. A failed commit is reported through on_error and is sticky: the writer
stores nothing more, and every later submit raises the same error (the controller FAULTs).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .errors import RecordError
from .events import StagedEvent
from .shots import StagedShot
from .store import RecordStore

if TYPE_CHECKING:
    from laserctl.shotrecord import ShotRecord


class GroupCommitWriter:
    def __init__(
        self,
        store: RecordStore,
        *,
        on_durable: Callable[[int], None] | None = None,
        on_error: Callable[[RecordError], None] | None = None,
        max_batch: int = 1000,
    ) -> None:
        self.store = store
        self.on_durable = on_durable
        self.on_error = on_error
        self.max_batch = max_batch
        self.commits = 0
        self.failed: RecordError | None = None
        # Submitters take a ticket and queue under _lock (tickets go in queue order); the
        # writer thread blocks on the queue (a C SimpleQueue: a few us a shot cheaper than a
        # Condition-guarded list). _cond only tells waiters that _durable moved.
        self._lock = threading.Lock()
        self._queue: queue.SimpleQueue[tuple[int, StagedShot | StagedEvent] | None] = (
            queue.SimpleQueue()
        )
        self._ticket = 0
        self._durable = 0
        self._closing = False
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name="shot-log-writer", daemon=True)
        self._thread.start()

    # ---- the caller's side ---------------------------------------------------------------------
    def submit_shot(self, shot: ShotRecord) -> int:
        """Queue the shot (its context is read now); returns its ticket."""
        return self._submit(self.store.stage(shot))

    def submit_event(
        self,
        kind: str,
        message: str,
        *,
        who: str | None = None,
        session_id: str | None = None,
        data: Mapping[str, object] | None = None,
    ) -> int:
        staged = self.store.stage_event(kind, message, who=who, session_id=session_id, data=data)
        return self._submit(staged)

    def _submit(self, item: StagedShot | StagedEvent) -> int:
        with self._lock:
            if self.failed is not None:
                raise self.failed
            if self._closing:
                raise RecordError(f"shot log {self.store.path}: the writer is closed")
            self._ticket += 1
            self._queue.put((self._ticket, item))
            return self._ticket

    @property
    def durable(self) -> int:
        """The highest ticket durable on disk (with every ticket below it)."""
        return self._durable

    @property
    def submitted(self) -> int:
        return self._ticket

    def wait(self, ticket: int, timeout: float | None = None) -> bool:
        """True once `ticket` is durable; raises the writer's error if it failed."""
        with self._cond:
            self._cond.wait_for(lambda: self._durable >= ticket or self.failed is not None, timeout)
            if self._durable >= ticket:
                return True
            if self.failed is not None:
                raise self.failed
            return False

    def flush(self, timeout: float | None = 10.0) -> None:
        """Everything submitted so far is durable when this returns."""
        if not self.wait(self.submitted, timeout):
            raise RecordError(
                f"shot log {self.store.path}: not durable after {timeout} s "
                f"({self.submitted - self._durable} records waiting)"
            )

    def close(self, timeout: float = 10.0) -> None:
        """Commit what is queued, then stop the thread."""
        with self._lock:
            if not self._closing:
                self._closing = True
                self._queue.put(None)  # after everything submitted
        self._thread.join(timeout)

    # ---- the writer thread ---------------------------------------------------------------------
    def _run(self) -> None:
        closing = False
        while not closing:
            batch: list[tuple[int, StagedShot | StagedEvent]] = []
            item = self._queue.get()
            while item is not None:
                batch.append(item)
                if len(batch) >= self.max_batch:
                    break
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
            closing = item is None
            if not batch:
                continue
            shots = [staged for _, staged in batch if isinstance(staged, StagedShot)]
            events = [staged for _, staged in batch if isinstance(staged, StagedEvent)]
            try:
                self.store.write(shots, events)
            except Exception as exc:  # never die silently: report it, and stay failed
                error = (
                    exc
                    if isinstance(exc, RecordError)
                    else RecordError(f"shot log {self.store.path}: {type(exc).__name__}: {exc}")
                )
                with self._lock:
                    self.failed = error  # later submits raise it; what is queued is dropped
                with self._cond:
                    self._cond.notify_all()
                if self.on_error is not None:
                    self.on_error(error)
                return
            with self._cond:
                self.commits += 1
                self._durable = batch[-1][0]
                self._cond.notify_all()
            if self.on_durable is not None:
                self.on_durable(batch[-1][0])
