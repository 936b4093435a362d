"""The devices the connect screen offers: the simulators for training, serial ports, USB
handpieces. The same sources as `laserctl devices` (laserctl/cli/devices.py); a USB problem
is shown as a note, never fatal. Runs on a worker thread (enumeration may take a while)."""

from __future__ import annotations

from dataclasses import dataclass

SIMULATORS: tuple[tuple[str, str], ...] = (
    ("sim:fractional-1550", "SIMULATED fractional 1550 nm handpiece (training)"),
    ("sim:ndyag-1064", "SIMULATED long-pulse Nd:YAG 1064 nm handpiece (training)"),
)


@dataclass(frozen=True, slots=True)
class DeviceChoice:
    url: str
    description: str
    simulated: bool = False


def simulators() -> list[DeviceChoice]:
    return [DeviceChoice(url, text, simulated=True) for url, text in SIMULATORS]


def discover() -> tuple[list[DeviceChoice], str]:
    """(every device found, a note on what could not be searched)."""
    from serial.tools import list_ports

    from drivers.transport import TransportError
    from drivers.transport.usb_link import list_handpieces, select_backend

    found = simulators()
    for port in sorted(list_ports.comports(), key=lambda p: p.device):
        found.append(DeviceChoice(port.device, f"serial port: {port.description}"))
    note = ""
    try:
        backend = select_backend()
        for hp in list_handpieces(backend):
            extra = f" ({hp.note})" if hp.note else ""
            found.append(
                DeviceChoice(
                    hp.url, f"USB handpiece: {hp.product or '?'}{extra}", backend.name == "sim"
                )
            )
    except TransportError as exc:
        note = f"USB not searched: {exc}"
    return found, note
