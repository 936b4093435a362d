"""The controller: one state machine between the console and the handpiece.

core.Controller decides (pure, clock injected), with the rest of what it knows in rooms of their
own (journal, causes, inflight, results, link, identity, reaction, intake, shots, grants, dosing,
readings, view: docs/architecture.md); runner.ControllerRunner owns the thread, the queue and
the connections; table.TABLE declares every transition, guard and effect.
"""

from .core import Cause, CauseKind, Controller, stand_in_calibration, training_calibration
from .snapshot import Snapshot
from .table import TABLE, State

__all__ = [
    "TABLE",
    "Cause",
    "CauseKind",
    "Controller",
    "Snapshot",
    "State",
    "stand_in_calibration",
    "training_calibration",
]
