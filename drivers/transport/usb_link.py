"""USB transport over pyusb: the framed protocol on a handpiece's bulk OUT and IN endpoints.

    usb:                    the first handpiece found
    usb:VID:PID             the handpiece with these IDs (hex); several attached: name the serial
    usb:VID:PID:SERIAL      the one with this serial number string

A handpiece is a device with the laserctl interface (vendor-specific class 0xFF, subclass 0x4C,
protocol 0x01; docs/usb.md) or with IDs in KNOWN_HANDPIECES. Opening it detaches a kernel
driver bound to that interface, sets the configuration, claims the interface and takes the bulk
endpoints its descriptors name. A stalled endpoint is cleared (clear_halt) and the transfer
retried; a read that times out is just "no bytes"; an unplugged device (ENODEV) or any other
USB error is a TransportError, so the host declares the link lost and, on reconnect, finds the
handpiece again and identifies it (HELLO) before anything else is sent.

LASERCTL_USB_BACKEND=sim puts every usb: URL on the simulated handpieces
(drivers/sim/usb_backend.py); otherwise pyusb's libusb1 backend, which needs libusb-1.0
(Debian: libusb-1.0-0).
"""

from __future__ import annotations

import contextlib
import errno
import math
import os
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import usb.backend.libusb1
import usb.core
import usb.util

from .base import TransportError

BACKEND_ENV = "LASERCTL_USB_BACKEND"
HANDPIECE_INTERFACE = (0xFF, 0x4C, 0x01)  # class, subclass, protocol (docs/usb.md)
KNOWN_HANDPIECES: dict[tuple[int, int], str] = {
    # The simulator's made-up IDs (drivers/sim/usb_backend.py). Real handpieces present the
    # laserctl interface; list them here too when their IDs are known.
    (0xFFFE, 0x1550): "simulated fractional-1550 handpiece",
    (0xFFFE, 0x1064): "simulated ndyag-1064 handpiece",
}
WRITE_TIMEOUT = 0.25  # a handpiece that takes no data for this long is gone (SR-09 link timeout)
MAX_STALL_CLEARS = 3  # per transfer; an endpoint that keeps stalling means a broken device
READ_PACKETS = 16  # one read asks for this many max-size packets


@dataclass(frozen=True)
class UsbSelector:
    """What a usb: URL asks for."""

    vendor_id: int | None = None
    product_id: int | None = None
    serial: str | None = None

    @classmethod
    def parse(cls, target: str) -> UsbSelector:
        if not target:
            return cls()
        parts = target.split(":", 2)
        try:
            if len(parts) < 2:
                raise ValueError
            ids = [int(p, 16) for p in parts[:2]]
            if not all(0 <= i <= 0xFFFF for i in ids):
                raise ValueError
        except ValueError:
            raise TransportError(
                f"usb:{target}: expected usb:, usb:VID:PID or usb:VID:PID:SERIAL (hex IDs)"
            ) from None
        serial = parts[2] if len(parts) == 3 and parts[2] else None
        return cls(ids[0], ids[1], serial)

    def __str__(self) -> str:
        if self.vendor_id is None or self.product_id is None:
            return "usb:"
        base = f"usb:{self.vendor_id:04x}:{self.product_id:04x}"
        return f"{base}:{self.serial}" if self.serial else base


@dataclass(frozen=True)
class UsbHandpiece:
    """One handpiece on the bus, as `laserctl devices` lists it."""

    vendor_id: int
    product_id: int
    serial: str | None  # None: the string could not be read (permissions: docs/usb.md)
    manufacturer: str | None
    product: str | None
    bus: int | None
    address: int | None
    note: str = ""

    @property
    def url(self) -> str:
        return str(UsbSelector(self.vendor_id, self.product_id, self.serial))


@dataclass(frozen=True)
class UsbBackend:
    name: str  # "sim" or "libusb1"
    backend: Any  # usb.backend.IBackend
    detail: str  # what it is, for `laserctl devices`


def select_backend() -> UsbBackend:
    """The backend usb: URLs use now: LASERCTL_USB_BACKEND=sim, or libusb-1.0."""
    choice = os.environ.get(BACKEND_ENV, "").strip().lower()
    if choice == "sim":
        from drivers.sim.usb_backend import get_backend

        return UsbBackend("sim", get_backend(), "simulated handpieces (LASERCTL_USB_BACKEND=sim)")
    if choice not in ("", "libusb1", "libusb"):
        raise TransportError(f"{BACKEND_ENV}={choice!r}: expected 'sim' or 'libusb1' (or unset)")
    backend = usb.backend.libusb1.get_backend()
    if backend is None:
        raise TransportError(
            "libusb-1.0 was not found: install it (Debian: apt-get install libusb-1.0-0), "
            f"or set {BACKEND_ENV}=sim for the simulated handpieces"
        )
    library = getattr(getattr(usb.backend.libusb1, "_lib", None), "_name", "libusb-1.0")
    return UsbBackend("libusb1", backend, f"libusb1 ({library})")


