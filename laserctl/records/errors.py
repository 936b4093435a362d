"""What can go wrong with the shot log, said in words a clinic can act on.

Every error names the database file and what happened; no bare sqlite3 exception leaves the
records API (a caller in the controller turns any of these into FAULT, SR-10).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path


class RecordError(Exception):
    """The shot log could not do what was asked; the message names the database and why."""


class StoreFull(RecordError):
    """The disk or the database's size limit is full: nothing more can be stored."""


class StoreReadOnly(RecordError):
    """The database (or its file system) is read-only."""


class StoreCorrupt(RecordError):
    """SQLite reports the file is damaged or not a database."""


class UnknownRecord(RecordError):
    """A session, patient or course that the log does not hold."""


class CourseRuleBroken(RecordError):
    """A session refused by the course rules (SR-18); `reasons` lists each rule broken;
    `offline`: the central store could not be asked (course_check.py)."""

    def __init__(self, message: str, reasons: list[str], *, offline: bool = False) -> None:
        super().__init__(message)
        self.reasons = reasons
        self.offline = offline


# SQLite primary result codes (sqlite3.h); Python 3.11 exposes them on the exception.
SQLITE_BUSY = 5
SQLITE_LOCKED = 6
SQLITE_READONLY = 8
SQLITE_IOERR = 10
SQLITE_CORRUPT = 11
SQLITE_FULL = 13
SQLITE_CANTOPEN = 14
SQLITE_NOTADB = 26


def translate(path: Path | str, doing: str, exc: sqlite3.Error) -> RecordError:
    """The RecordError for a sqlite3 failure while `doing` something with the log at `path`."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    text = str(exc)
    lowered = text.lower()
    where = f"shot log {path}"
    if primary == SQLITE_FULL or "database or disk is full" in lowered:
        return StoreFull(
            f"{where}: the disk or the database size limit is full ({text}) while {doing}"
        )
    if primary == SQLITE_READONLY or "readonly database" in lowered:
        return StoreReadOnly(f"{where}: the database is read-only ({text}) while {doing}")
    if primary in (SQLITE_CORRUPT, SQLITE_NOTADB):
        return StoreCorrupt(f"{where}: the file is damaged or not a laserctl database ({text})")
    if primary == SQLITE_CANTOPEN:
        return RecordError(f"{where}: cannot open the file ({text}) while {doing}")
    if primary in (SQLITE_BUSY, SQLITE_LOCKED):
        return RecordError(f"{where}: locked by another process ({text}) while {doing}")
    if primary == SQLITE_IOERR:
        return RecordError(f"{where}: input/output error ({text}) while {doing}")
    return RecordError(f"{where}: {text} while {doing}")
