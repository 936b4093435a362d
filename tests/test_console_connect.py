"""`laserctl console --device URL` connects at once; without it the connect screen waits for
the operator (issue 15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from textual.pilot import Pilot
from textual.widgets import Input, OptionList

from laserctl.cli import main
from laserctl.console.app import ConsoleApp
from laserctl.console.clinic import Clinic
from laserctl.console.discovery import simulators
from laserctl.console.host import ConsoleConfig
from laserctl.console.screens.connect import ConnectScreen
from laserctl.console.screens.setup import SetupScreen

from .test_console import NDYAG, clinic_in, drive, until


@pytest.fixture
def clinic(tmp_path: Path) -> Clinic:
    return clinic_in(tmp_path)


def app_for(clinic: Clinic, *, device: str, connect_at_start: bool) -> ConsoleApp:
    config = ConsoleConfig(
        device=device,
        discover=lambda: (simulators(), ""),
        cursor_blink=False,
        connect_at_start=connect_at_start,
    )
    return ConsoleApp(clinic, config)


def test_a_device_named_at_start_is_connected_without_a_key(clinic: Clinic) -> None:
    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await until(pilot, lambda: isinstance(app.screen, SetupScreen), "the patient screen")
        setup = app.screen
        assert isinstance(setup, SetupScreen)
        await until(pilot, lambda: setup.inputs, "the profile's windows")  # drawn in full
        assert app.device is not None and app.device.handpiece.slug == "ndyag-1064"
        assert app.url == NDYAG

    drive(app_for(clinic, device=NDYAG, connect_at_start=True), scenario)


def test_without_a_device_the_connect_screen_waits_for_the_operator(clinic: Clinic) -> None:
    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        devices = lambda: app.screen.query_one("#devices", OptionList).option_count  # noqa: E731
        await until(pilot, lambda: isinstance(app.screen, ConnectScreen) and devices(), "devices")
        await pilot.pause(0.3)  # what an unasked connect would have needed, and more
        assert isinstance(app.screen, ConnectScreen)
        assert app.device is None
        assert app.screen.query_one("#url", Input).value == NDYAG  # offered, not connected

    drive(app_for(clinic, device=NDYAG, connect_at_start=False), scenario)


def test_the_command_line_connects_at_once_only_with_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[ConsoleConfig] = []

    def run(self: ConsoleApp, *args: Any, **kwargs: Any) -> None:
        seen.append(self.config)

    monkeypatch.setattr(ConsoleApp, "run", run)
    runner = CliRunner()
    assert runner.invoke(main, ["console", "--training", "--device", NDYAG]).exit_code == 0
    assert runner.invoke(main, ["console", "--training"]).exit_code == 0
    named, default = seen
    assert (named.device, named.connect_at_start) == (NDYAG, True)
    assert (default.device, default.connect_at_start) == ("sim:fractional-1550", False)