# ---- finding handpieces -------------------------------------------------------------------------
def _interfaces(device: Any) -> Iterator[tuple[Any, Any]]:
    for config in device:
        for interface in config:
            yield config, interface


def _bulk_endpoints(interface: Any) -> tuple[Any, Any] | None:
    def bulk(direction: int) -> Any:
        return usb.util.find_descriptor(
            interface,
            custom_match=lambda e: (
                usb.util.endpoint_type(e.bmAttributes) == usb.util.ENDPOINT_TYPE_BULK
                and usb.util.endpoint_direction(e.bEndpointAddress) == direction
            ),
        )

    out, inn = bulk(usb.util.ENDPOINT_OUT), bulk(usb.util.ENDPOINT_IN)
    return (out, inn) if out is not None and inn is not None else None


def _link_interface(device: Any, *, strict: bool) -> tuple[Any, Any] | None:
    """(configuration, interface) that carries the link: the laserctl interface, or with
    strict=False (the IDs were named) the first interface with a bulk OUT and a bulk IN."""
    fallback = None
    for config, interface in _interfaces(device):
        signature = (
            interface.bInterfaceClass,
            interface.bInterfaceSubClass,
            interface.bInterfaceProtocol,
        )
        if _bulk_endpoints(interface) is None:
            continue
        if signature == HANDPIECE_INTERFACE:
            return config, interface
        if fallback is None and not strict:
            fallback = (config, interface)
    return fallback


def _string(device: Any, kind: str) -> tuple[str | None, str]:
    try:
        return getattr(device, kind), ""
    except (usb.core.USBError, ValueError, NotImplementedError) as exc:
        return None, f"cannot read the {kind.replace('_', ' ')}: {exc}"


def _candidates(backend: Any, selector: UsbSelector) -> Iterator[tuple[Any, UsbHandpiece]]:
    named = selector.vendor_id is not None
    match = {"idVendor": selector.vendor_id, "idProduct": selector.product_id} if named else {}
    for device in usb.core.find(find_all=True, backend=backend, **match):
        known = (device.idVendor, device.idProduct) in KNOWN_HANDPIECES
        try:
            link = _link_interface(device, strict=not (named or known))
        except (usb.core.USBError, ValueError, NotImplementedError):
            link = None  # descriptors that cannot be read: not a handpiece we could use
        if link is None:
            usb.util.dispose_resources(device)
            continue
        serial, note = _string(device, "serial_number")
        manufacturer, _ = _string(device, "manufacturer")
        product, _ = _string(device, "product")
        usb.util.dispose_resources(device)  # reading strings opened it
        yield (
            device,
            UsbHandpiece(
                device.idVendor,
                device.idProduct,
                serial,
                manufacturer,
                product,
                device.bus,
                device.address,
                note,
            ),
        )


def list_handpieces(backend: UsbBackend | None = None) -> list[UsbHandpiece]:
    """Every handpiece attached, in enumeration order."""
    chosen = backend or select_backend()
    return [found for _, found in _candidates(chosen.backend, UsbSelector())]


