"""The store shot records go to, and the ledger that keeps the device's shot counter honest.
(ShotRecord itself is laserctl.shotrecord, a leaf the shot log imports too.)

The store is an interface: the shot-log issue replaces MemoryShotStore with a durable,
append-only one. The controller sends SHOT_ACK up to a shot only after the store took every
shot up to it (SR-11).
"""

from __future__ import annotations

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
        self.epoch_start = 0  # device counter when the session (or a counter reset) began
        self.fired_before = 0  # shots the device fired in earlier counter epochs
        self.device_count: int | None = None  # the device counter as last reported

    @property
    def has_baseline(self) -> bool:
        return self.upto is not None

    def set_baseline(self, shot_no: int) -> None:
        self.upto = shot_no
        self.epoch_start = shot_no
        self.device_count = shot_no

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
