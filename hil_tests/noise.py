"""A noisy line: a TCP proxy between the host and a device URL `socket://...` that corrupts
frames in both directions and throws garbage bytes between them, as a bad cable or an EMI burst
would. The simulator's own fault injection (`corrupt`, `garbage`, `truncate`) only shapes what
the device sends; this also hits what the host sends.

    with LineNoise("socket://127.0.0.1:7000") as line:   # line.url: where the host connects
        line.start(every=5, garbage=24)                    # every 5th frame, both ways
        ...
        line.stop()
        line.corrupted  # {"to_device": n, "to_host": m}
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
import threading
from types import TracebackType

DELIMITER = 0


class LineNoise:
    def __init__(self, upstream: str, *, seed: int = 11) -> None:
        host, _, port = upstream.removeprefix("socket://").rpartition(":")
        self.upstream = (host, int(port))
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"socket://127.0.0.1:{self.listener.getsockname()[1]}"
        self.rng = random.Random(seed)
        self.every = 0  # corrupt every Nth frame in each direction; 0: pass everything
        self.garbage = 0  # random bytes sent after each corrupted frame
        self.corrupted = {"to_device": 0, "to_host": 0}
        self.frames = {"to_device": 0, "to_host": 0}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="line-noise", daemon=True)
        self._thread.start()

    def start(self, *, every: int, garbage: int = 0) -> None:
        with self._lock:
            self.every, self.garbage = every, garbage

    def stop(self) -> None:
        with self._lock:
            self.every = 0

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        with contextlib.suppress(OSError):
            self.listener.close()

    def __enter__(self) -> LineNoise:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ---- the proxy ----------------------------------------------------------------------------
    def _serve(self) -> None:
        self.listener.settimeout(0.1)
        while not self._stop.is_set():
            try:
                host, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                device = socket.create_connection(self.upstream, timeout=2)
            except OSError:
                host.close()
                continue
            for sock in (host, device):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with host, device:
                self._pump(host, device)

    def _pump(self, host: socket.socket, device: socket.socket) -> None:
        pending = {"to_device": bytearray(), "to_host": bytearray()}
        while not self._stop.is_set():
            readable, _, _ = select.select([host, device], [], [], 0.05)
            for sock in readable:
                try:
                    data = sock.recv(65536)
                except OSError:
                    data = b""
                if not data:
                    return  # either end went away: so does the other (the next host reconnects)
                direction = "to_device" if sock is host else "to_host"
                out = self._shape(direction, pending[direction], data)
                target = device if sock is host else host
                try:
                    target.sendall(out)
                except OSError:
                    return

    def _shape(self, direction: str, pending: bytearray, data: bytes) -> bytes:
        """Forward whole frames (up to and with their delimiter), each possibly corrupted."""
        pending += data
        out = bytearray()
        while (end := pending.find(DELIMITER)) >= 0:
            frame = bytearray(pending[: end + 1])
            del pending[: end + 1]
            self.frames[direction] += 1
            with self._lock:
                every, garbage = self.every, self.garbage
            if every and self.frames[direction] % every == 0 and len(frame) > 2:
                # One byte changed, never into a delimiter: the frame keeps its length and is
                # caught by its CRC (or COBS, or its length), never acted upon.
                i = self.rng.randrange(len(frame) - 1)
                new = self.rng.randrange(1, 256)
                frame[i] = new if new != frame[i] else new % 255 + 1
                self.corrupted[direction] += 1
                out += frame
                out += bytes(self.rng.randrange(256) for _ in range(garbage))
                continue
            out += frame
        return bytes(out)
