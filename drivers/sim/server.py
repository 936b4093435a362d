"""Serve a SimulatedHandpiece in real time behind a byte stream: a pty, TCP, or a socket pair.

All three run serve.py's FirmwareLoop behind a ChannelPort: wait for bytes or the model's next
deadline, feed the model, write what it says. With a baud rate the port also paces both
directions as a UART at that rate would (8N1: ten bit times per byte), since a pty ignores the
baud rate. Between TCP hosts the same loop runs behind a port that only waits for the next one.
"""

from __future__ import annotations

import contextlib
import os
import pty
import select
import socket
import threading
import time
import tty
from collections import deque
from dataclasses import dataclass, field

from .clock import FirmwareClock
from .firmware import SimulatedHandpiece
from .serve import FirmwareLoop, PortClosed


class Channel:
    """A bidirectional byte stream on one file descriptor."""

    def __init__(self, fd: int, *, sock: socket.socket | None = None) -> None:
        self.fd = fd
        self.sock = sock

    def recv(self) -> bytes:
        """Bytes available now; b"" means the peer closed."""
        try:
            if self.sock is not None:
                return self.sock.recv(65536)
            return os.read(self.fd, 65536)
        except OSError:  # a reset TCP connection, or a pty master with no slave open (EIO)
            return b""

    def send(self, data: bytes) -> None:
        if self.sock is not None:
            self.sock.sendall(data)
            return
        view = memoryview(data)
        while view:
            n = os.write(self.fd, view)
            view = view[n:]


@dataclass
class Pacer:
    """Delays bytes as a UART at `baud` would; baud None means no delay."""

    baud: int | None
    _free_at: float = 0.0
    _held: deque[tuple[float, bytes]] = field(default_factory=deque)

    def push(self, data: bytes, now: float) -> None:
        if not data:
            return
        if self.baud is None:
            self._held.append((now, data))
            return
        self._free_at = max(self._free_at, now) + len(data) * 10.0 / self.baud
        self._held.append((self._free_at, data))

    def pop_due(self, now: float) -> bytes:
        out = bytearray()
        while self._held and self._held[0][0] <= now:
            out += self._held.popleft()[1]
        return bytes(out)

    def next_due(self) -> float | None:
        return self._held[0][0] if self._held else None


class ChannelPort:
    """A byte stream as a FirmwareLoop's port: select() on its descriptor, a Pacer each way."""

    POLL_S = 0.05  # back at least this often, to see `stop`

    def __init__(self, channel: Channel, stop: threading.Event, baud: int | None) -> None:
        self.channel = channel
        self.stop = stop
        self.inbound, self.outbound = Pacer(baud), Pacer(baud)
        self._readable = False

    def stopped(self) -> bool:
        return self.stop.is_set()

    def take(self, now: float) -> list[tuple[float, bytes]]:
        if self._readable:
            self._readable = False
            data = self.channel.recv()
            if not data:
                raise PortClosed
            self.inbound.push(data, now)
        arrived = self.inbound.pop_due(now)
        return [(now, arrived)] if arrived else []

    def give(self, data: bytes, now: float) -> None:
        self.outbound.push(data, now)
        due = self.outbound.pop_due(now)
        if due:
            try:
                self.channel.send(due)
            except OSError:
                raise PortClosed from None

    def deadlines(self, now: float) -> list[float]:
        due = (self.inbound.next_due(), self.outbound.next_due())
        return [now + self.POLL_S, *(t for t in due if t is not None)]

    def wait(self, timeout: float) -> None:
        readable, _, _ = select.select([self.channel.fd], [], [], max(0.0, timeout))
        self._readable = bool(readable)


