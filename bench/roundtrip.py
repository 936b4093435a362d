"""Command round trip over a pty (GET_STATUS -> STATUS through the simulator's server loop),
against a raw echo over the same kind of pty in the same run."""

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


def _raw_echo(samples: int) -> list[float]:
    master, slave = pty.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    stop = threading.Event()

    def echo() -> None:
        while not stop.is_set():
            if select.select([master], [], [], 0.05)[0]:
                os.write(master, os.read(master, 4096))

    thread = threading.Thread(target=echo, daemon=True)
    thread.start()
    times = []
    frame = bytes(20) + b"\x00"
    for _ in range(samples):
        start = time.perf_counter()
        os.write(slave, frame)
        got = b""
        while len(got) < len(frame):
            got += os.read(slave, 4096)
        times.append(time.perf_counter() - start)
    stop.set()
    thread.join()
    os.close(master)
    os.close(slave)
    return times


def _command_round_trip(samples: int) -> list[float]:
    server = PtyServer(SimulatedHandpiece("fractional-1550", now=time.monotonic()))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    times = []
    try:
        with HandpieceConnection(server.path, reconnect=False) as conn:
            for _ in range(samples):
                start = time.perf_counter()
                conn.call(GetStatus())
                times.append(time.perf_counter() - start)
    finally:
        server.close()
        thread.join(timeout=2)
    return times


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    samples = 50 if quick else 2_000
    raw = _raw_echo(samples)
    cmd = _command_round_trip(samples)
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
