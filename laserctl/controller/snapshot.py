"""The immutable picture of the controller that a console subscribes to."""

from __future__ import annotations

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