# ---- the transport ------------------------------------------------------------------------------
class UsbTransport:
    """The framed byte stream over one handpiece's bulk endpoints."""

    def __init__(self, device: Any, description: str, *, write_timeout: float = WRITE_TIMEOUT):
        self.description = description
        # The URL that reaches this same handpiece again (a reconnect must not take another).
        self.device_url = description
        self.write_timeout = write_timeout
        self._device = device
        self._state = threading.Lock()
        self._closed = False
        self._busy = 0  # reads and writes under way
        self._detached = False
        found = _link_interface(device, strict=False)
        if found is None:
            raise TransportError(f"{description}: no interface with bulk OUT and IN endpoints")
        config, interface = found
        self._interface = interface.bInterfaceNumber
        endpoints = _bulk_endpoints(interface)
        assert endpoints is not None
        self._ep_out, self._ep_in = endpoints
        self._read_size = self._ep_in.wMaxPacketSize * READ_PACKETS
        try:
            # Linux refuses SET_CONFIGURATION while a kernel driver holds an interface, so the
            # driver goes first.
            with contextlib.suppress(NotImplementedError):  # no such thing on this platform
                if device.is_kernel_driver_active(self._interface):
                    device.detach_kernel_driver(self._interface)
                    self._detached = True
            # Also a light reset of the endpoints: nothing stale from an earlier session.
            device.set_configuration(config.bConfigurationValue)
            usb.util.claim_interface(device, self._interface)
            if interface.bAlternateSetting:
                device.set_interface_altsetting(self._interface, interface.bAlternateSetting)
        except usb.core.USBError as exc:
            self.close()
            raise TransportError(f"cannot open {description}: {exc}{_hint(exc)}") from exc

    @classmethod
    def open(cls, target: str) -> UsbTransport:
        selector = UsbSelector.parse(target)
        backend = select_backend()
        skipped: list[str] = []
        chosen: list[tuple[Any, UsbHandpiece]] = []
        for device, found in _candidates(backend.backend, selector):
            if selector.serial is not None and found.serial != selector.serial:
                if found.serial is None:
                    skipped.append(f"{found.url} ({found.note})")
                continue
            chosen.append((device, found))
            if selector.vendor_id is None:
                break  # usb: takes the first handpiece found
        if not chosen:
            detail = f"; could not check {', '.join(skipped)}" if skipped else ""
            raise TransportError(
                f"{selector}: no such USB handpiece (backend {backend.name}){detail}"
            )
        if len(chosen) > 1:
            urls = ", ".join(found.url for _, found in chosen)
            raise TransportError(
                f"{selector}: {len(chosen)} handpieces attached ({urls}): name one"
            )
        device, found = chosen[0]
        return cls(device, found.url)

    # ---- Transport ------------------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        deadline = time.monotonic() + self.write_timeout
        view = memoryview(data)
        stalls = 0
        with self._transfer():
            while view:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TransportError(
                        f"write to {self.description}: the handpiece took no data for "
                        f"{self.write_timeout:g} s"
                    )
                try:
                    view = view[self._ep_out.write(bytes(view), _ms(remaining)) :]
                except usb.core.USBTimeoutError:
                    continue  # nothing went; try again until the deadline
                except (usb.core.USBError, ValueError) as exc:
                    stalls = self._recover(self._ep_out, exc, stalls, "write to")

    def read(self, timeout: float) -> bytes:
        stalls = 0
        with self._transfer():
            while True:
                try:
                    return bytes(self._ep_in.read(self._read_size, _ms(timeout)))
                except usb.core.USBTimeoutError:
                    return b""  # a zero-length packet reads the same: no bytes, not an error
                except (usb.core.USBError, ValueError) as exc:
                    stalls = self._recover(self._ep_in, exc, stalls, "read from")

    @contextlib.contextmanager
    def _transfer(self) -> Iterator[None]:
        """One read or write in flight. None starts after close(), which would have pyusb open
        and claim the device again for it; one under way keeps the interface claimed until it
        ends, and the last to end releases it."""
        with self._state:
            if self._closed:
                raise TransportError(f"{self.description} is closed")
            self._busy += 1
        try:
            yield
        finally:
            with self._state:
                self._busy -= 1
                last = self._closed and self._busy == 0
            if last:
                self._release()

    def _recover(self, endpoint: Any, exc: Exception, stalls: int, what: str) -> int:
        """Clear a stalled endpoint and return the stall count; raise for anything else."""
        if _is_stall(exc) and stalls < MAX_STALL_CLEARS:
            try:
                endpoint.clear_halt()
            except (usb.core.USBError, ValueError) as cleared:
                raise self._lost(what, cleared) from cleared
            return stalls + 1
        raise self._lost(what, exc) from exc

    def _lost(self, what: str, exc: Exception) -> TransportError:
        if getattr(exc, "errno", None) == errno.ENODEV:
            return TransportError(f"{what} {self.description}: the handpiece was unplugged ({exc})")
        return TransportError(f"{what} {self.description} failed: {exc}")

    def close(self) -> None:
        with self._state:
            if self._closed:
                return
            self._closed = True
            idle = self._busy == 0
        if idle:
            self._release()

    def _release(self) -> None:
        device = self._device
        with contextlib.suppress(usb.core.USBError, ValueError):
            usb.util.release_interface(device, self._interface)
        if self._detached:  # give the interface back to the driver we took it from
            with contextlib.suppress(usb.core.USBError, ValueError, NotImplementedError):
                device.attach_kernel_driver(self._interface)
        with contextlib.suppress(usb.core.USBError, ValueError):
            usb.util.dispose_resources(device)


def _ms(seconds: float) -> int:
    # libusb takes 0 as "wait forever": never pass it.
    return max(1, math.ceil(seconds * 1000))


def _is_stall(exc: Exception) -> bool:
    return getattr(exc, "errno", None) == errno.EPIPE or getattr(exc, "backend_error_code", 0) == -9


def _hint(exc: usb.core.USBError) -> str:
    if exc.errno == errno.EACCES:
        return " (no permission: install the udev rule in docs/usb.md)"
    if exc.errno == errno.EBUSY:
        return " (another program holds the handpiece)"
    return ""
