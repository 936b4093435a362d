"""Serve a SimulatedHandpiece in real time behind a byte stream: a pty, TCP, or a socket pair.

One loop for all three: wait for bytes or the model's next deadline, feed the model, write what
it says. With a baud rate the loop also paces both directions as a UART at that rate would
(8N1: ten bit times per byte), since a pty ignores the baud rate.
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


def serve_channel(
    sim: SimulatedHandpiece,
    channel: Channel,
    stop: threading.Event,
    *,
    baud: int | None = None,
    clock: FirmwareClock | None = None,
) -> str:
    """Run until `stop` is set or the peer closes. Returns why it ended: "stopped" or "closed".
    `clock` is the firmware's (a server keeps one for the model's lifetime): it leaves out
    the time this loop was not running (drivers/sim/clock.py)."""
    clock = clock if clock is not None else FirmwareClock()
    inbound, outbound = Pacer(baud), Pacer(baud)
    while not stop.is_set():
        now = clock()
        deadlines = [sim.next_deadline(), now + 0.05]
        deadlines += [t for t in (inbound.next_due(), outbound.next_due()) if t is not None]
        # Already past if this loop ran late (a stall during its work counts too); never before
        # the model's own time, or a stall would stop firmware time there for good.
        wake = max(min(deadlines), sim.now)
        readable, _, _ = select.select([channel.fd], [], [], max(0.0, wake - now))
        now = clock.woke(wake)
        if readable:
            data = channel.recv()
            if not data:
                return "closed"
            inbound.push(data, now)
        arrived = inbound.pop_due(now)
        if arrived:
            sim.receive(arrived, now)
        sim.tick(now)
        outbound.push(sim.output(now), now)
        due = outbound.pop_due(now)
        if due:
            try:
                channel.send(due)
            except OSError:
                return "closed"
    return "stopped"


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
        channel = Channel(self.master)
        while not self.stop.is_set():
            ended = serve_channel(self.sim, channel, self.stop, baud=self.baud, clock=self.clock)
            if ended == "closed":
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
        while not self.stop.is_set():
            # Between hosts the handpiece runs on (pulses, its watchdog), as the pty server's
            # does; what it sends meanwhile reaches no one, as on a pulled cable.
            now = self.clock()
            self.sim.tick(now)
            self.sim.output(now)
            wake = max(min(now + 0.1, self.sim.next_deadline()), self.sim.now)
            self.listener.settimeout(max(0.001, wake - now))
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                self.clock.woke(wake)
                continue
            except OSError:
                return
            self.clock.woke(wake)
            with conn:
                conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                channel = Channel(conn.fileno(), sock=conn)
                serve_channel(self.sim, channel, self.stop, baud=self.baud, clock=self.clock)

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
        self._thread = threading.Thread(
            target=serve_channel,
            args=(sim, Channel(self._sim_socket.fileno(), sock=self._sim_socket), self.stop),
            kwargs={"baud": baud, "clock": self.clock},
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
