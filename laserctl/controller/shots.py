"""The store shot records go to, and the ledger that keeps the device's shot counter honest.
(ShotRecord itself is laserctl.shotrecord, a leaf the shot log imports too.)

The store is an interface (laserctl.records is the durable one). The ledger also keeps which
RecordShot tickets are not durable yet: the core sends SHOT_ACK up to a shot only after a
ShotsDurable event said every shot up to it is stored (SR-11); `ackable` is that mark.
"""

from __future__ import annotations

from collections import deque
from enum import StrEnum
from typing import Protocol

from laserctl.shotrecord import ShotRecord


class ShotStore(Protocol):
    def record(self, shot: ShotRecord) -> None:
        """Store the shot; when this returns it is durable. Raise on failure."""


class MemoryShotStore:
    """In memory, exactly once per (boot_id, shot_no): the stand-in until the shot-log issue."""

    def __init__(self) -> None:
        self.records: list[ShotRecord] = []
        self._keys: set[tuple[int, int]] = set()

    def record(self, shot: ShotRecord) -> None:
        key = (shot.boot_id, shot.shot_no)
        if key in self._keys:
            return
        self._keys.add(key)
        self.records.append(shot)


class Accept(StrEnum):
    NEW = "new"  # the next shot: recorded, the durable mark advances
    AHEAD = "ahead"  # beyond a hole: recorded, the hole must be filled by SHOTS_SINCE
    DUPLICATE = "duplicate"  # already recorded (a replay of a shot seen live)
    BACKWARDS = "backwards"  # a live shot at or below the mark: the counter went back
    RECOVERED = "recovered"  # before the session's baseline: recorded, not this session's


class ShotLedger:
    """Which device shots are durable. `upto`: every shot up to it is recorded here or was
    acknowledged before the session; `ahead`: recorded shots beyond a hole."""

    def __init__(self) -> None:
        self.upto: int | None = None
        self.ahead: set[int] = set()
        self.acked = 0
        self.replays_due = 0  # replayed shots still to come after a SHOTS_PENDING
        self.recovering = False  # a SHOTS_SINCE is out and its SHOTS_PENDING not yet back
        # A SHOTS_PENDING whose first copy was lost on the way is answered again from the
        # device's answer cache after its replays went out: replays seen while it is awaited
        # are counted off the count it brings, and device events lost meanwhile may have been
        # replays (they are then not waited for).
        self.replays_early = 0
        self.replays_lost = False
        self.last_event = 0  # number of the last device event processed
        self.epoch_start = 0  # device counter when the session (or a counter reset) began
        self.fired_before = 0  # shots the device fired in earlier counter epochs
        self.device_count: int | None = None  # the device counter as last reported
        self.tickets = 0  # RecordShot actions asked for, numbered from 1
        # (ticket, upto before its shot was accepted) of the records not durable yet, in order
        self._undurable: deque[tuple[int, int | None]] = deque()

    @property
    def has_baseline(self) -> bool:
        return self.upto is not None

    def set_baseline(self, shot_no: int) -> None:
        self.upto = shot_no
        self.epoch_start = shot_no
        self.device_count = shot_no

    def reset_recovery(self) -> None:
        """No re-read under way: nothing asked, nothing due."""
        self.recovering = False
        self.replays_due = self.replays_early = 0
        self.replays_lost = False

    def replays_answered(self, count: int) -> int:
        """SHOTS_PENDING(count) is back: how many replays are still to come."""
        due = 0 if self.replays_lost else max(0, count - self.replays_early)
        self.reset_recovery()
        self.replays_due = due
        return due

    def accept(self, shot_no: int, replay: bool) -> Accept:
        if self.upto is None:
            return Accept.RECOVERED
        self.device_count = max(self.device_count or 0, shot_no)
        if shot_no <= self.upto or shot_no in self.ahead:
            return Accept.DUPLICATE if replay or shot_no in self.ahead else Accept.BACKWARDS
        if shot_no == self.upto + 1:
            self.upto = shot_no
            while self.upto + 1 in self.ahead:
                self.upto += 1
                self.ahead.discard(self.upto)
            return Accept.NEW
        self.ahead.add(shot_no)
        return Accept.AHEAD

    def to_record(self, upto_before: int | None) -> int:
        """A RecordShot is asked for; `upto_before` is the mark before its shot was accepted.
        Returns its ticket, which a ShotsDurable event names once it is stored."""
        self.tickets += 1
        self._undurable.append((self.tickets, upto_before))
        return self.tickets

    def durable(self, upto_ticket: int) -> None:
        """Every record up to `upto_ticket` is stored (the writer commits them in order)."""
        undurable = self._undurable
        while undurable and undurable[0][0] <= upto_ticket:
            undurable.popleft()

    @property
    def ackable(self) -> int | None:
        """The highest shot the device may forget: every shot up to it is durable here (or
        needed no record: acknowledged before the session, a hole given up). The mark before
        the oldest record still waiting, never beyond `upto`."""
        if self.upto is None:
            return None
        if not self._undurable:
            return self.upto
        before = self._undurable[0][1]
        return None if before is None else min(before, self.upto)

    @property
    def missing(self) -> bool:
        """A shot the device counted that we have not recorded."""
        if self.upto is None:
            return False
        top = max([*self.ahead, self.device_count or 0])
        return top > self.upto

    def skip_hole(self) -> tuple[int, int]:
        """Give up on the missing shots (the device no longer has them); returns the hole."""
        assert self.upto is not None
        top = max([*self.ahead, self.device_count or 0])
        hole = (self.upto + 1, top)
        self.upto = top
        self.ahead = {n for n in self.ahead if n > top}
        return hole

    def rebase(self, shot_no: int) -> None:
        """The device counter went back (reboot that lost it): a new epoch from shot_no."""
        if self.upto is not None:
            self.fired_before += max(0, self.upto - self.epoch_start)
        self.upto = shot_no
        self.ahead.clear()
        self.acked = min(self.acked, shot_no)
        self.epoch_start = shot_no
        self.device_count = shot_no

    @property
    def device_fired(self) -> int:
        """Shots the device fired in this session, by its own counter."""
        if self.device_count is None:
            return self.fired_before
        return self.fired_before + max(0, self.device_count - self.epoch_start)
