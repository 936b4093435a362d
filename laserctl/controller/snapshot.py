"""The immutable picture of the controller that a console subscribes to, and the board the
runner publishes it on."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from .table import State


@dataclass(frozen=True, slots=True)
class Snapshot:
    seq: int  # increases with every published change
    at: float  # controller clock
    state: State
    state_since: float
    plan_id: str
    handpiece: str  # slug, "" before identification
    serial: str
    simulated: bool
    connected: bool
    link_alive: bool
    device_state: str  # DeviceState name, "" before the first status
    interlocks: tuple[tuple[str, str], ...]  # (interlock, closed|open|unknown)
    not_closed: tuple[str, ...]
    eyewear: bool
    footswitch: bool
    emission: bool  # the device's emission indication
    temperature_c: float | None
    params: tuple[tuple[str, float], ...]
    params_confirmed: bool
    grant: int  # pulses granted by the current ARM
    shots_in_grant: int
    ready_in_s: float | None  # time left of the ready delay while READY
    pulses_used: int
    pulses_max: int
    fluence_used_j_cm2: float
    fluence_max_j_cm2: float
    shots_seen: int  # this session's shots recorded
    shots_recovered: int  # shots from before the session re-read and recorded
    device_shots_fired: int  # the device's own count for this session
    causes: tuple[str, ...]  # latched causes of FAULT / ESTOP
    faults: int
    refusals: int
    warnings: int
    last_message: str
    commands_in_flight: int
    awaiting: tuple[str, ...]  # control commands still waiting for their answer

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["state"] = str(self.state)
        data["interlocks"] = dict(self.interlocks)
        data["params"] = dict(self.params)
        return data


class SnapshotBoard:
    """The last published snapshot, its subscribers, and waiting for one that fits. Published
    on the runner's owner thread; read and waited on from any thread."""

    def __init__(self, first: Snapshot) -> None:
        self._current = first
        self._key: Snapshot | None = None
        self._seq = 0
        self._changed = threading.Condition()
        self._subscribers: list[Callable[[Snapshot], None]] = []

    @property
    def current(self) -> Snapshot:
        return self._current

    @property
    def seq(self) -> int:
        return self._seq

    def subscribe(self, callback: Callable[[Snapshot], None]) -> Callable[[], None]:
        self._subscribers.append(callback)
        return lambda: self._subscribers.remove(callback)

    def wait_for(self, done: Callable[[Snapshot], bool], timeout: float) -> Snapshot | None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done(self._current):
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._changed.wait(left)
            return self._current

    def publish(self, snapshot: Snapshot, on_error: Callable[[Exception], None]) -> None:
        """Publish unless nothing but the clock changed; a subscriber's exception goes to
        on_error (the runner's SR-10 path) and the others are still called."""
        ready = None if snapshot.ready_in_s is None else round(snapshot.ready_in_s, 1)
        key = dataclasses.replace(snapshot, seq=0, at=0.0, ready_in_s=ready)
        if key == self._key:
            return
        self._key = key
        self._seq += 1
        snapshot = dataclasses.replace(snapshot, seq=self._seq)
        with self._changed:
            self._current = snapshot
            self._changed.notify_all()
        for callback in list(self._subscribers):
            try:
                callback(snapshot)
            except Exception as exc:
                on_error(exc)
