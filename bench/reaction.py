"""Safety reaction over a pty, p50 and p99, against the raw pty round trip of the same run:

- interlock: from the read that brought the device's INTERLOCK_OPENED (the key switch turned
  off mid-burst) to the host, to the DISARM frame written by the host (SR-02 allows 50 ms);
- e-stop: from the host writing ESTOP (runner.estop(), mid-burst) to the simulator's firmware
  stopping emission;
- e-stop call: from runner.estop() being called, mid-burst and with the controller's owner
  thread busy (a call() that holds it), to the ESTOP frame written: the path that never waits
  behind the queue (SR-03; tests/test_controller_runner.py checks that it happens, this how fast).

The simulator runs in a process of its own (bench/simproc.py: the pty server and firmware of
`laserctl sim`, noting when emission stops); the host is the controller as `laserctl session`
wires it (runner, connection, group-commit shot log on disk), with its transport tapped: each
read and write is timed with time.monotonic_ns() next to the system call, the clock the
simulator's notes use too. No throttle: the line is as fast as the pty. The baseline, a raw
echo over a pty (bench/roundtrip.py), is sampled between the samples, so that a change in the
machine's load hits both alike.
"""

from __future__ import annotations

import dataclasses
import json
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from drivers.host import HandpieceConnection, Notification
from drivers.protocol import (
    Disarm,
    EStop,
    Fault,
    FaultCode,
    FrameDecoder,
    Interlock,
    Message,
    Param,
    ProtocolError,
    decode_message,
)
from drivers.protocol.framing import Frame
from drivers.transport import Transport, open_transport
from laserctl.controller.core import Controller
from laserctl.controller.events import ConfirmEyewear, Connect, RequestArm, RequestReset
from laserctl.controller.runner import ControllerRunner
from laserctl.controller.table import State
from laserctl.plan import FRACTIONAL_CONSERVATIVE, ParamWindow
from laserctl.records import controller_context, open_store
from laserctl.records.writer import GroupCommitWriter

from .fastsim import temp_dir
from .roundtrip import RawEcho

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 5.0


class Tap:
    """The host's transport, with every chunk read or written kept with its time."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.description = inner.description
        self.reads: list[tuple[int, bytes]] = []
        self.writes: list[tuple[int, bytes]] = []

    def write(self, data: bytes) -> None:
        at = time.monotonic_ns()
        self.inner.write(data)
        self.writes.append((at, bytes(data)))

    def read(self, timeout: float) -> bytes:
        data = self.inner.read(timeout)
        if data:
            self.reads.append((time.monotonic_ns(), data))
        return data

    def close(self) -> None:
        self.inner.close()


def first(chunks: list[tuple[int, bytes]], match: Any) -> int | None:
    """When the chunk completing the first frame whose message matches was read/written."""
    decoder = FrameDecoder()
    for at, data in chunks:
        decoder.feed(data)
        while (item := decoder.next()) is not None:
            if isinstance(item, Frame):
                try:
                    message: Message = decode_message(item.type, item.payload)
                except (ProtocolError, ValueError):
                    continue
                if match(message):
                    return at
    return None


def quantile(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]


class Host:
    def __init__(self, url: str, db: Path) -> None:
        self.taps: list[Tap] = []
        plan = dataclasses.replace(
            FRACTIONAL_CONSERVATIVE,
            ready_delay_s=0.0,
            max_pulses=1_000_000,
            max_fluence_j_cm2=1e7,
            windows={
                **FRACTIONAL_CONSERVATIVE.windows,
                Param.REP_RATE_HZ: ParamWindow(1.0, 15.0, 15.0),
            },
        )
        self.store = open_store(db)
        sid = self.store.new_session_id()
        self.controller = Controller(plan, session_id=sid)
        self.store.begin_session(
            "P-0001", "abdomen", session_id=sid, context=controller_context(self.controller)
        )
        self.writer = GroupCommitWriter(self.store)
        self.runner = ControllerRunner(
            url,
            self.controller,
            store=self.store,
            writer=self.writer,
            connection_factory=self._connect,
        )

    def _open(self, url: str) -> Transport:
        self.taps.append(Tap(open_transport(url)))
        return self.taps[-1]

    def _connect(self, url: str, on_event: Any) -> HandpieceConnection:
        def notify(item: Notification) -> None:
            on_event(item)

        return HandpieceConnection(url, on_event=notify, reconnect=False, opener=self._open)

    @property
    def tap(self) -> Tap:
        return self.taps[-1]

    def wait(self, state: State) -> None:
        if self.runner.wait_for(lambda s: s.state is state and not s.awaiting, WAIT_S) is None:
            raise RuntimeError(f"bench reaction: not {state}: {self.runner.snapshot}")

    def start(self) -> None:
        self.runner.start()
        self.runner.submit(Connect())
        self.runner.sync()
        self.wait(State.STANDBY)

    def emitting(self) -> None:
        self.runner.submit(ConfirmEyewear())
        self.runner.submit(RequestArm())
        self.wait(State.READY)
        self.runner.sim_control("press")
        self.wait(State.EMITTING)
        time.sleep(0.03)  # the first pulse is 10 ms after the indication; mid-burst

    def close(self) -> None:
        self.runner.close()
        self.writer.close()
        self.store.close()


RAW_PER_SAMPLE = 5  # raw pty round trips taken after each sample, for the baseline


def interlock_samples(host: Host, n: int, echo: RawEcho, raw: list[float]) -> list[float]:
    out = []
    key = Interlock.KEY
    for _ in range(n):
        host.emitting()
        reads, writes = len(host.tap.reads), len(host.tap.writes)
        host.runner.sim_control("open key")
        host.wait(State.STANDBY)
        event = first(
            host.tap.reads[reads:],
            lambda m: (
                isinstance(m, Fault) and m.code == FaultCode.INTERLOCK_OPENED and m.detail == key
            ),
        )
        assert event is not None
        disarm = first(
            [w for w in host.tap.writes[writes:] if w[0] >= event],
            lambda m: isinstance(m, Disarm),
        )
        assert disarm is not None
        out.append((disarm - event) / 1e6)
        host.runner.sim_control("close key")
        host.runner.sim_control("release")
        raw += echo.sample(RAW_PER_SAMPLE)
    return out


def busy_owner(host: Host) -> tuple[threading.Event, threading.Thread]:
    """Hold the controller's owner thread in a call() until the returned event is set."""
    busy, release = threading.Event(), threading.Event()

    def hold(_controller: Controller) -> None:
        busy.set()
        release.wait(WAIT_S)

    thread = threading.Thread(target=host.runner.call, args=(hold, 2 * WAIT_S))
    thread.start()
    if not busy.wait(WAIT_S):
        raise RuntimeError("bench reaction: the owner thread did not take the call")
    return release, thread


