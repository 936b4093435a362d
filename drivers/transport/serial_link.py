"""Serial transport over pyserial's serial_for_url: port paths, /dev/pts/N, socket://,
rfc2217://, spy:// and loop:// alike."""

from __future__ import annotations

import contextlib
import socket
from typing import Any

import serial

from .base import TransportError

DEFAULT_BAUD = 115200


class SerialTransport:
    def __init__(self, url: str, *, baud: int = DEFAULT_BAUD, write_timeout: float = 1.0) -> None:
        self.description = url
        try:
            port = serial.serial_for_url(url, do_not_open=True)
            port.baudrate = baud
            port.bytesize, port.parity, port.stopbits = 8, serial.PARITY_NONE, 1
            port.timeout = 0
            port.write_timeout = write_timeout
            if hasattr(port, "exclusive") and not url.startswith(
                ("socket://", "rfc2217://", "loop://", "spy://")
            ):
                port.exclusive = True  # a second program must not share the handpiece's port
            port.open()
        except (serial.SerialException, ValueError, OSError) as exc:
            raise TransportError(f"cannot open {url}: {exc}") from exc
        self._port: Any = port
        sock = getattr(port, "_socket", None)
        if isinstance(sock, socket.socket):
            # pyserial leaves Nagle on: a frame split over two writes would wait ~40 ms.
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def write(self, data: bytes) -> None:
        try:
            self._port.write(data)
        except (serial.SerialException, OSError, AttributeError, ValueError) as exc:
            raise TransportError(f"write to {self.description} failed: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        try:
            self._port.timeout = max(0.0, timeout)
            first = self._port.read(1)
            if not first:
                return b""
            waiting = self._port.in_waiting
            return bytes(first) + (bytes(self._port.read(waiting)) if waiting else b"")
        except (serial.SerialException, OSError, TypeError, AttributeError, ValueError) as exc:
            # pyserial on a port closed by another thread, or a vanished pty, fails with
            # TypeError/AttributeError/ValueError from inside select or its socket: all "down".
            raise TransportError(f"read from {self.description} failed: {exc}") from exc

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._port.close()
