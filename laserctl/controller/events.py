"""What goes into the controller core and what comes out of it.

In: operator commands (below), the results of commands it asked to send (CommandDone,
CommandLost), the link's notifications as drivers reports them (DeviceEvent, EventGap,
FrameRejected, LinkSilent, Reply for heartbeats, TransportLost, Reconnected,
ConnectionCrashed), LinkOpened/LinkOpenFailed, CalibrationLoaded, ShotsDurable, InternalError,
and Tick.

Out: actions for the I/O layer to carry out in order: Send a command, OpenLink, CloseLink,
RecordShot (stored, then reported back as ShotsDurable), ReadCalibration, Note (a log line).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from drivers.host import ConnectionCrashed, Reconnected, TransportLost
from drivers.protocol import (
    Command,
    CommandFailed,
    DeviceEvent,
    DeviceInfo,
    EventGap,
    FrameRejected,
    LinkSilent,
    Param,
    Reply,
    Response,
)

from ..shotrecord import ShotRecord

if TYPE_CHECKING:
    from ..calibration.record import Calibration


# ---- operator commands ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Connect:
    pass


@dataclass(frozen=True, slots=True)
class Disconnect:
    pass


@dataclass(frozen=True, slots=True)
class ConfirmEyewear:
    pass


@dataclass(frozen=True, slots=True)
class RequestArm:
    pass


@dataclass(frozen=True, slots=True)
class RequestDisarm:
    pass


@dataclass(frozen=True, slots=True)
class RequestEStop:
    pass


@dataclass(frozen=True, slots=True)
class RequestReset:
    pass


@dataclass(frozen=True, slots=True)
class SetParameters:
    values: tuple[tuple[Param, float], ...]  # in the unit of the parameter's name


@dataclass(frozen=True, slots=True)
class EnterService:
    pass


@dataclass(frozen=True, slots=True)
class LeaveService:
    pass


@dataclass(frozen=True, slots=True)
class RefreshStatus:
    pass


OperatorCommand = (
    Connect
    | Disconnect
    | ConfirmEyewear
    | RequestArm
    | RequestDisarm
    | RequestEStop
    | RequestReset
    | SetParameters
    | EnterService
    | LeaveService
    | RefreshStatus
)


# ---- from the I/O layer --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LinkOpened:
    info: DeviceInfo


@dataclass(frozen=True, slots=True)
class LinkOpenFailed:
    error: str


@dataclass(frozen=True, slots=True)
class CalibrationLoaded:
    """What the calibration source holds for handpiece `serial` (SR-14), read off the core's
    thread: its newest calibration, not yet judged (the core judges it, expiry included, on its
    own clock), or why there is none. "" means "may be armed uncalibrated" (training: the core
    accepts it for a simulated handpiece only). `at`: when it was read, wall-clock epoch
    seconds; the core carries it forward on its injected clock from the moment it arrives."""

    serial: str
    found: Calibration | str
    at: float


@dataclass(frozen=True, slots=True)
class CommandDone:
    token: int
    response: Response


@dataclass(frozen=True, slots=True)
class CommandLost:
    """No answer: the command counts as not executed (SR-16)."""

    token: int
    error: str


@dataclass(frozen=True, slots=True)
class ShotsDurable:
    """Every RecordShot up to ticket `upto_ticket` is stored durably: what the shot writer's
    completion (or a store that writes at once) reports. Only then does the core acknowledge
    those shots to the device (SHOT_ACK, SR-11)."""

    upto_ticket: int


@dataclass(frozen=True, slots=True)
class InternalError:
    """An exception outside the core (I/O, recording, publishing): disarm and FAULT (SR-10)."""

    error: str


@dataclass(frozen=True, slots=True)
class Tick:
    pass


LinkNotification = (
    DeviceEvent
    | EventGap
    | FrameRejected
    | LinkSilent
    | Reply
    | CommandFailed
    | TransportLost
    | Reconnected
    | ConnectionCrashed
)

ControllerEvent = (
    OperatorCommand
    | LinkOpened
    | LinkOpenFailed
    | CalibrationLoaded
    | ShotsDurable
    | CommandDone
    | CommandLost
    | InternalError
    | Tick
    | LinkNotification
)


# ---- actions -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Send:
    """Send `command`; report its answer as CommandDone(token) or CommandLost(token). DISARM and
    ESTOP are priority commands: the link puts them ahead of everything."""

    command: Command
    token: int


@dataclass(frozen=True, slots=True)
class OpenLink:
    pass


@dataclass(frozen=True, slots=True)
class CloseLink:
    pass


@dataclass(frozen=True, slots=True)
class RecordShot:
    """Store durably, then report ShotsDurable(ticket) (or a later ticket: they are stored in
    order); a failure must never be reported as durable."""

    record: ShotRecord
    ticket: int


@dataclass(frozen=True, slots=True)
class ReadCalibration:
    """Read the calibration source for this handpiece, off the core's thread, and feed the
    answer back as CalibrationLoaded (at every identification; the runner also refreshes it)."""

    info: DeviceInfo


@dataclass(frozen=True, slots=True)
class Note:
    kind: str  # "transition", "emission", "refusal", "fault", "warning", "info"
    message: str
    data: dict[str, Any] = field(default_factory=dict)


Action = Send | OpenLink | CloseLink | RecordShot | ReadCalibration | Note
