"""The commands in flight: every command the core asked to send, by token, until its answer
(CommandDone) or its loss (CommandLost) comes back, and which of them the core waits for by
name (an ARM, a DISARM, ...). An unanswered ARM counts as not armed, DISARM and ESTOP are
retried by the link until answered or the link is lost (SR-16); this room only keeps count.
"""

from __future__ import annotations

from drivers.protocol import Command, GetStatus, ShotAck, ShotsSince


class InFlight:
    def __init__(self) -> None:
        self._next = 1
        self.pending: dict[int, Command] = {}
        # The one of each the core waits for (None: none in flight).
        self.arm: int | None = None
        self.disarm: int | None = None
        self.estop: int | None = None
        self.reset: int | None = None
        self.self_test: int | None = None
        self.ack: int | None = None  # SHOT_ACK: one at a time (SR-11)
        self.params: int | None = None
        self.baseline: int | None = None  # the GET_STATUS whose shot counter starts the ledger
        self.recheck: int | None = None  # the GET_STATUS asked because a STATUS looked stale
        # For each GET_STATUS in flight, the shot ledger's mark when it was sent: its answer
        # is made after that, so a counter below the mark went back for real (reaction.py).
        self.status_marks: dict[int, int | None] = {}

    def token(self, command: Command) -> int:
        token = self._next
        self._next += 1
        self.pending[token] = command
        return token

    def answered(self, token: int) -> Command | None:
        """The command `token` stood for, no longer in flight (None: not ours, or abandoned)."""
        return self.pending.pop(token, None)

    def status_mark(self, token: int) -> int | None:
        """The shot mark when the GET_STATUS `token` was sent (None: not known)."""
        if token == self.recheck:
            self.recheck = None
        return self.status_marks.pop(token, None)

    def abandon(self) -> None:
        """The link is gone: nothing sent is coming back (its results may still arrive as
        CommandLost and are ignored then)."""
        self.pending.clear()
        self.arm = self.disarm = self.estop = self.reset = self.self_test = None
        self.ack = self.params = self.baseline = self.recheck = None
        self.status_marks.clear()

    def awaiting(self) -> tuple[str, ...]:
        """The control commands still waiting for their answer, by name (the view)."""
        return tuple(
            sorted(
                type(c).__name__
                for c in self.pending.values()
                if not isinstance(c, ShotAck | GetStatus | ShotsSince)
            )
        )