class _BetweenHosts:
    """The TCP server's port while no host is connected: the handpiece runs on (pulses, its
    watchdog), as the pty server's does; what it sends meanwhile reaches no one, as on a pulled
    cable. Stops once the next host connects."""

    POLL_S = 0.1

    def __init__(self, listener: socket.socket, stop: threading.Event) -> None:
        self.listener = listener
        self.stop = stop
        self.host: socket.socket | None = None

    def stopped(self) -> bool:
        return self.stop.is_set() or self.host is not None

    def take(self, now: float) -> list[tuple[float, bytes]]:
        return []

    def give(self, data: bytes, now: float) -> None:
        pass

    def deadlines(self, now: float) -> list[float]:
        return [now + self.POLL_S]

    def wait(self, timeout: float) -> None:
        self.listener.settimeout(max(0.001, timeout))
        try:
            self.host, _ = self.listener.accept()
        except TimeoutError:
            pass
        except OSError:  # the listener was closed
            raise PortClosed from None


class PtyServer:
    """The simulator on a pseudo-terminal; `path` is the slave device the host opens."""

    def __init__(
        self,
        sim: SimulatedHandpiece,
        *,
        baud: int | None = None,
        clock: FirmwareClock | None = None,
    ) -> None:
        self.sim = sim
        self.baud = baud
        self.clock = clock if clock is not None else FirmwareClock()
        self.master, self._slave = pty.openpty()
        # Raw mode: no echo, no line discipline, 0x00 and ^C are plain bytes.
        tty.setraw(self._slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self._slave)
        self.stop = threading.Event()

    def serve_forever(self) -> None:
        # The server keeps its own slave fd open, so a host closing and reopening the pty is
        # a reconnect, not the end of the simulator.
        loop = FirmwareLoop(self.sim, self.clock)
        channel = Channel(self.master)
        while not self.stop.is_set():
            if loop.run(ChannelPort(channel, self.stop, self.baud)) == "closed":
                time.sleep(0.01)

    def close(self) -> None:
        self.stop.set()
        for fd in (self.master, self._slave):
            with contextlib.suppress(OSError):
                os.close(fd)


class TcpServer:
    """The simulator on 127.0.0.1; one host at a time, the next one when it disconnects."""

    def __init__(
        self,
        sim: SimulatedHandpiece,
        *,
        port: int = 0,
        baud: int | None = None,
        clock: FirmwareClock | None = None,
    ) -> None:
        self.sim = sim
        self.baud = baud
        self.clock = clock if clock is not None else FirmwareClock()
        self.listener = socket.create_server(("127.0.0.1", port))
        self.port = self.listener.getsockname()[1]
        self.url = f"socket://127.0.0.1:{self.port}"
        self.stop = threading.Event()

    def serve_forever(self) -> None:
        loop = FirmwareLoop(self.sim, self.clock)
        while not self.stop.is_set():
            waiting = _BetweenHosts(self.listener, self.stop)
            if loop.run(waiting) == "closed" or waiting.host is None:
                return
            with waiting.host as conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                channel = Channel(conn.fileno(), sock=conn)
                loop.run(ChannelPort(channel, self.stop, self.baud))

    def close(self) -> None:
        self.stop.set()
        with contextlib.suppress(OSError):
            self.listener.close()


class InProcessServer:
    """The simulator on a thread behind a socket pair; `host_socket` is the host's end."""

    def __init__(
        self,
        sim: SimulatedHandpiece,
        *,
        baud: int | None = None,
        clock: FirmwareClock | None = None,
    ) -> None:
        self.sim = sim
        self.clock = clock if clock is not None else FirmwareClock()
        self.host_socket, self._sim_socket = socket.socketpair()
        self.stop = threading.Event()
        channel = Channel(self._sim_socket.fileno(), sock=self._sim_socket)
        port = ChannelPort(channel, self.stop, baud)
        self._thread = threading.Thread(
            target=FirmwareLoop(sim, self.clock).run,
            args=(port,),
            name=f"sim-{sim.serial}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self.stop.set()
        self._thread.join(timeout=1.0)
        for sock in (self.host_socket, self._sim_socket):
            with contextlib.suppress(OSError):
                sock.close()
