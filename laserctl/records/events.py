"""The events chain: whatever is logged besides shots (transitions, interlocks, faults,
refusals, overrides, service actions, handpieces, session start and end), one record each."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .txn import Txn


@dataclass(frozen=True, slots=True)
class StagedEvent:
    kind: str
    message: str
    at: float
    who: str | None = None
    session_id: str | None = None
    data: Mapping[str, object] | None = None


def append_event(txn: Txn, event: StagedEvent, session_ref: int | None) -> int:
    """Append the event in `txn`, for the session with row id `session_ref` (None: none;
    sessions.Sessions.append_event looks the ref up from event.session_id)."""
    return txn.append(
        "events",
        {
            "at": event.at,
            "kind": event.kind,
            "message": event.message,
            "who": event.who,
            "session": session_ref,
            "data": dict(event.data or {}),
        },
    )