def estop_samples(
    host: Host, n: int, echo: RawEcho, raw: list[float], called_ms: list[float]
) -> list[int]:
    """The times the ESTOP frames were written; `called_ms` gets each from the estop() call,
    with the owner thread busy, to that write."""
    out = []
    for _ in range(n):
        host.emitting()
        writes = len(host.tap.writes)
        release, holder = busy_owner(host)
        called = time.monotonic_ns()
        host.runner.estop()
        release.set()
        holder.join()
        host.wait(State.ESTOP)
        written = first(host.tap.writes[writes:], lambda m: isinstance(m, EStop))
        assert written is not None
        out.append(written)
        called_ms.append((written - called) / 1e6)
        host.runner.sim_control("release")
        host.runner.submit(RequestReset())
        host.wait(State.STANDBY)
        raw += echo.sample(RAW_PER_SAMPLE)
    return out


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    samples = 20 if quick else 300
    raw_s: list[float] = []
    echo = RawEcho()
    with temp_dir() as tmp:
        out = tmp / "stops.json"
        sim = subprocess.Popen(
            [sys.executable, "-m", "bench.simproc", "--out", str(out)],
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        try:
            assert sim.stdout is not None
            line = sim.stdout.readline().strip()
            if not line.startswith("pty: "):
                raise RuntimeError(f"bench.simproc said {line!r}")
            host = Host(line.removeprefix("pty: "), tmp / "bench.db")
            try:
                host.start()
                disarm_ms = interlock_samples(host, samples, echo, raw_s)
                called_ms: list[float] = []
                estop_at = estop_samples(host, samples, echo, raw_s, called_ms)
            finally:
                host.close()
        finally:
            echo.close()
            sim.send_signal(signal.SIGTERM)
            sim.wait(timeout=10)
        stops = [(int(at), state) for at, state in json.loads(out.read_text())]
    raw = [t * 1e3 for t in raw_s]
    estop_stops = [at for at, state in stops if state == "ESTOP"]
    if len(estop_stops) != len(estop_at):
        raise RuntimeError(f"bench reaction: {len(estop_at)} ESTOPs, {len(estop_stops)} stops")
    estop_ms = [(stop - sent) / 1e6 for stop, sent in zip(estop_stops, estop_at, strict=True)]
    if min(estop_ms) < 0:
        raise RuntimeError("bench reaction: emission stopped before the ESTOP was written")
    rows = []
    for label, values in (
        ("interlock event received -> DISARM written", disarm_ms),
        ("host ESTOP written -> simulator emission stopped", estop_ms),
        ("runner.estop() called, owner thread busy -> ESTOP written", called_ms),
    ):
        for q in (0.5, 0.99):
            value, base = quantile(values, q), quantile(raw, q)
            rows.append(
                {
                    "name": f"{label}, p{round(q * 100)}",
                    "value": value,
                    "unit": "ms",
                    "baseline": base,
                    "baseline_name": "raw pty round trip",
                    "ratio": value / base,
                    "target": "p99 <= 2 ms" if q > 0.5 else "",
                    "samples": len(values),
                }
            )
    return rows
