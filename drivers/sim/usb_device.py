"""A simulated handpiece as a USB device: its endpoints, control requests, fault injection,
and a thread that runs a real SimulatedHandpiece in real time as its firmware would (watchdog
and pulses keep time with no host), with serve.py's FirmwareLoop. Its descriptors are
usb_descriptors.py; usb_backend.py puts these devices on a bus behind a pyusb backend.

Fault injection on a SimulatedUsbHandpiece (tests reach them through current_bus()):
  unplug() / replug(power_cycle=False)   off the bus: transfers on an open handle fail with
                                         ENODEV; a replug re-enumerates at a new address
  stall("in" | "out")                    the endpoint halts (EPIPE) until the host clears it
  timeout(seconds, "in" | "out" | "both") the device NAKs: transfers time out (ETIMEDOUT)
  short_packets(count, size)             the next `count` IN transfers carry at most `size` bytes
  inject(text)                           the firmware's own fault injection (faults.py)

One file because it is one device behind one lock: enumeration, configuration and claims, the
endpoints' queues, halts and NAK windows, and the firmware thread all read and change the same
state under `_cond`, and what a transfer does depends on all of it at once (a read on a handle
of a device replugged meanwhile, a stall during a NAK window). What stays fixed for a device,
its descriptors, is usb_descriptors.py; the serving loop is serve.py's.
"""

from __future__ import annotations

import errno
import itertools
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from usb.core import USBError, USBTimeoutError

from drivers.protocol import HandpieceType, StatusBody

from .clock import FirmwareClock
from .firmware import SimulatedHandpiece
from .serve import FirmwareLoop
from .usb_descriptors import (
    ConfigurationDescriptor,
    DeviceDescriptor,
    EndpointDescriptor,
    HandpieceDescriptors,
    InterfaceDescriptor,
)

IN_FIFO_LIMIT = 1 << 20  # bytes the device queues for a host that does not read

# libusb error codes with the errno and text pyusb's libusb1 backend raises them with, so the
# transport meets the same exceptions here as on hardware.
IO, NO_DEVICE, NOT_FOUND, BUSY, TIMEOUT, PIPE = -1, -4, -5, -6, -7, -9
_ERRORS = {
    IO: (errno.EIO, "Input/output error"),
    NO_DEVICE: (errno.ENODEV, "No such device (it may have been disconnected)"),
    NOT_FOUND: (errno.ENOENT, "Entity not found"),
    BUSY: (errno.EBUSY, "Resource busy"),
    TIMEOUT: (errno.ETIMEDOUT, "Operation timed out"),
    PIPE: (errno.EPIPE, "Pipe error"),
}

# Standard requests (USB 2.0, chapter 9) the device answers; anything else stalls endpoint 0.
GET_STATUS, CLEAR_FEATURE, GET_DESCRIPTOR, GET_CONFIGURATION = 0x00, 0x01, 0x06, 0x08
ENDPOINT_HALT = 0


def _error(code: int) -> USBError:
    number, text = _ERRORS[code]
    return (USBTimeoutError if code == TIMEOUT else USBError)(text, code, number)


# ---- one simulated handpiece on the bus ---------------------------------------------------------
@dataclass(frozen=True)
class DeviceRef:
    """What enumerate_devices() yields: one device at one attachment (address)."""

    device: SimulatedUsbHandpiece
    generation: int
    address: int


class Handle:
    """An open device handle; dead once the device it was opened on leaves the bus."""

    _ids = itertools.count(1)

    def __init__(self, device: SimulatedUsbHandpiece, generation: int) -> None:
        self.device = device
        self.generation = generation
        self.id = next(self._ids)
        self.closed = False


