"""What a screen may ask of the console it runs in: one small protocol, `ConsoleHost`, with
the console's settings (ConsoleConfig) and the message that hands an I/O job's end back to the
interface's thread (Deliver).

The screens and widgets reach the console through this and nothing else, so none of them
imports ConsoleApp (app.py imports the screens, never the other way round) and the surface a
screen depends on is written down in one place. ConsoleApp is the one implementation; the
Textual side (push_screen, pop_screen, post_message, notify ...) a screen reaches as its own
`self.app`, like any Textual widget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from textual.dom import DOMNode
from textual.message import Message

from .discovery import DeviceChoice, discover

if TYPE_CHECKING:
    from drivers.host import HandpieceConnection
    from drivers.protocol import DeviceInfo
    from laserctl.plan import TreatmentPlan

    from .clinic import Clinic
    from .treatment import ConsoleSession
    from .view import ConsoleView

T = TypeVar("T")


@dataclass
class ConsoleConfig:
    device: str = "sim:fractional-1550"
    plan: TreatmentPlan | None = None  # --plan FILE: used instead of a profile
    profile: str | None = None  # --profile SELECTOR: preselects area, variant, IV-VI
    operator: str | None = None
    discover: Callable[[], tuple[list[DeviceChoice], str]] = field(default=discover)
    cursor_blink: bool = True  # off for screenshots
    connect_at_start: bool = False  # `--device URL` given: connect to it at once
    fleet_every_s: float = 300.0  # with --fleet: push the shot log this often (and at ends)


class Deliver(Message):
    """Run `fn` on the interface's thread (the end of an I/O job)."""

    def __init__(self, fn: Callable[[], None]) -> None:
        super().__init__()
        self.fn = fn


@runtime_checkable
class ConsoleHost(Protocol):
    """The console as its screens see it: the clinic (files, accounts, the shot log), the
    device chosen on the connect screen, the session's newest view, the I/O worker, and the
    session's life cycle."""

    clinic: Clinic
    config: ConsoleConfig
    url: str  # the device URL chosen on the connect screen
    device: DeviceInfo | None  # identified on the connect screen
    view: ConsoleView | None  # the running session's newest view
    simulation: bool  # the identified handpiece is a simulated one (the header's badge)
    service_port: HandpieceConnection | None  # the calibration link, while one is open
    calibration_abort: threading.Event  # set by the e-stop during a calibration
    console_estop: bool  # the e-stop was pressed with no controller running

    def run_io(
        self,
        job: Callable[[], T],
        done: Callable[[T], None],
        failed: Callable[[Exception], None] | None = None,
    ) -> None: ...

    def start_session(
        self,
        plan: TreatmentPlan,
        patient: str,
        area: str,
        *,
        override: tuple[str, str] | None,
        done: Callable[[ConsoleSession], None],
        failed: Callable[[Exception], None],
        resume: bool = False,
    ) -> None: ...

    def end_session(self) -> None: ...

    def leave_session(self, then: Callable[[], None] | None = None) -> None: ...

    def acknowledge_console_estop(self) -> None: ...

    async def action_quit(self) -> None: ...


def console_of(node: DOMNode) -> ConsoleHost:
    """The console a mounted screen or widget runs in (an AssertionError outside one)."""
    app: Any = node.app
    assert isinstance(app, ConsoleHost), f"{type(node).__name__} runs outside the console"
    return app


class OnConsole:
    """Mixed into a screen: `self.console`, the ConsoleHost it runs in."""

    @property
    def console(self) -> ConsoleHost:
        assert isinstance(self, DOMNode)
        return console_of(self)
