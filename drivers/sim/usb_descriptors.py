"""The USB descriptors of a simulated handpiece: what it tells the host it is.

IDs (made up, the simulator's own, assigned by the USB-IF to nobody we know): vendor 0xFFFE,
product 0x1550 for the fractional 1550 nm handpiece and 0x1064 for the Nd:YAG 1064 nm one. The
serial string is the SimulatedHandpiece's serial. docs/usb.md lists every descriptor. Each
descriptor is what pyusb reads (fields as attributes) and what GET_DESCRIPTOR returns (pack());
usb_device.py answers with them.
"""

from __future__ import annotations

import struct
from typing import ClassVar

from drivers.protocol import HandpieceType

SIM_VENDOR_ID = 0xFFFE
SIM_PRODUCT_IDS = {HandpieceType.FRACTIONAL_1550: 0x1550, HandpieceType.NDYAG_1064: 0x1064}
# The laserctl handpiece interface (docs/usb.md): vendor-specific class, subclass 'L', protocol 1.
HANDPIECE_INTERFACE = (0xFF, 0x4C, 0x01)
# Endpoint addresses (bulk OUT, bulk IN, interrupt IN) differ by type on purpose: the transport
# must take them from the descriptors.
ENDPOINTS = {
    HandpieceType.FRACTIONAL_1550: (0x01, 0x82, 0x83),
    HandpieceType.NDYAG_1064: (0x04, 0x85, 0x86),
}
MAX_PACKET = 64  # full-speed bulk endpoints
LANGID_EN_US = 0x0409
SPEED_FULL = 2  # libusb_speed
DESC_DEVICE, DESC_CONFIGURATION, DESC_STRING = 0x01, 0x02, 0x03


class Descriptor:
    """A descriptor as pyusb reads it (fields as attributes) and as the wire carries it (pack)."""

    TYPE: ClassVar[int]
    FIELDS: ClassVar[str]  # the field names, in wire order, separated by spaces
    FORMAT: ClassVar[str]  # struct format of FIELDS, little-endian

    def __init__(self, **fields: int) -> None:
        fields.setdefault("bLength", struct.calcsize(self.FORMAT))
        fields.setdefault("bDescriptorType", self.TYPE)
        missing = [name for name in self.FIELDS.split() if name not in fields]
        if missing:
            raise TypeError(f"{type(self).__name__}: missing {', '.join(missing)}")
        self.fields = fields
        self.extra_descriptors: list[int] = []

    def __getattr__(self, name: str) -> int:
        fields: dict[str, int] = self.__dict__.get("fields", {})
        if name in fields:
            return fields[name]
        raise AttributeError(name)

    def pack(self) -> bytes:
        return struct.pack(self.FORMAT, *(self.fields[name] for name in self.FIELDS.split()))


class DeviceDescriptor(Descriptor):
    TYPE = DESC_DEVICE
    FIELDS = (
        "bLength bDescriptorType bcdUSB bDeviceClass bDeviceSubClass bDeviceProtocol "
        "bMaxPacketSize0 idVendor idProduct bcdDevice iManufacturer iProduct iSerialNumber "
        "bNumConfigurations"
    )
    FORMAT = "<BBHBBBBHHHBBBB"

    def __init__(self, *, bus: int, address: int, port: int, **fields: int) -> None:
        super().__init__(**fields)
        # Where the device sits: pyusb copies these along with the descriptor fields.
        self.bus = bus
        self.address = address
        self.port_number = port
        self.port_numbers = (port,)
        self.speed = SPEED_FULL


class ConfigurationDescriptor(Descriptor):
    TYPE = DESC_CONFIGURATION
    FIELDS = (
        "bLength bDescriptorType wTotalLength bNumInterfaces bConfigurationValue "
        "iConfiguration bmAttributes bMaxPower"
    )
    FORMAT = "<BBHBBBBB"


class InterfaceDescriptor(Descriptor):
    TYPE = 0x04
    FIELDS = (
        "bLength bDescriptorType bInterfaceNumber bAlternateSetting bNumEndpoints "
        "bInterfaceClass bInterfaceSubClass bInterfaceProtocol iInterface"
    )
    FORMAT = "<BBBBBBBBB"


