"""What every transport offers the host: bytes out, bytes in with a timeout, and a clear error
when the link is gone (an unplugged cable, a closed socket, a vanished device node)."""

from __future__ import annotations

from typing import Protocol


class TransportError(OSError):
    """The link is down: the device cannot be reached through this transport any more."""


class Transport(Protocol):
    description: str

    def write(self, data: bytes) -> None:
        """Write all of data or raise TransportError."""

    def read(self, timeout: float) -> bytes:
        """Bytes that arrive within timeout seconds (b"" if none); TransportError if down."""

    def close(self) -> None: ...
