"""The core as its rooms see it: the one Protocol the rooms that act (command results, the
reaction to device reports, shot intake, identification, the view) are written against.

The rooms never import core.py (it imports them); mypy checks at every call that the
Controller is this. What is here is all a room may read or change of the core, and the few
things it may ask of it: fire a trigger of the table, latch a cause, refuse, warn, note, send.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from drivers.protocol import Command, DeviceInfo, Param, StatusBody

from ..plan import TreatmentPlan
from ..safety.interlocks import InterlockId, Reading
from ..safety.limits import DoseUsed
from .causes import Cause, FaultRecord, Refusal
from .dosing import Dosing
from .events import Action
from .grants import GrantBook
from .inflight import InFlight
from .shots import ShotLedger
from .table import State


class Core(Protocol):
    # settings and time
    now: float
    plan: TreatmentPlan | None
    plan_for: Callable[[Any], TreatmentPlan]  # the plan for a handpiece type, when none given
    session_id: str
    count_recovered: bool
    state_since: float
    # link and device
    connected: bool
    link_alive: bool
    device: DeviceInfo | None
    pinned: DeviceInfo | None  # the handpiece of this session (SR-15)
    identity_problem: str
    status: StatusBody | None
    eyewear: bool
    # parameters and arming
    params: dict[Param, float]
    params_confirmed: bool
    device_may_fire: bool
    arm_sent_at: float | None
    ready_at: float | None
    last_activity: float
    # shots and dose
    dose: DoseUsed
    shots_seen: int
    shots_recovered: int
    # what happened
    causes: list[Cause]
    faults: list[FaultRecord]
    refusals: list[Refusal]
    warnings: list[str]
    last_message: str
    # the rooms that only keep state
    ledger: ShotLedger
    grants: GrantBook
    dosing: Dosing
    inflight: InFlight

    @property
    def state(self) -> State: ...

    def fire(self, trigger: str) -> str | None:
        """A trigger of the table; None when a rule was taken, else why not."""

    def latch(self, cause: Cause) -> None:
        """Add the cause and enter (or stay in) FAULT."""

    def estop(self, cause: Cause) -> None:
        """Add the cause and enter (or stay in) ESTOP."""

    def add_cause(self, cause: Cause) -> bool:
        """Add the cause unless it is there; True when it was new."""

    def refuse(self, command: str, reason: str) -> None: ...

    def warn(self, message: str) -> None: ...

    def note(self, kind: str, message: str, **data: Any) -> None: ...

    def act(self, action: Action) -> None:
        """Queue an action (in order, after those queued before)."""

    def send(self, command: Command) -> int | None:
        """Queue the command; its token, or None when not connected."""

    def disarm_now(self, *, force: bool = False) -> None: ...

    def send_parameters(self) -> None:
        """The send_parameters effect: SET_PARAMS with the checked values."""

    def resync_device(self) -> None:
        """The resync_device effect: DISARM, re-read unacknowledged shots, GET_STATUS."""

    def readings(self) -> Mapping[InterlockId, Reading]: ...

    def interlock_reason(
        self, ids: Sequence[InterlockId], readings: Mapping[InterlockId, Reading]
    ) -> str: ...
