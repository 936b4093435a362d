"""The running controller: one owner thread and queue, the real HandpieceConnection, the
simulator in process (sim: URL). What the threads do and in which order; how fast is measured in
bench/reaction.py, and SR-02's reaction within the step is decided in the deterministic bench
(tests/test_controller_core.py)."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from drivers.host import HandpieceConnection, Notification
from drivers.protocol import (
    Command,
    DeviceEvent,
    DeviceInfo,
    Disarm,
    Fault,
    FrameDecoder,
    Param,
    StatusChanged,
    decode_message,
)
from drivers.protocol.framing import Frame
from drivers.sim import SimulatedHandpiece
from drivers.transport import Transport, open_transport
from laserctl.calibration import Calibration, Point, fit_points
from laserctl.calibration.procedure import set_points
from laserctl.controller.core import Controller
from laserctl.controller.events import ConfirmEyewear, Connect, RequestArm, RequestReset
from laserctl.controller.runner import ControllerRunner
from laserctl.controller.shots import MemoryShotStore
from laserctl.controller.snapshot import Snapshot
from laserctl.controller.table import State
from laserctl.plan import FRACTIONAL_CONSERVATIVE, ParamWindow
from laserctl.shotrecord import ShotRecord
from tests.scenarios import poll

TIMEOUT = 3.0
# A short ready delay and a quick rate keep these real-time tests short.
PLAN = dataclasses.replace(
    FRACTIONAL_CONSERVATIVE,
    ready_delay_s=0.05,
    windows={
        **FRACTIONAL_CONSERVATIVE.windows,
        Param.REP_RATE_HZ: ParamWindow(1.0, 15.0, 15.0),
    },
)


class RecordingConnection(HandpieceConnection):
    """Notes each DISARM handed to it in the runner's shared log, in order with the events."""

    log: list[str]

    def send(self, command: Command) -> Any:
        if isinstance(command, Disarm):
            self.log.append("DISARM")
        return super().send(command)


class RecordingRunner(ControllerRunner):
    """Notes when an interlock-opening event reached the host (the reader thread)."""

    log: list[str]

    def _on_notification(self, notification: Notification) -> None:
        if isinstance(notification, DeviceEvent):
            event = notification.event
            if isinstance(event, Fault) or (
                isinstance(event, StatusChanged) and not event.body.is_closed(1)
            ):
                self.log.append("interlock opened")
        super()._on_notification(notification)


class GatedTransport:
    """A simulated handpiece that cannot answer while `gate` is clear: HELLO waits (a slow
    or stuck handpiece). What the host writes reaches the simulator and is kept here too."""

    def __init__(self, inner: Transport, gate: threading.Event) -> None:
        self.inner = inner
        self.gate = gate
        self.description = inner.description
        self.simulator: SimulatedHandpiece = inner.simulator  # type: ignore[attr-defined]
        self.written: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.written.append(bytes(data))
        self.inner.write(data)

    def read(self, timeout: float) -> bytes:
        if not self.gate.is_set():
            self.gate.wait(timeout)
            return b""
        return self.inner.read(timeout)

    def close(self) -> None:
        self.inner.close()

    def commands(self) -> list[str]:
        decoder = FrameDecoder()
        for chunk in self.written:
            decoder.feed(chunk)
        out = []
        while (item := decoder.next()) is not None:
            if isinstance(item, Frame):
                out.append(type(decode_message(item.type, item.payload)).__name__)
        return out


def _factory(
    connections: list[RecordingConnection],
    log: list[str],
    transports: list[GatedTransport] | None = None,
    gate: threading.Event | None = None,
) -> Callable[..., HandpieceConnection]:
    """Connections to `sim:` URLs; with `gate`, each through a GatedTransport."""

    def opener(url: str) -> Transport:
        assert gate is not None and transports is not None
        transports.append(GatedTransport(open_transport(url), gate))
        return transports[-1]

    def make(url: str, on_event: Callable[[Notification], None]) -> HandpieceConnection:
        connection = RecordingConnection(
            url,
            on_event=on_event,
            reconnect=True,
            hello_timeout=30.0,
            opener=opener if gate is not None else open_transport,
        )
        connection.log = log
        connections.append(connection)
        return connection

    return make


def _sim(runner: ControllerRunner) -> SimulatedHandpiece:
    assert runner._connection is not None and runner._connection.transport is not None
    sim: SimulatedHandpiece = runner._connection.transport.simulator  # type: ignore[attr-defined]
    return sim


