"""Where events are logged durably: the one `log_event` signature, written once.

`EventSink` is the signature (kind, message, who, session, data; returns the stored event's
id): RecordStore.log_event and GroupCommitWriter.submit_event both are one, and the event
stream takes either (laserctl.logging). `EventLog` is any object with such a `log_event`, the
shot log above all: the audit trail (laserctl.auth) and calibration (laserctl.calibration)
take one. A leaf: it imports nothing of laserctl, so none of them import the records package
for it.
"""

from __future__ import annotations

from typing import Protocol


class EventSink(Protocol):
    """Log an event durably (it is stored when this returns, or queued for a group commit
    that is); returns its id (a row id, or the writer's ticket)."""

    def __call__(
        self,
        kind: str,
        message: str,
        *,
        who: str | None = None,
        session_id: str | None = None,
        data: dict[str, object] | None = None,
    ) -> int: ...


class EventLog(Protocol):
    """Anything with a `log_event(kind, message, *, who=, session_id=, data=) -> int`."""

    # A read-only member typed by EventSink, so the signature is written once: any method
    # `log_event` with that signature satisfies it (mypy checks the parameters).
    @property
    def log_event(self) -> EventSink: ...
