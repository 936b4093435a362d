"""Connect: a device URL, or one of the devices found; the simulators for training."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from ..host import OnConsole
from ..widgets import ConsoleHeader, describe_device

if TYPE_CHECKING:
    from drivers.protocol import DeviceInfo

    from ..discovery import DeviceChoice


class ConnectScreen(OnConsole, Screen[None]):
    DEFAULT_CSS = """
    ConnectScreen #body { padding: 0 2; }
    ConnectScreen #url-row { height: 3; }
    ConnectScreen #url { width: 1fr; }
    ConnectScreen #devices { height: 10; border: round $primary; }
    ConnectScreen #identity { height: auto; margin: 1 0; }
    ConnectScreen #buttons Button { margin: 0 2 0 0; }
    ConnectScreen #buttons { height: 3; }
    """
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("f2", "service", "Service login"),
        Binding("f5", "rescan", "Rescan devices"),
    ]
    AUTO_FOCUS = "#url"  # Enter connects

    def compose(self) -> ComposeResult:
        yield ConsoleHeader("Connect a handpiece")
        with Vertical(id="body"):
            yield Label("Device URL", classes="title")
            with Horizontal(id="url-row"):
                yield Input(self.console.url, id="url", placeholder="sim:fractional-1550")
                yield Button("Connect", id="connect", variant="primary")
            yield Label("Devices found (Enter connects)", classes="title")
            yield OptionList(id="devices")
            yield Static("", id="found-note", classes="hint", markup=False)
            yield Static(
                "sim: URLs run a SIMULATED handpiece inside the console, for training. "
                "Real handpieces: a serial port, socket://host:port or usb: (docs/usb.md).",
                classes="hint",
            )
            yield Static("", id="identity", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Service login (F2)", id="service")
        yield Footer()

    def on_mount(self) -> None:
        config = self.console.config
        self.query_one("#url", Input).cursor_blink = config.cursor_blink
        self.action_rescan()
        if config.connect_at_start:  # named on the command line: connect, no waiting (once)
            self.connect()

    def action_rescan(self) -> None:
        self.query_one("#found-note", Static).update("searching ...")
        self.console.run_io(self.console.config.discover, self._found, self._not_found)

    def _found(self, result: tuple[list[DeviceChoice], str]) -> None:
        choices, note = result
        options = self.query_one("#devices", OptionList)
        options.clear_options()
        for choice in choices:
            options.add_option(Option(f"{choice.url:<28} {choice.description}", id=choice.url))
        self.query_one("#found-note", Static).update(note)

    def _not_found(self, error: Exception) -> None:
        self.query_one("#found-note", Static).update(f"device search failed: {error}")

    @on(OptionList.OptionSelected, "#devices")
    def _picked(self, event: OptionList.OptionSelected) -> None:
        if event.option.id:
            self.query_one("#url", Input).value = event.option.id
            self.connect()

    @on(Input.Submitted, "#url")
    @on(Button.Pressed, "#connect")
    def connect(self) -> None:
        from ..treatment import identify

        url = self.query_one("#url", Input).value.strip()
        if not url:
            self._show_error("enter a device URL, or pick a device from the list")
            return
        identity = self.query_one("#identity", Static)
        identity.update(f"connecting to {url} ...")
        self.console.run_io(
            lambda: identify(url), lambda info: self._identified(url, info), self._failed
        )

    def _identified(self, url: str, info: DeviceInfo) -> None:
        from .setup import SetupScreen

        if self.console.clinic.training and not info.simulated:
            self._show_error(
                f"{info.handpiece.slug} {info.serial} is a real handpiece: training is for "
                "simulated handpieces only (restart without --training to treat)"
            )
            return
        self.console.url = url
        self.console.device = info
        self.console.simulation = info.simulated
        self.query_one("#identity", Static).update(describe_device(info))
        clinic = self.console.clinic

        def due(why: str) -> None:
            from .verification import VerificationDialog

            if why:  # the first session of the day with it, or another handpiece (SR-14)
                self.app.push_screen(
                    VerificationDialog(why), lambda _ran: self.app.push_screen(SetupScreen())
                )
            else:
                self.app.push_screen(SetupScreen())

        self.console.run_io(
            lambda: clinic.verification_due(info),
            due,
            lambda error: due(f"when it was last verified is unknown ({error})"),
        )

    def _failed(self, error: Exception) -> None:
        self._show_error(f"cannot connect: {error}")

    def _show_error(self, message: str) -> None:
        self.query_one("#identity", Static).update(Text(message, style="bold red"))

    @on(Button.Pressed, "#service")
    def action_service(self) -> None:
        from .service import open_service

        open_service(self.app)
