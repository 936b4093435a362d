"""The whole shot pipeline in this process, for the pipeline and memory benchmarks.

What is in the loop, in order, for every shot (nothing stubbed but where named):

    SimulatedHandpiece (the real firmware model: arming, interlocks, grant, SHOT records
      with the energy model's noise, its shot buffer, SHOT_ACK handling)
    -> InProcessServer (the real server loop, a socket pair: what `sim:` URLs use)
    -> SocketTransport -> HandpieceConnection (its reader thread; HostLink: COBS, CRC-32,
       length and sequence checks, dedupe, heartbeat)
    -> ControllerRunner (its queue and owner thread; Controller.handle: ledger, energy
       monitor, dose, ShotRecord; a Snapshot when the queue runs empty, the state
       changes or 20 ms have passed)
    -> the shot store: GroupCommitWriter + RecordStore (JSON body, SHA-256 chain, unique
       index; WAL, synchronous=FULL, on disk), or RecordStore.record per shot (the naive
       pipeline), or nothing (the memory soak)
    -> SHOT_ACK, held by the runner until the shot is durable, back through HostLink and the
       socket to the firmware, which frees its buffer.

Bench-only overrides of the simulator, all explicit here: the repetition-rate capability is
raised to RATE_HZ (a real handpiece fires at most 15 Hz); pulses do not heat it (the thermal
interlock would open after ~240 pulses at full power); its shot buffer holds BUFFER records
and its watchdog is off. The last two because the firmware shares this process and its GIL
with the host: when it fires ahead of a slower host, its socket fills and its loop blocks,
which a device with its own CPU never does; without them it would stop itself (buffer full,
or no host frame processed for 250 ms) and measure that instead of the host.
"""

from __future__ import annotations

import contextlib
import dataclasses
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from drivers.host import CommandError, HandpieceConnection, Notification
from drivers.protocol import Param
from drivers.sim.firmware import SimulatedHandpiece
from drivers.sim.server import InProcessServer
from drivers.transport import Transport
from drivers.transport.socket_link import SocketTransport
from laserctl.controller.core import Controller
from laserctl.controller.events import ConfirmEyewear, Connect, RequestArm
from laserctl.controller.runner import ControllerRunner
from laserctl.controller.shots import ShotStore
from laserctl.controller.table import State
from laserctl.plan import FRACTIONAL_CONSERVATIVE, ParamWindow, TreatmentPlan
from laserctl.shotrecord import ShotRecord

RATE_HZ = 20_000.0
BUFFER = 10_000_000
SESSION_WAIT_S = 10.0


def fast_simulator() -> SimulatedHandpiece:
    sim = SimulatedHandpiece(
        "fractional-1550", now=time.monotonic(), buffer_size=BUFFER, watchdog_s=1e9
    )
    caps = {**sim.model.capabilities, Param.REP_RATE_HZ: (1.0, RATE_HZ)}
    sim.model = dataclasses.replace(sim.model, capabilities=caps)
    sim.thermal.pulse = lambda heat_c: None  # type: ignore[method-assign]
    return sim


def fast_plan(max_pulses: int, rate_hz: float = RATE_HZ) -> TreatmentPlan:
    return dataclasses.replace(
        FRACTIONAL_CONSERVATIVE,
        plan_id="bench-fast",
        ready_delay_s=0.0,
        max_pulses=max_pulses,
        max_fluence_j_cm2=max_pulses * 10.0,  # 6.24 J/cm2 a pulse at the defaults, +20 %
        windows={
            **FRACTIONAL_CONSERVATIVE.windows,
            Param.REP_RATE_HZ: ParamWindow(1.0, RATE_HZ, rate_hz),
        },
    )


class Discard:
    """A shot store that keeps nothing (the memory soak: the controller's memory alone)."""

    def record(self, shot: ShotRecord) -> None:
        pass


def bench_dir() -> Path | None:
    """Where the benchmark databases go: /var/tmp (a disk, not a tmpfs, on most systems:
    fsync must cost what it costs) when it exists."""
    var = Path("/var/tmp")
    return var if var.is_dir() else None


@contextlib.contextmanager
def temp_dir() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="laserctl-bench-", dir=bench_dir()) as tmp:
        yield Path(tmp)


class Pipeline:
    """A running controller on the fast simulator, armed and ready to fire bursts."""

    def __init__(
        self,
        *,
        store: ShotStore,
        writer: Any = None,
        session_id: str = "bench",
        pulses: int,
        rate_hz: float = RATE_HZ,
    ) -> None:
        self.servers: list[InProcessServer] = []
        self.controller = Controller(fast_plan(pulses, rate_hz), session_id=session_id)
        self.runner = ControllerRunner(
            "bench:fast-sim",
            self.controller,
            store=store,
            writer=writer,
            connection_factory=self._connect,
        )

    def _open(self, url: str) -> Transport:
        server = InProcessServer(fast_simulator())
        self.servers.append(server)
        return SocketTransport(server.host_socket, url)

    def _connect(self, url: str, on_event: Any) -> HandpieceConnection:
        def notify(item: Notification) -> None:
            on_event(item)

        return HandpieceConnection(url, on_event=notify, reconnect=False, opener=self._open)

    @property
    def sim(self) -> SimulatedHandpiece:
        return self.servers[-1].sim

    def __enter__(self) -> Pipeline:
        self.runner.start()
        self.runner.submit(Connect())
        self.runner.sync()
        self._wait(lambda s: s.state is State.STANDBY and not s.awaiting, "STANDBY")
        self.runner.submit(ConfirmEyewear())
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.close()

    def _wait(self, done: Any, what: str, timeout: float = SESSION_WAIT_S) -> None:
        if self.runner.wait_for(done, timeout) is None:
            raise RuntimeError(f"bench pipeline: not {what}: {self.runner.snapshot}")

    def _release(self) -> None:
        """Footswitch up. A loaded machine may leave the host behind a device that fires on:
        the answer can then take longer than a command's retries, so ask again."""
        for attempt in range(5):
            try:
                self.runner.sim_control("release", timeout=2.0)
                return
            except CommandError:
                if attempt == 4:
                    raise

    def burst(self, shots: int, timeout: float) -> tuple[int, float]:
        """Arm if need be, hold the footswitch until the device has fired `shots` more, and
        wait until every shot is acknowledged, i.e. durable; returns the shots fired and the
        seconds from the press to the last SHOT_ACK taking effect at the device."""
        if self.runner.snapshot.state is not State.READY:
            self.runner.submit(RequestArm())
            self._wait(lambda s: s.state is State.READY, "READY")
        sim = self.sim
        first = sim.shot_no
        target = first + shots
        start = time.perf_counter()
        deadline = start + timeout
        self.runner.sim_control("press")
        released = False
        while True:
            # Read without a lock: an int and a deque's length, good enough to poll.
            fired = sim.shot_no
            if fired >= target and not released:
                self._release()
                released = True
            if released and not sim.unacked:
                break
            if time.perf_counter() > deadline:
                raise RuntimeError(
                    f"bench pipeline: {fired} fired, {len(sim.unacked)} unacknowledged after "
                    f"{timeout} s: {self.runner.snapshot.state} {self.runner.snapshot.causes}"
                )
            time.sleep(0.001)
        return sim.shot_no - first, time.perf_counter() - start
