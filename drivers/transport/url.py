"""One device URL picks the transport everywhere in the program.

sim:fractional-1550 | sim:ndyag-1064 [?seed=N&baud=B]   the simulator, in this process
usb: | usb:VID:PID | usb:VID:PID:SERIAL                   a USB handpiece (pyusb)
anything else                                             a pyserial URL or port path:
    /dev/ttyUSB0, /dev/pts/3, socket://127.0.0.1:7000, rfc2217://host:port, spy://...
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import parse_qs

from .base import Transport, TransportError


@dataclass(frozen=True)
class DeviceUrl:
    scheme: str  # "sim", "usb" or "serial"
    target: str  # handpiece slug, USB selector, or the pyserial URL
    options: dict[str, str]


def parse_device_url(url: str) -> DeviceUrl:
    url = url.strip()
    if not url:
        raise ValueError("empty device URL")
    if url.startswith("sim:"):
        rest, _, query = url[4:].partition("?")
        options = {k: v[-1] for k, v in parse_qs(query).items()}
        return DeviceUrl("sim", rest or "fractional-1550", options)
    if url == "usb" or url.startswith("usb:"):
        return DeviceUrl("usb", url[4:], {})
    return DeviceUrl("serial", url, {})


def open_transport(url: str, *, baud: int = 115200) -> Transport:
    """Open the transport a device URL names; raises TransportError naming the URL on failure."""
    parsed = parse_device_url(url)
    opener = _OPENERS.get(parsed.scheme)
    if opener is None:  # pragma: no cover - parse_device_url only yields known schemes
        raise TransportError(f"{url}: unknown scheme {parsed.scheme!r}")
    return opener(parsed, baud)


def _open_sim(parsed: DeviceUrl, baud: int) -> Transport:
    from drivers.sim.firmware import SimulatedHandpiece
    from drivers.sim.server import InProcessServer

    from .socket_link import SocketTransport

    try:
        seed = int(parsed.options.get("seed", "1"))
        sim = SimulatedHandpiece(parsed.target, seed=seed, now=time.monotonic())
    except ValueError as exc:
        raise TransportError(f"sim:{parsed.target}: {exc}") from exc
    sim_baud = int(parsed.options["baud"]) if "baud" in parsed.options else None

    class InProcessSimTransport(SocketTransport):
        """The host end of a simulator running on a thread of this process."""

        def __init__(self) -> None:
            self.server = InProcessServer(sim, baud=sim_baud)
            self.simulator = sim
            super().__init__(self.server.host_socket, f"sim:{parsed.target}")

        def close(self) -> None:
            self.server.close()

    return InProcessSimTransport()


def _open_serial(parsed: DeviceUrl, baud: int) -> Transport:
    from .serial_link import SerialTransport

    return SerialTransport(parsed.target, baud=baud)


def _open_usb(parsed: DeviceUrl, baud: int) -> Transport:
    # pyusb loads only for usb: URLs; the baud rate means nothing on USB bulk endpoints.
    from .usb_link import UsbTransport

    return UsbTransport.open(parsed.target)


_OPENERS: dict[str, Callable[[DeviceUrl, int], Transport]] = {
    "sim": _open_sim,
    "serial": _open_serial,
    "usb": _open_usb,
}