class EndpointDescriptor(Descriptor):
    TYPE = 0x05
    FIELDS = "bLength bDescriptorType bEndpointAddress bmAttributes wMaxPacketSize bInterval"
    FORMAT = "<BBBBHB"

    def __init__(self, **fields: int) -> None:
        super().__init__(**fields)
        self.bRefresh = 0  # audio endpoints only; libusb reports 0 for the others
        self.bSynchAddress = 0


def string_descriptor(text: str) -> bytes:
    raw = text.encode("utf-16-le")
    return bytes([2 + len(raw), DESC_STRING]) + raw


class HandpieceDescriptors:
    """Every descriptor of one simulated handpiece of type `kind` with this serial."""

    def __init__(self, kind: HandpieceType, serial: str) -> None:
        self.vendor_id = SIM_VENDOR_ID
        self.product_id = SIM_PRODUCT_IDS[kind]
        self.strings = {
            1: "laserctl simulator",
            2: f"Simulated {kind.slug} handpiece",
            3: serial,
            4: "laserctl handpiece link",
        }
        self.out_ep, self.in_ep, notify_ep = ENDPOINTS[kind]
        self.endpoints = (
            # Listed first so that a transport picking endpoints by position would get it wrong.
            EndpointDescriptor(bEndpointAddress=notify_ep, bmAttributes=0x03, wMaxPacketSize=16,
                               bInterval=10),
            EndpointDescriptor(bEndpointAddress=self.out_ep, bmAttributes=0x02,
                               wMaxPacketSize=MAX_PACKET, bInterval=0),
            EndpointDescriptor(bEndpointAddress=self.in_ep, bmAttributes=0x02,
                               wMaxPacketSize=MAX_PACKET, bInterval=0),
        )  # fmt: skip
        cls, subclass, protocol = HANDPIECE_INTERFACE
        self.interface = InterfaceDescriptor(
            bInterfaceNumber=0,
            bAlternateSetting=0,
            bNumEndpoints=len(self.endpoints),
            bInterfaceClass=cls,
            bInterfaceSubClass=subclass,
            bInterfaceProtocol=protocol,
            iInterface=4,
        )
        self.configuration = ConfigurationDescriptor(
            wTotalLength=9 + 9 + 7 * len(self.endpoints),
            bNumInterfaces=1,
            bConfigurationValue=1,
            iConfiguration=0,
            bmAttributes=0xC0,  # self-powered: the handpiece runs on the console's supply
            bMaxPower=50,  # 100 mA
        )

    def device(self, *, bus: int, address: int, port: int) -> DeviceDescriptor:
        return DeviceDescriptor(
            bus=bus,
            address=address,
            port=port,
            bcdUSB=0x0200,
            bDeviceClass=0,  # class per interface
            bDeviceSubClass=0,
            bDeviceProtocol=0,
            bMaxPacketSize0=64,
            idVendor=self.vendor_id,
            idProduct=self.product_id,
            bcdDevice=0x0100,
            iManufacturer=1,
            iProduct=2,
            iSerialNumber=3,
            bNumConfigurations=1,
        )

    def configuration_bytes(self) -> bytes:
        parts = [self.configuration.pack(), self.interface.pack()]
        return b"".join(parts + [ep.pack() for ep in self.endpoints])

    def read(
        self, kind: int, number: int, langid: int, *, bus: int, address: int, port: int
    ) -> bytes | None:
        """What GET_DESCRIPTOR returns for (type, index, language); None: no such descriptor."""
        if kind == DESC_DEVICE and number == 0:
            return self.device(bus=bus, address=address, port=port).pack()
        if kind == DESC_CONFIGURATION and number == 0:
            return self.configuration_bytes()
        if kind == DESC_STRING and number == 0:
            return struct.pack("<BBH", 4, DESC_STRING, LANGID_EN_US)
        if kind == DESC_STRING and number in self.strings and langid == LANGID_EN_US:
            return string_descriptor(self.strings[number])
        return None