class SimulatedUsbHandpiece:
    """A SimulatedHandpiece behind a USB device: descriptors, endpoints, a firmware thread."""

    def __init__(
        self,
        handpiece: HandpieceType | str,
        *,
        seed: int = 1,
        serial: str | None = None,
        port: int = 1,
        kernel_driver: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clock = clock  # the USB side's: transfer timeouts, NAK windows
        self.firmware_clock = FirmwareClock(clock)  # the model's (drivers/sim/clock.py)
        self.sim = SimulatedHandpiece(handpiece, seed=seed, serial=serial, now=clock())
        self.descriptors = HandpieceDescriptors(self.sim.model.type, self.sim.serial)
        self.vendor_id = self.descriptors.vendor_id
        self.product_id = self.descriptors.product_id
        self.serial = self.sim.serial
        self.endpoints: tuple[EndpointDescriptor, ...] = self.descriptors.endpoints
        self.out_ep, self.in_ep = self.descriptors.out_ep, self.descriptors.in_ep
        self.interface: InterfaceDescriptor = self.descriptors.interface
        self.configuration: ConfigurationDescriptor = self.descriptors.configuration
        self.port = port
        self.bus_number = 0
        self.address = 0
        self._next_address: Callable[[], int] = itertools.count(2).__next__
        self._has_kernel_driver = kernel_driver
        self._cond = threading.Condition()
        self.attached = False
        self.generation = 0
        self._active_config = 0
        self._driver_bound = False
        self._claims: dict[int, Handle] = {}
        # Host to firmware, not yet taken, with the time each transfer arrived: the firmware
        # takes it as of then, however late this thread gets to run.
        self._out: deque[tuple[float, bytes]] = deque()
        self._in = bytearray()  # firmware to host, not yet read
        self._halted: set[int] = set()
        self._nak_until = {"in": 0.0, "out": 0.0}
        self._short_left = 0
        self._short_size = 0
        self.host_bytes = bytearray()  # what the host sent since the last plug (first 64 KiB)
        self.halts_cleared = 0
        self.kernel_driver_detaches = 0
        self.in_dropped = 0
        self._stop = False
        self.error: Exception | None = None  # why the firmware thread ended, if it crashed
        self._thread = threading.Thread(
            target=self._run, name=f"usb-sim {self.serial}", daemon=True
        )

    # ---- the firmware thread --------------------------------------------------------------
    def _run(self) -> None:
        try:
            with self._cond:  # the loop holds the lock but while it waits (_FirmwarePort.wait)
                FirmwareLoop(self.sim, self.firmware_clock).run(_FirmwarePort(self))
        except Exception as exc:  # a crashed firmware drops off the bus; it never goes quiet
            with self._cond:
                self.error = exc
                self._detach()

    def start(self, bus_number: int, next_address: Callable[[], int]) -> None:
        self.bus_number = bus_number
        self._next_address = next_address
        self.replug()
        self._thread.start()

    def close(self) -> None:
        with self._cond:
            self._stop = True
            self._detach()
        if self._thread.is_alive():
            self._thread.join(timeout=1.0)

    # ---- fault injection ------------------------------------------------------------------
    def unplug(self) -> None:
        """Pull the cable: the device leaves the bus; its firmware runs on (self-powered), so its
        watchdog sees the host go silent."""
        with self._cond:
            self._detach()

    def replug(self, *, power_cycle: bool = False) -> None:
        """Plug back in: a new enumeration at a new address, configured by the OS, with its
        kernel driver bound again. power_cycle also reboots the firmware (shot counter kept)."""
        with self._cond:
            self._detach()
            if power_cycle:
                self.sim.power_cycle(self.firmware_clock())
                self.sim.output(self.firmware_clock())  # BOOT went nowhere: no host was listening
            self.generation += 1
            self.address = self._next_address()
            self.attached = True
            self._active_config = 1
            self._driver_bound = self._has_kernel_driver
            self._nak_until = {"in": 0.0, "out": 0.0}  # injected faults end with the session
            self._short_left = 0
            self.host_bytes.clear()
            self._cond.notify_all()

    def _detach(self) -> None:
        self.attached = False
        self._claims.clear()
        self._out.clear()
        self._in.clear()
        self._halted.clear()
        self._active_config = 0
        self._cond.notify_all()

    def stall(self, direction: str) -> None:
        with self._cond:
            self._halted.add(self._endpoint(direction))
            self._cond.notify_all()

    def timeout(self, seconds: float, direction: str = "both") -> None:
        with self._cond:
            for side in ("in", "out") if direction == "both" else (direction,):
                self._endpoint(side)
                self._nak_until[side] = self.clock() + seconds
            self._cond.notify_all()

    def short_packets(self, count: int, size: int = 1) -> None:
        with self._cond:
            self._short_left, self._short_size = count, size

    def inject(self, text: str) -> None:
        with self._cond:
            self.sim.inject(text, self.firmware_clock())
            self._cond.notify_all()

    def status(self) -> StatusBody:
        """The firmware's status, read between two of its steps."""
        with self._cond:
            return self.sim.status()

    def _endpoint(self, direction: str) -> int:
        if direction not in ("in", "out"):
            raise ValueError(f"direction {direction!r}: expected 'in' or 'out'")
        return self.in_ep if direction == "in" else self.out_ep

    @property
    def kernel_driver_bound(self) -> bool:
        return self._driver_bound

    # ---- what the backend asks ------------------------------------------------------------
    def device_descriptor(self, address: int) -> DeviceDescriptor:
        return self.descriptors.device(bus=self.bus_number, address=address, port=self.port)

    def ref(self) -> DeviceRef:
        return DeviceRef(self, self.generation, self.address)

    def open(self, ref: DeviceRef) -> Handle:
        with self._cond:
            if not self.attached or ref.generation != self.generation:
                raise _error(NO_DEVICE)
            return Handle(self, self.generation)

    def close_handle(self, handle: Handle) -> None:
        with self._cond:
            handle.closed = True
            for number, owner in list(self._claims.items()):
                if owner is handle:
                    del self._claims[number]

    def _check(self, handle: Handle) -> None:
        if handle.closed:
            raise _error(IO)
        if not self.attached or handle.generation != self.generation:
            raise _error(NO_DEVICE)

    def set_configuration(self, handle: Handle, value: int) -> None:
        with self._cond:
            self._check(handle)
            if value not in (0, self.configuration.bConfigurationValue):
                raise _error(NOT_FOUND)
            # As Linux usbfs: refused while any interface is bound, to a kernel driver or to a
            # program (ours included); detach and release first.
            if self._driver_bound or self._claims:
                raise _error(BUSY)
            self._active_config = value
            self._halted.clear()
            self._in.clear()  # endpoints reset: nothing stale from an earlier host

    def get_configuration(self, handle: Handle) -> int:
        with self._cond:
            self._check(handle)
            return self._active_config

    def claim(self, handle: Handle, number: int) -> None:
        with self._cond:
            self._check(handle)
            if not self._active_config or number != self.interface.bInterfaceNumber:
                raise _error(NOT_FOUND)
            owner = self._claims.get(number)
            if self._driver_bound or (owner is not None and owner is not handle):
                raise _error(BUSY)
            self._claims[number] = handle

    def release(self, handle: Handle, number: int) -> None:
        with self._cond:
            self._check(handle)
            if self._claims.get(number) is not handle:
                raise _error(NOT_FOUND)
            del self._claims[number]

    def set_altsetting(self, handle: Handle, number: int, alt: int) -> None:
        with self._cond:
            self._check(handle)
            if number != self.interface.bInterfaceNumber or alt != 0:
                raise _error(NOT_FOUND)
            self._halted.clear()

    def kernel_driver(self, handle: Handle, number: int, action: str) -> bool:
        with self._cond:
            self._check(handle)
            if number != self.interface.bInterfaceNumber:
                raise _error(NOT_FOUND)
            if action == "detach":
                if not self._driver_bound:
                    raise _error(NOT_FOUND)
                self._driver_bound = False
                self.kernel_driver_detaches += 1
            elif action == "attach":
                if self._driver_bound or number in self._claims or not self._has_kernel_driver:
                    raise _error(BUSY)
                self._driver_bound = True
            return self._driver_bound

    def reset(self, handle: Handle) -> None:
        """USB port reset: endpoints back to their initial state, nothing queued."""
        with self._cond:
            self._check(handle)
            self._halted.clear()
            self._in.clear()

    def clear_halt(self, handle: Handle, ep: int) -> None:
        with self._cond:
            self._check(handle)
            if ep in self._halted:
                self._halted.discard(ep)
                self.halts_cleared += 1

    def _transfer_ready(self, handle: Handle, ep: int, expected: int) -> None:
        self._check(handle)
        if ep != expected or not self._active_config:
            raise _error(NOT_FOUND)
        if self._claims.get(self.interface.bInterfaceNumber) is not handle:
            raise _error(BUSY)  # pyusb claims before every transfer; so must every host
        if ep in self._halted:
            raise _error(PIPE)

    def _wait(self, deadline: float | None, until: float = 0.0) -> None:
        """Wait for a notification, the end of a NAK window, or the transfer's deadline."""
        now = self.clock()
        ends = [t for t in (deadline, until if until > now else None) if t is not None]
        if deadline is not None and now >= deadline:
            raise _error(TIMEOUT)
        self._cond.wait(min(ends) - now if ends else None)

    def bulk_write(self, handle: Handle, ep: int, data: bytes, timeout_ms: int) -> int:
        deadline = None if timeout_ms == 0 else self.clock() + timeout_ms / 1000.0
        with self._cond:
            while True:
                self._transfer_ready(handle, ep, self.out_ep)
                if self.clock() >= self._nak_until["out"]:
                    break
                self._wait(deadline, self._nak_until["out"])
            self._out.append((self.firmware_clock(), data))
            if len(self.host_bytes) < 65536:
                self.host_bytes += data[: 65536 - len(self.host_bytes)]
            self._cond.notify_all()
            return len(data)

    def bulk_read(self, handle: Handle, ep: int, size: int, timeout_ms: int) -> bytes:
        deadline = None if timeout_ms == 0 else self.clock() + timeout_ms / 1000.0
        with self._cond:
            while True:
                self._transfer_ready(handle, ep, self.in_ep)
                naking = self.clock() < self._nak_until["in"]
                if self._in and not naking:
                    break
                self._wait(deadline, self._nak_until["in"] if naking else 0.0)
            n = min(size, len(self._in))
            if self._short_left:
                self._short_left -= 1
                n = min(n, self._short_size)
            data = bytes(self._in[:n])
            del self._in[:n]
            return data

    def notification_read(self, handle: Handle, ep: int, timeout_ms: int) -> int:
        """The interrupt endpoint: this simulator never has news on it, so every read times out
        (or fails, if the device leaves the bus meanwhile)."""
        deadline = None if timeout_ms == 0 else self.clock() + timeout_ms / 1000.0
        with self._cond:
            while True:
                self._check(handle)
                if ep != self.endpoints[0].bEndpointAddress:
                    raise _error(NOT_FOUND)
                self._wait(deadline)

    def control(
        self,
        handle: Handle,
        request_type: int,
        request: int,
        *,
        value: int,
        index: int,
        length: int,
    ) -> bytes:
        """A standard request on endpoint 0; an unknown one stalls it (EPIPE), as devices do."""
        with self._cond:
            self._check(handle)
            recipient = request_type & 0x1F
            if request_type & 0x80 and request == GET_DESCRIPTOR:
                return self._descriptor(value >> 8, value & 0xFF, index)[:length]
            if request_type & 0x80 and request == GET_CONFIGURATION:
                return bytes([self._active_config])[:length]
            if request_type & 0x80 and request == GET_STATUS:
                halted = recipient == 2 and (index & 0xFF) in self._halted
                return struct.pack("<H", 1 if halted or recipient == 0 else 0)[:length]
            if request == CLEAR_FEATURE and recipient == 2 and value == ENDPOINT_HALT:
                if index & 0xFF in self._halted:
                    self._halted.discard(index & 0xFF)
                    self.halts_cleared += 1
                return b""
            raise _error(PIPE)

    def _descriptor(self, kind: int, number: int, langid: int) -> bytes:
        where = {"bus": self.bus_number, "address": self.address, "port": self.port}
        found = self.descriptors.read(kind, number, langid, **where)
        if found is None:
            raise _error(PIPE)
        return found


class _FirmwarePort:
    """The firmware's side of the endpoints, as a FirmwareLoop's port (serve.py). The loop
    runs with the device's lock held and lets go of it only to wait, so no transfer comes in
    between taking what arrived and deciding how long to wait."""

    def __init__(self, device: SimulatedUsbHandpiece) -> None:
        self.device = device

    def stopped(self) -> bool:
        return self.device._stop

    def take(self, now: float) -> list[tuple[float, bytes]]:
        # Each stamped by the host's thread when it came in.
        arrived = list(self.device._out)
        self.device._out.clear()
        return arrived

    def give(self, data: bytes, now: float) -> None:
        device = self.device
        if data and device.attached and device._active_config:
            room = IN_FIFO_LIMIT - len(device._in)
            device.in_dropped += max(0, len(data) - room)
            device._in += data[: max(0, room)]
            device._cond.notify_all()

    def deadlines(self, now: float) -> tuple[float, ...]:
        return ()

    def wait(self, timeout: float) -> None:
        self.device._cond.wait(max(0.0, timeout))
