"""Serial transport over pyserial's serial_for_url: port paths, /dev/pts/N, socket://,
rfc2217://, spy:// and loop:// alike.

pyserial opens and configures every port. On a POSIX serial port or pty, reads and writes then
go straight to its file descriptor (select + os.read, os.write), the way pyserial's own read()
and write() do underneath: pyserial's read(timeout) costs a termios reconfiguration (tcsetattr,
and flock on an exclusive port) for every new timeout, which was most of the host's share of a
command round trip (docs/bench.md). A write the kernel does not take whole goes on through
pyserial's write(), with its write timeout.
"""

from __future__ import annotations

import contextlib
import os
import select
import socket
from typing import Any

import serial

from .base import TransportError

_PosixSerial: type | None
try:  # POSIX only; elsewhere every read and write goes through pyserial
    from serial.serialposix import Serial as _PosixSerial
except ImportError:  # pragma: no cover - Windows
    _PosixSerial = None

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
        # Only a plain POSIX port: subclasses (spy://, VTIME and poll variants) keep pyserial's.
        self._direct = _PosixSerial is not None and type(port) is _PosixSerial
        sock = getattr(port, "_socket", None)  # socket:// only
        self._socket: socket.socket | None = sock if isinstance(sock, socket.socket) else None
        if self._socket is not None:
            # pyserial leaves Nagle on: a frame split over two writes would wait ~40 ms.
            self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _fd(self) -> int:
        """The open port's descriptor (pyserial sets it to None when the port is closed)."""
        fd = self._port.fd
        if fd is None:
            raise TransportError(f"{self.description} is closed")
        return int(fd)

    def write(self, data: bytes) -> None:
        try:
            if self._direct:
                try:
                    written = os.write(self._fd(), data)
                except BlockingIOError:
                    written = 0
                if written == len(data):
                    return
                data = data[written:]  # the rest through pyserial, with its write timeout
            self._port.write(data)
        except TransportError:
            raise
        except (serial.SerialException, OSError, AttributeError, ValueError) as exc:
            raise TransportError(f"write to {self.description} failed: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        try:
            if self._direct:
                fd = self._fd()
                if not select.select([fd], [], [], max(0.0, timeout))[0]:
                    return b""
                try:
                    data = os.read(fd, 65536)
                except BlockingIOError:
                    return b""
                if not data:
                    # What pyserial reports for a port that is readable but gives nothing.
                    raise TransportError(
                        f"read from {self.description} failed: device reports readiness to "
                        "read but returned no data (device disconnected?)"
                    )
                return data
            self._port.timeout = max(0.0, timeout)
            first = self._port.read(1)
            if not first:
                return b""
            waiting = self._port.in_waiting
            return bytes(first) + (bytes(self._port.read(waiting)) if waiting else b"")
        except TransportError:
            raise
        except (serial.SerialException, OSError, TypeError, AttributeError, ValueError) as exc:
            # pyserial on a port closed by another thread, or a vanished pty, fails with
            # TypeError/AttributeError/ValueError from inside select or its socket: all "down".
            raise TransportError(f"read from {self.description} failed: {exc}") from exc

    def close(self) -> None:
        sock = self._socket
        if sock is not None:
            # pyserial's socket:// close() sleeps 0.3 s "in case of quick reconnects"; our
            # simulator takes the next host from its listen queue, so close the socket here.
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                sock.close()
            self._port._socket = None
            self._port.is_open = False
            return
        with contextlib.suppress(Exception):
            self._port.close()
