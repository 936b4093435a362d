"""Command round trip over a pty (GET_STATUS -> STATUS through the simulator's server loop),
against a raw echo over the same kind of pty in the same run, the two sampled in alternating
blocks so that a change in the machine's load hits both alike."""

from __future__ import annotations

import os
import pty
import select
import statistics
import threading
import time
import tty
from typing import Any

from drivers.host import HandpieceConnection
from drivers.protocol import GetStatus
from drivers.sim.firmware import SimulatedHandpiece
from drivers.sim.server import PtyServer

BLOCK = 50


class RawEcho:
    """A pty whose master end echoes every byte at once: the floor of any round trip over a
    pty between two threads."""

    def __init__(self) -> None:
        self.master, self.slave = pty.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._echo, daemon=True)
        self._thread.start()

    def _echo(self) -> None:
        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.05)[0]:
                os.write(self.master, os.read(self.master, 4096))

    def sample(self, samples: int) -> list[float]:
        times = []
        frame = bytes(20) + b"\x00"
        for _ in range(samples):
            start = time.perf_counter()
            os.write(self.slave, frame)
            got = b""
            while len(got) < len(frame):
                got += os.read(self.slave, 4096)
            times.append(time.perf_counter() - start)
        return times

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        os.close(self.master)
        os.close(self.slave)


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    samples = 50 if quick else 2_000
    server = PtyServer(SimulatedHandpiece("fractional-1550", now=time.monotonic()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    echo = RawEcho()
    raw: list[float] = []
    cmd: list[float] = []
    try:
        with HandpieceConnection(server.path, reconnect=False) as conn:
            while len(cmd) < samples:
                block = min(BLOCK, samples - len(cmd))
                raw += echo.sample(block)
                for _ in range(block):
                    start = time.perf_counter()
                    conn.call(GetStatus())
                    cmd.append(time.perf_counter() - start)
    finally:
        echo.close()
        server.close()
        thread.join(timeout=2)
    out = []
    for label, q in (("p50", 0.5), ("p99", 0.99)):
        value = statistics.quantiles(cmd, n=100)[int(q * 100) - 1] * 1e3
        base = statistics.quantiles(raw, n=100)[int(q * 100) - 1] * 1e3
        out.append(
            {
                "name": f"command round trip over a pty, {label}",
                "value": value,
                "unit": "ms",
                "baseline": base,
                "baseline_name": "raw pty echo",
                "ratio": value / base,
                "target": "<= 1.5x raw echo",
            }
        )
    return out
