"""The event stream as structlog JSON lines, and the one sink that feeds it and the shot log.

Import this module lazily (structlog takes ~150 ms to import): the session command does,
`laserctl --help` never does.

    stream = EventStream(store, session_id, log=json_lines(open("events.jsonl", "a")))
    runner.on_note = stream.on_note     # every controller Note: JSON line + events table

The JSON line and the stored event carry the same kind, message and data, with the session
bound, so the console, the log file and the shot log tell the same story.
"""

from __future__ import annotations

import logging as stdlib_logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from laserctl.controller.events import Note
    from laserctl.eventlog import EventSink
    from laserctl.records.context import ContextSource
    from laserctl.records.store import RecordStore


def json_lines(stream: TextIO, **context: object) -> Any:
    """A structlog logger writing one JSON object per line to `stream`, with `context` bound."""
    import structlog

    logger = structlog.wrap_logger(
        structlog.WriteLogger(stream),
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="ts"),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(sort_keys=True, default=str),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(stdlib_logging.INFO),
        cache_logger_on_first_use=False,
    )
    return logger.bind(**context) if context else logger


LEVELS = {"fault": "error", "refusal": "warning", "warning": "warning", "override": "warning"}


class EventStream:
    """One Note in, the same event out to the JSON-lines log, the shot log and (optionally)
    the console. Runs on the controller's owner thread; a failure to store raises, and the
    runner turns that into FAULT (SR-10)."""

    def __init__(
        self,
        store: RecordStore,
        session_id: str,
        *,
        log: Any = None,
        sink: EventSink | None = None,
        context: ContextSource | None = None,
        echo: Callable[[Note], None] | None = None,
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.log = log.bind(session_id=session_id) if log is not None else None
        self.sink: EventSink = sink if sink is not None else store.log_event
        self.context = context
        self.echo = echo
        self._bound = False

    def on_note(self, note: Note) -> None:
        self.event(note.kind, note.message, dict(note.data))
        if self.echo is not None:
            self.echo(note)

    def event(self, kind: str, message: str, data: Mapping[str, object] | None = None) -> None:
        data = dict(data or {})
        if self.log is not None:
            method = getattr(self.log, LEVELS.get(kind, "info"))
            method(message, kind=kind, **data)
        self._bind_handpiece()
        self.sink(kind, message, session_id=self.session_id, data=data)

    def _bind_handpiece(self) -> None:
        """Log the handpiece as soon as it is identified, before any shot."""
        if self._bound or self.context is None:
            return
        try:
            context = self.context()
        except ValueError:
            return  # not identified yet
        self.store.bind_handpiece(self.session_id, context)
        self._bound = True
