"""The shot log: every shot durable and tamper-evident; sessions, courses and reports.

    store = open_store(path)                      # None: laserctl.db in the user data dir
    sid = store.begin_session("P-0042", "abdomen", context=controller_context(controller))
    store.record(shot)                            # durable when it returns (SR-11)
    store.log_event("fault", "door opened", session_id=sid)
    store.verify().ok                             # the hash chains are intact (SR-12)

See docs/shot-log.md.
"""

from .chain import Problem
from .context import ShotContext, controller_context, profile_hash
from .courses import CourseOverride
from .db import default_path
from .errors import (
    CourseRuleBroken,
    RecordError,
    StoreCorrupt,
    StoreFull,
    StoreReadOnly,
    UnknownRecord,
)
from .events import StagedEvent
from .sessions import SessionInfo
from .shots import StagedShot, Written
from .store import RecordStore, open_store
from .verify import VerifyReport
from .writer import GroupCommitWriter

__all__ = [
    "CourseOverride",
    "CourseRuleBroken",
    "GroupCommitWriter",
    "Problem",
    "RecordError",
    "RecordStore",
    "SessionInfo",
    "ShotContext",
    "StagedEvent",
    "StagedShot",
    "StoreCorrupt",
    "StoreFull",
    "StoreReadOnly",
    "UnknownRecord",
    "VerifyReport",
    "Written",
    "controller_context",
    "default_path",
    "open_store",
    "profile_hash",
]
