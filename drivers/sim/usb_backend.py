"""The simulated handpieces as a pyusb backend (an implementation of usb.backend.IBackend).

pyusb's own code (usb.core.find, Device, usb.util.get_string, ...) runs unmodified against it,
and so does the USB transport. The backend enumerates the SimulatedUsbHandpiece devices of a
SimulatedUsbBus (usb_device.py) with their real descriptors (usb_descriptors.py), answers
control transfers (string descriptors among them) and carries bulk transfers to and from their
firmware.

LASERCTL_USB_BACKEND=sim makes every usb: URL use get_backend(): current_bus(), which holds one
simulated handpiece of each type until a test installs another bus.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable
from typing import Any

import usb.backend

from drivers.protocol import HandpieceType

from .usb_descriptors import (
    SIM_PRODUCT_IDS,
    SIM_VENDOR_ID,
    ConfigurationDescriptor,
    DeviceDescriptor,
    EndpointDescriptor,
    InterfaceDescriptor,
)
from .usb_device import DeviceRef, Handle, SimulatedUsbHandpiece

__all__ = [
    "SIM_PRODUCT_IDS",
    "SIM_VENDOR_ID",
    "SimulatedUsbBackend",
    "SimulatedUsbBus",
    "SimulatedUsbHandpiece",
    "current_bus",
    "default_bus",
    "get_backend",
    "install_bus",
]


# ---- the bus and the backend --------------------------------------------------------------------
class SimulatedUsbBus:
    """Simulated handpieces on one bus, and the pyusb backend that enumerates them."""

    def __init__(self, devices: Iterable[SimulatedUsbHandpiece] = (), *, number: int = 1) -> None:
        self.number = number
        self.devices: list[SimulatedUsbHandpiece] = []
        self._addresses = itertools.count(2)
        self.backend = SimulatedUsbBackend(self)
        for device in devices:
            self.add(device)

    def add(self, device: SimulatedUsbHandpiece) -> SimulatedUsbHandpiece:
        device.port = len(self.devices) + 1
        self.devices.append(device)
        device.start(self.number, self._addresses.__next__)
        return device

    def device(self, serial: str) -> SimulatedUsbHandpiece:
        for device in self.devices:
            if device.serial == serial:
                return device
        raise KeyError(f"no simulated USB handpiece with serial {serial!r}")

    def enumerate(self) -> list[DeviceRef]:
        return [device.ref() for device in self.devices if device.attached]

    def close(self) -> None:
        for device in self.devices:
            device.close()


class SimulatedUsbBackend(usb.backend.IBackend):  # type: ignore[misc]  # pyusb is untyped
    """usb.backend.IBackend over a SimulatedUsbBus. `dev` is a DeviceRef, a handle a Handle."""

    def __init__(self, bus: SimulatedUsbBus) -> None:
        self.bus = bus

    def enumerate_devices(self) -> list[DeviceRef]:
        return self.bus.enumerate()

    def get_parent(self, dev: DeviceRef) -> None:
        return None  # on the root hub

    def get_device_descriptor(self, dev: DeviceRef) -> DeviceDescriptor:
        return dev.device.device_descriptor(dev.address)

    def get_configuration_descriptor(self, dev: DeviceRef, config: int) -> ConfigurationDescriptor:
        if config != 0:
            raise IndexError(f"invalid configuration index {config}")
        return dev.device.configuration

    def get_interface_descriptor(
        self, dev: DeviceRef, intf: int, alt: int, config: int
    ) -> InterfaceDescriptor:
        # pyusb iterates alternate settings until this raises: it must, or iteration never ends.
        self.get_configuration_descriptor(dev, config)
        if intf != 0:
            raise IndexError(f"invalid interface index {intf}")
        if alt != 0:
            raise IndexError(f"invalid alternate setting index {alt}")
        return dev.device.interface

    def get_endpoint_descriptor(
        self, dev: DeviceRef, ep: int, intf: int, alt: int, config: int
    ) -> EndpointDescriptor:
        self.get_interface_descriptor(dev, intf, alt, config)
        if not 0 <= ep < len(dev.device.endpoints):
            raise IndexError(f"invalid endpoint index {ep}")
        return dev.device.endpoints[ep]

    def open_device(self, dev: DeviceRef) -> Handle:
        return dev.device.open(dev)

    def close_device(self, dev_handle: Handle) -> None:
        dev_handle.device.close_handle(dev_handle)

    def set_configuration(self, dev_handle: Handle, config_value: int) -> None:
        dev_handle.device.set_configuration(dev_handle, config_value)

    def get_configuration(self, dev_handle: Handle) -> int:
        return dev_handle.device.get_configuration(dev_handle)

    def set_interface_altsetting(self, dev_handle: Handle, intf: int, altsetting: int) -> None:
        dev_handle.device.set_altsetting(dev_handle, intf, altsetting)

    def claim_interface(self, dev_handle: Handle, intf: int) -> None:
        dev_handle.device.claim(dev_handle, intf)

    def release_interface(self, dev_handle: Handle, intf: int) -> None:
        dev_handle.device.release(dev_handle, intf)

    def bulk_write(self, dev_handle: Handle, ep: int, intf: int, data: Any, timeout: int) -> int:
        return dev_handle.device.bulk_write(dev_handle, ep, data.tobytes(), timeout)

    def bulk_read(self, dev_handle: Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        data = dev_handle.device.bulk_read(dev_handle, ep, len(buff) * buff.itemsize, timeout)
        buff[: len(data)] = type(buff)("B", data)
        return len(data)

    def intr_read(self, dev_handle: Handle, ep: int, intf: int, buff: Any, timeout: int) -> int:
        return dev_handle.device.notification_read(dev_handle, ep, timeout)

    def ctrl_transfer(
        self,
        dev_handle: Handle,
        request_type: int,
        request: int,
        value: int,
        index: int,
        data: Any,
        timeout: int,
    ) -> int:
        answer = dev_handle.device.control(
            dev_handle, request_type, request, value=value, index=index, length=len(data)
        )
        if request_type & 0x80:
            data[: len(answer)] = type(data)("B", answer)
            return len(answer)
        return len(data)

    def clear_halt(self, dev_handle: Handle, ep: int) -> None:
        dev_handle.device.clear_halt(dev_handle, ep)

    def reset_device(self, dev_handle: Handle) -> None:
        dev_handle.device.reset(dev_handle)

    def is_kernel_driver_active(self, dev_handle: Handle, intf: int) -> bool:
        return dev_handle.device.kernel_driver(dev_handle, intf, "query")

    def detach_kernel_driver(self, dev_handle: Handle, intf: int) -> None:
        dev_handle.device.kernel_driver(dev_handle, intf, "detach")

    def attach_kernel_driver(self, dev_handle: Handle, intf: int) -> None:
        dev_handle.device.kernel_driver(dev_handle, intf, "attach")


# ---- the registry -------------------------------------------------------------------------------
_registry_lock = threading.Lock()
_registry: dict[str, SimulatedUsbBus] = {}  # "current": the bus usb: URLs see


def default_bus() -> SimulatedUsbBus:
    """One simulated handpiece of each type (serials FX-00001 and ND-00001)."""
    return SimulatedUsbBus(SimulatedUsbHandpiece(kind) for kind in HandpieceType)


def current_bus() -> SimulatedUsbBus:
    """The bus every usb: URL sees with LASERCTL_USB_BACKEND=sim; created on first use."""
    with _registry_lock:
        if "current" not in _registry:
            _registry["current"] = default_bus()
        return _registry["current"]


def install_bus(bus: SimulatedUsbBus | None) -> None:
    """Replace the current bus (None: a default one on next use); the old one is shut down."""
    with _registry_lock:
        old = _registry.pop("current", None)
        if bus is not None:
            _registry["current"] = bus
    if old is not None and old is not bus:
        old.close()


def get_backend() -> SimulatedUsbBackend:
    return current_bus().backend