def _wait(runner: ControllerRunner, done: Callable[[Snapshot], bool]) -> Snapshot:
    snap = runner.wait_for(done, TIMEOUT)
    assert snap is not None, runner.snapshot
    return snap


@pytest.fixture
def connections() -> list[RecordingConnection]:
    return []


@pytest.fixture
def log() -> list[str]:
    return []


def _runner(
    factory: Callable[..., HandpieceConnection], log: list[str], **kwargs: Any
) -> RecordingRunner:
    runner = RecordingRunner(
        "sim:fractional-1550", Controller(PLAN), connection_factory=factory, **kwargs
    )
    runner.log = log
    return runner


def _connected(runner: ControllerRunner) -> None:
    runner.start()
    runner.submit(Connect())
    runner.sync()
    _wait(runner, lambda s: s.state is State.STANDBY and not s.awaiting)


@pytest.fixture
def runner(connections: list[RecordingConnection], log: list[str]) -> Iterator[RecordingRunner]:
    runner = _runner(_factory(connections, log), log)
    _connected(runner)
    yield runner
    runner.close()


def _emit(runner: ControllerRunner) -> SimulatedHandpiece:
    runner.submit(ConfirmEyewear())
    runner.submit(RequestArm())
    _wait(runner, lambda s: s.state is State.READY)
    sim = _sim(runner)
    runner.sim_control("press")
    _wait(runner, lambda s: s.shots_seen >= 2)
    return sim


@pytest.mark.req("SR-02")
def test_an_interlock_opening_is_answered_with_disarm(runner: RecordingRunner) -> None:
    sim = _emit(runner)
    runner.sim_control("open door")
    snap = _wait(runner, lambda s: s.state is State.FAULT)
    assert "door open" in snap.causes[0]
    opened = runner.log.index("interlock opened")
    assert "DISARM" in runner.log[opened:], runner.log
    poll(lambda: not sim.emission, TIMEOUT, "emission stopped")


def _block_owner(runner: ControllerRunner) -> tuple[threading.Event, threading.Thread]:
    """Keep the owner thread busy until the returned event is set."""
    busy, release = threading.Event(), threading.Event()

    def block(_controller: Controller) -> None:
        busy.set()
        release.wait(30.0)

    waiter = threading.Thread(target=runner.call, args=(block, 60.0))
    waiter.start()
    assert busy.wait(TIMEOUT)
    return release, waiter


@pytest.mark.req("SR-03")
def test_estop_goes_to_the_wire_while_the_owner_thread_is_busy(runner: RecordingRunner) -> None:
    sim = _emit(runner)
    release, waiter = _block_owner(runner)
    try:
        runner.estop()
        poll(lambda: sim.state.name == "ESTOP", TIMEOUT, "the device in ESTOP")
        assert not sim.emission
        assert not release.is_set()  # the owner thread was busy all along
    finally:
        release.set()
        waiter.join()
    _wait(runner, lambda s: s.state is State.ESTOP)


def _opening_blocked_in_hello(
    reopen: bool,
    connections: list[RecordingConnection],
    log: list[str],
) -> tuple[RecordingRunner, GatedTransport, threading.Event]:
    """A runner whose link is being opened (or reopened, after a connection crash) to a
    handpiece that does not answer HELLO until the returned gate is set."""
    gate = threading.Event()
    transports: list[GatedTransport] = []
    runner = _runner(_factory(connections, log, transports, gate), log)
    runner.start()
    if reopen:
        gate.set()
        runner.submit(Connect())
        _wait(runner, lambda s: s.state is State.STANDBY and not s.awaiting)
        gate.clear()
        link = connections[-1]._link
        assert link is not None

        def broken(now: float) -> None:
            raise RuntimeError("reader bug")

        link.tick = broken  # type: ignore[method-assign]
        _wait(runner, lambda s: s.state is State.FAULT)
        poll(lambda: len(transports) == 2, TIMEOUT, "a new transport opened")
    else:
        runner.submit(Connect())
        poll(lambda: len(transports) == 1, TIMEOUT, "the transport opened")
    poll(lambda: "Hello" in transports[-1].commands(), TIMEOUT, "HELLO written")
    return runner, transports[-1], gate


