"""What the core puts out, and what it keeps of what happened: the actions of one handle()
call in order, commands sent with their tokens (inflight.py), notes, and the journal of latched
causes, faults, refusals and warnings; latching a cause fires the machine's trigger.

The Controller is built on it (core.py); rooms reach it through context.Core. It decides
nothing: which command, which cause, which refusal is the caller's.
"""

from __future__ import annotations

from typing import Any

from drivers.protocol import Command, Disarm, GetStatus

from .causes import Cause, FaultRecord, Refusal
from .events import Action, Note, Send
from .inflight import InFlight
from .shots import ShotLedger
from .table import State


class Journal:
    now: float
    connected: bool
    ledger: ShotLedger

    def __init__(self) -> None:
        self._actions: list[Action] = []
        self.inflight = InFlight()
        self.causes: list[Cause] = []  # latched, until a reset acknowledges them
        self.faults: list[FaultRecord] = []
        self.refusals: list[Refusal] = []
        self.warnings: list[str] = []
        self.last_message = ""

    @property
    def state(self) -> State:
        raise NotImplementedError  # the Controller's machine

    def _fire(self, trigger: str) -> str | None:
        raise NotImplementedError  # the Controller's machine

    def fire(self, trigger: str) -> str | None:
        """A trigger of the table; None when a rule was taken, else why not."""
        return self._fire(trigger)

    def take(self) -> list[Action]:
        """The actions queued since the last take, in order."""
        actions, self._actions = self._actions, []
        return actions

    def act(self, action: Action) -> None:
        self._actions.append(action)

    def send(self, command: Command) -> int | None:
        """Queue the command; its token, or None when not connected."""
        if not self.connected:
            return None
        token = self.inflight.token(command)
        if isinstance(command, GetStatus):
            self.inflight.status_marks[token] = self.ledger.upto
        self._actions.append(Send(command, token))
        return token

    def disarm_now(self, *, force: bool = False) -> None:
        """DISARM at once; one in flight is enough (the link retries it, SR-16)."""
        if self.connected and (force or self.inflight.disarm is None):
            self.inflight.disarm = self.send(Disarm())

    def note(self, kind: str, message: str, **data: Any) -> None:
        self._actions.append(Note(kind, message, data))

    def refuse(self, command: str, reason: str) -> None:
        self.refusals.append(Refusal(self.now, command, reason))
        self.last_message = f"{command} refused: {reason}"
        self.note("refusal", self.last_message)

    def warn(self, message: str) -> None:
        self.warnings.append(message)
        self.note("warning", message)

    def record_fault(self, cause: Cause) -> None:
        self.faults.append(FaultRecord(self.now, self.state, cause.kind, cause.message))
        self.last_message = cause.message
        self.note("fault", cause.message, cause=str(cause.kind), state=str(self.state))

    def latch(self, cause: Cause) -> None:
        """Add the cause and enter (or stay in) FAULT."""
        self.add_cause(cause)
        self._fire("fault")

    def estop(self, cause: Cause) -> None:
        """Add the cause and enter (or stay in) ESTOP."""
        self.add_cause(cause)
        self._fire("estop")

    def add_cause(self, cause: Cause) -> bool:
        """Add the cause unless it is there; True when it was new."""
        if cause in self.causes:
            return False
        self.causes.append(cause)
        self.record_fault(cause)
        return True
