"""A transport over a connected socket: the host end of the in-process simulator."""

from __future__ import annotations

import contextlib
import select
import socket

from .base import TransportError


class SocketTransport:
    def __init__(self, sock: socket.socket, description: str) -> None:
        self.description = description
        self._sock = sock

    def write(self, data: bytes) -> None:
        try:
            self._sock.sendall(data)
        except OSError as exc:
            raise TransportError(f"write to {self.description} failed: {exc}") from exc

    def read(self, timeout: float) -> bytes:
        try:
            readable, _, _ = select.select([self._sock], [], [], max(0.0, timeout))
            if not readable:
                return b""
            data = self._sock.recv(65536)
        except (OSError, ValueError) as exc:
            raise TransportError(f"read from {self.description} failed: {exc}") from exc
        if not data:
            raise TransportError(f"{self.description} closed the connection")
        return data

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.close()