@pytest.mark.req("SR-03")
@pytest.mark.parametrize("reopen", [False, True], ids=["open", "reopen"])
def test_estop_reaches_a_transport_still_waiting_for_hello(
    reopen: bool, connections: list[RecordingConnection], log: list[str]
) -> None:
    runner, transport, gate = _opening_blocked_in_hello(reopen, connections, log)
    try:
        runner.estop()  # written from this thread before estop() returns
        assert "EStop" in transport.commands()
        poll(lambda: transport.simulator.state.name == "ESTOP", TIMEOUT, "the device in ESTOP")
        gate.set()  # the handpiece answers: identified, ESTOP latched in the controller too
        _wait(runner, lambda s: s.state is State.ESTOP and s.link_alive)
        assert transport.simulator.state.name == "ESTOP"
    finally:
        gate.set()
        runner.close()


@pytest.mark.req("SR-03")
@pytest.mark.req("SR-10")
@pytest.mark.parametrize("reopen", [False, True], ids=["open", "reopen"])
def test_the_owner_thread_serves_its_queue_while_a_link_opens(
    reopen: bool, connections: list[RecordingConnection], log: list[str]
) -> None:
    runner, _transport, gate = _opening_blocked_in_hello(reopen, connections, log)
    try:
        published = runner.snapshot.seq
        state = runner.call(lambda c: c.state, timeout=TIMEOUT)  # not behind the HELLO
        assert state is (State.FAULT if reopen else State.CONNECTING)
        runner.submit(ConfirmEyewear())  # operator commands are taken meanwhile
        assert runner.call(lambda c: c.eyewear, timeout=TIMEOUT)
        poll(lambda: runner.snapshot.seq > published, TIMEOUT, "a snapshot published meanwhile")
        gate.set()
        _wait(runner, lambda s: s.link_alive)
        runner.sync()
        if runner.call(lambda c: c.state) is State.FAULT:
            # After the crash; or the handshake's own silence when HELLO was held over 250 ms
            # (HandpieceConnection reports it with the handshake's events).
            _wait(runner, lambda s: not s.awaiting)
            runner.submit(RequestReset())
        _wait(runner, lambda s: s.state is State.STANDBY and not s.awaiting)
    finally:
        gate.set()
        runner.close()


def _calibration_for(info: DeviceInfo) -> Calibration:
    """A valid calibration of the simulated handpiece (gain 1, set points 4..18 mJ)."""
    points = tuple(Point(s, s) for s in set_points(4.0, 18.0, 5) for _ in range(4))
    return Calibration(
        serial=info.serial,
        handpiece=info.handpiece.slug,
        firmware=info.firmware,
        dose_param=Param.ENERGY_MJ,
        created_at=time.time() - 3600.0,
        expires_at=time.time() + 86400.0,
        who="alice",
        points=points,
        fit=fit_points(points),
    )


@pytest.mark.req("SR-02")
@pytest.mark.req("SR-14")
def test_arming_and_an_interlock_never_wait_for_the_calibration_source(
    connections: list[RecordingConnection], log: list[str]
) -> None:
    """The source reads the shot log under the store's lock, which the writer holds while it
    commits: here it blocks outright. The controller arms on the calibration it has (judged
    on its own clock) and disarms on the interlock while the source is stuck."""
    readable = threading.Event()
    readable.set()
    reads: list[str] = []

    def shot_log(info: DeviceInfo) -> Calibration | str:
        reads.append(info.serial)
        readable.wait(30.0)
        return _calibration_for(info)

    runner = _runner(_factory(connections, log), log, calibration=shot_log)
    try:
        _connected(runner)
        assert runner.call(lambda c: c.calibrated) is not None
        readable.clear()  # a long commit from now on
        before = len(reads)
        runner.refresh_calibration()
        poll(lambda: len(reads) > before, TIMEOUT, "the source asked again")
        sim = _emit(runner)
        runner.sim_control("open door")
        _wait(runner, lambda s: s.state is State.FAULT)
        assert "DISARM" in log[log.index("interlock opened") :]
        poll(lambda: not sim.emission, TIMEOUT, "emission stopped")
        assert not readable.is_set()  # the source was stuck all along
    finally:
        readable.set()
        runner.close()


