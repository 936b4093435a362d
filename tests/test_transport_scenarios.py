"""The host-and-simulator scenarios of tests/scenarios.py, each run over every transport: the
simulator in its own process on a pty and on TCP (socket://), and as a USB device through the
pyusb backend (usb:, LASERCTL_USB_BACKEND=sim)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from . import scenarios
from .scenarios import Rig, SimProcessRig, UsbRig


@pytest.fixture(params=["pty", "tcp", "usb"])
def rig(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[Rig]:
    kind: str = request.param
    made: Rig
    if kind == "usb":
        monkeypatch.setenv("LASERCTL_USB_BACKEND", "sim")
        made = UsbRig()
    else:
        made = SimProcessRig(kind, serial=f"SCN-{kind.upper()}-0001")
    yield made
    made.close()


@pytest.mark.req("SR-15")
def test_identify(rig: Rig) -> None:
    scenarios.identify(rig)


def test_status_and_events(rig: Rig) -> None:
    scenarios.status_and_events(rig)


def test_set_parameters(rig: Rig) -> None:
    scenarios.set_parameters(rig)


def test_arm_fire_and_acknowledge(rig: Rig) -> None:
    scenarios.arm_fire_and_acknowledge(rig)


@pytest.mark.req("SR-09")
def test_heartbeat_loss_stops_emission(rig: Rig) -> None:
    scenarios.heartbeat_loss_stops_emission(rig)


@pytest.mark.req("SR-11")
@pytest.mark.req("SR-15")
def test_reconnect_rereads_unacknowledged_shots(rig: Rig) -> None:
    scenarios.reconnect_rereads_unacknowledged_shots(rig)


@pytest.mark.req("SR-16")
def test_duplicate_not_executed_twice(rig: Rig) -> None:
    scenarios.duplicate_not_executed_twice(rig)
