"""Who a handpiece says it is: HELLO_INFO read into the units of the parameter names.

What the host knows of the handpiece at the other end once HELLO is answered; the controller
compares it across reconnects (SR-15) and checks profiles and calibrations against it (SR-13).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .constants import HandpieceType, Interlock, Param
from .messages import HelloInfo


@dataclass(frozen=True)
class DeviceInfo:
    """Who the handpiece says it is (HELLO_INFO), in the units of the parameter names."""

    handpiece: HandpieceType
    serial: str
    firmware: str
    protocol: int
    boot_id: int
    simulated: bool
    wavelength_nm: int
    interlocks: frozenset[Interlock]
    capabilities: dict[Param, tuple[float, float]]

    @classmethod
    def from_hello(cls, hello: HelloInfo) -> DeviceInfo:
        return cls(
            handpiece=HandpieceType(hello.handpiece),
            serial=hello.serial,
            firmware=hello.firmware,
            protocol=hello.protocol,
            boot_id=hello.boot_id,
            simulated=bool(hello.flags & HelloInfo.FLAG_SIMULATED),
            wavelength_nm=hello.wavelength_nm,
            interlocks=frozenset(i for i in Interlock if hello.interlocks & (1 << i)),
            capabilities={
                Param(p): (lo / 1000.0, hi / 1000.0)
                for p, lo, hi in hello.capabilities
                if p in Param._value2member_map_
            },
        )

    def same_handpiece(self, other: DeviceInfo) -> bool:
        return (self.handpiece, self.serial, self.firmware, self.protocol) == (
            other.handpiece,
            other.serial,
            other.firmware,
            other.protocol,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "handpiece": self.handpiece.slug,
            "serial": self.serial,
            "firmware": self.firmware,
            "protocol": self.protocol,
            "simulated": self.simulated,
            "wavelength_nm": self.wavelength_nm,
            "interlocks": sorted(i.name.lower() for i in self.interlocks),
            "capabilities": {
                p.field_name: {"min": lo, "max": hi} for p, (lo, hi) in self.capabilities.items()
            },
        }