@pytest.mark.req("SR-10")
def test_a_failing_shot_store_disarms_and_faults_and_nothing_is_acknowledged(
    connections: list[RecordingConnection],
) -> None:
    class BrokenStore(MemoryShotStore):
        def record(self, shot: ShotRecord) -> None:
            if shot.shot_no >= 3:
                raise OSError("disk full")
            super().record(shot)

    runner = _runner(_factory(connections, []), [], store=BrokenStore())
    try:
        _connected(runner)
        sim = _emit(runner)
        snap = _wait(runner, lambda s: s.state is State.FAULT)
        assert any("disk full" in c for c in snap.causes)
        poll(lambda: sim.state.name == "IDLE", TIMEOUT, "the device disarmed")
        assert not sim.emission
        assert min(s.shot_no for s in sim.unacked) == 3  # never acknowledged: still kept
    finally:
        runner.close()


@pytest.mark.req("SR-10")
def test_a_failing_subscriber_disarms_and_faults(runner: RecordingRunner) -> None:
    sim = _emit(runner)

    def console(snapshot: Snapshot) -> None:
        raise ValueError("console bug")

    runner.subscribe(console)
    snap = _wait(runner, lambda s: s.state is State.FAULT)
    assert any("console bug" in c for c in snap.causes)
    poll(lambda: sim.state.name == "IDLE", TIMEOUT, "the device disarmed")


@pytest.mark.req("SR-10")
def test_a_crashed_connection_disarms_faults_and_is_replaced(
    runner: RecordingRunner, connections: list[RecordingConnection]
) -> None:
    first = connections[-1]
    link = first._link
    assert link is not None

    def broken(now: float) -> None:
        raise RuntimeError("reader bug")

    link.tick = broken  # type: ignore[method-assign]
    snap = _wait(runner, lambda s: s.state is State.FAULT)
    assert any("connection crashed: RuntimeError: reader bug" in c for c in snap.causes)
    _wait(runner, lambda s: s.link_alive)
    assert len(connections) == 2  # a new connection replaced the dead one
    runner.submit(RequestReset())
    _wait(runner, lambda s: s.state is State.STANDBY and not s.awaiting)


def test_subscribers_get_immutable_snapshots_in_order(runner: RecordingRunner) -> None:
    seen: list[Snapshot] = []
    unsubscribe = runner.subscribe(seen.append)
    runner.submit(ConfirmEyewear())
    runner.submit(RequestArm())
    _wait(runner, lambda s: s.state is State.READY)
    runner.sync()
    unsubscribe()
    assert seen, "no snapshot published"
    seqs = [s.seq for s in seen]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert seen[-1].state is State.READY
    assert seen[-1].to_json()["state"] == "READY"
    with pytest.raises(AttributeError):
        seen[-1].state = State.STANDBY  # type: ignore[misc]


def test_every_state_is_published_and_the_last_snapshot_is_current(runner: RecordingRunner) -> None:
    """Snapshots are coalesced while the queue is busy, never a state: each state the
    controller passes through is published, in order, and the published snapshot catches up
    with the controller once the queue drains (a slow subscriber lets the queue back up)."""
    seen: list[Snapshot] = []

    def slow(snapshot: Snapshot) -> None:
        seen.append(snapshot)
        time.sleep(0.005)

    unsubscribe = runner.subscribe(slow)
    _emit(runner)
    _wait(runner, lambda s: s.shots_seen >= 8)
    runner.sim_control("release")
    runner.disarm()
    _wait(runner, lambda s: s.state is State.STANDBY and not s.emission)
    final = runner.call(lambda c: c.snapshot())
    current = (final.state, final.shots_seen, final.pulses_used, final.device_shots_fired)
    _wait(runner, lambda s: (s.state, s.shots_seen, s.pulses_used, s.device_shots_fired) == current)
    unsubscribe()
    published = [s.state for s in seen]
    notes = runner.call(lambda _c: list(runner.notes))  # read on the owner thread
    visited = [
        State(note.message.split(" -> ")[1].split(" ")[0])
        for note in notes
        if note.kind == "transition"
    ]
    visited = visited[visited.index(State.STANDBY) :]  # from where the subscriber joined
    changes = [st for i, st in enumerate(published) if i == 0 or published[i - 1] is not st]
    assert changes == visited[-len(changes) :] and set(visited) <= set(published), (
        changes,
        visited,
    )


def test_close_disarms_the_device(connections: list[RecordingConnection]) -> None:
    runner = _runner(_factory(connections, []), [])
    _connected(runner)
    runner.submit(ConfirmEyewear())
    runner.submit(RequestArm())
    _wait(runner, lambda s: s.state is State.READY)
    sim = _sim(runner)
    runner.close()
    assert sim.state.name == "IDLE"
