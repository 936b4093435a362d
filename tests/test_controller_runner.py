"""The running controller: one owner thread and queue, the real HandpieceConnection, the
simulator in process (sim: URL). Timing and fail-safe behaviour."""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from drivers.host import HandpieceConnection, Notification
from drivers.protocol import Command, DeviceEvent, Disarm, Fault, Param, StatusChanged
from drivers.sim import SimulatedHandpiece
from laserctl.controller.core import Controller
from laserctl.controller.events import ConfirmEyewear, Connect, RequestArm, RequestReset
from laserctl.controller.runner import ControllerRunner
from laserctl.controller.shots import MemoryShotStore, ShotRecord
from laserctl.controller.snapshot import Snapshot
from laserctl.controller.table import State
from laserctl.plan import FRACTIONAL_CONSERVATIVE, ParamWindow

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


class TimedConnection(HandpieceConnection):
    """Records when each DISARM went to the wire."""

    disarms: list[float]

    def send(self, command: Command) -> Any:
        if isinstance(command, Disarm):
            self.disarms.append(time.monotonic())
        return super().send(command)


class TimedRunner(ControllerRunner):
    """Records when interlock-opening events reached the host (the reader thread)."""

    opened_at: float | None = None

    def _on_notification(self, notification: Notification) -> None:
        if self.opened_at is None and isinstance(notification, DeviceEvent):
            event = notification.event
            if isinstance(event, Fault) or (
                isinstance(event, StatusChanged) and not event.body.is_closed(1)
            ):
                self.opened_at = time.monotonic()
        super()._on_notification(notification)


def _factory(connections: list[TimedConnection]) -> Callable[..., HandpieceConnection]:
    def make(url: str, on_event: Callable[[Notification], None]) -> HandpieceConnection:
        connection = TimedConnection(url, on_event=on_event, reconnect=True)
        connection.disarms = []
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
def connections() -> list[TimedConnection]:
    return []


@pytest.fixture
def runner(connections: list[TimedConnection]) -> Iterator[TimedRunner]:
    runner = TimedRunner(
        "sim:fractional-1550", Controller(PLAN), connection_factory=_factory(connections)
    )
    runner.start()
    runner.submit(Connect())
    runner.sync()
    _wait(runner, lambda s: s.state is State.STANDBY and not s.awaiting)
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
def test_an_interlock_opening_is_answered_with_disarm_within_50_ms(
    runner: TimedRunner, connections: list[TimedConnection]
) -> None:
    sim = _emit(runner)
    connection = connections[-1]
    before = len(connection.disarms)
    runner.sim_control("open door")
    snap = _wait(runner, lambda s: s.state is State.FAULT)
    assert "door open" in snap.causes[0]
    assert runner.opened_at is not None
    reaction = connection.disarms[before] - runner.opened_at
    assert 0 <= reaction < 0.050, f"DISARM {reaction * 1000:.1f} ms after the event arrived"
    assert not sim.emission


@pytest.mark.req("SR-03")
def test_estop_goes_to_the_wire_even_while_the_owner_thread_is_busy(runner: TimedRunner) -> None:
    sim = _emit(runner)
    busy = threading.Event()

    def block(_controller: Controller) -> None:
        busy.set()
        time.sleep(0.3)

    waiter = threading.Thread(target=runner.call, args=(block,))
    waiter.start()
    assert busy.wait(1.0)
    pressed = time.monotonic()
    runner.estop()
    while sim.state.name != "ESTOP":
        assert time.monotonic() - pressed < 0.1, "ESTOP waited behind the controller's queue"
        time.sleep(0.002)
    waiter.join()
    _wait(runner, lambda s: s.state is State.ESTOP)


@pytest.mark.req("SR-10")
def test_a_failing_shot_store_disarms_and_faults_and_nothing_is_acknowledged(
    connections: list[TimedConnection],
) -> None:
    class BrokenStore(MemoryShotStore):
        def record(self, shot: ShotRecord) -> None:
            if shot.shot_no >= 3:
                raise OSError("disk full")
            super().record(shot)

    runner = ControllerRunner(
        "sim:fractional-1550",
        Controller(PLAN),
        store=BrokenStore(),
        connection_factory=_factory(connections),
    )
    runner.start()
    try:
        runner.submit(Connect())
        runner.sync()
        _wait(runner, lambda s: s.state is State.STANDBY and not s.awaiting)
        sim = _emit(runner)
        snap = _wait(runner, lambda s: s.state is State.FAULT)
        assert any("disk full" in c for c in snap.causes)
        time.sleep(0.1)
        assert not sim.emission
        assert sim.state.name == "IDLE"
        assert min(s.shot_no for s in sim.unacked) == 3  # never acknowledged: still kept
    finally:
        runner.close()


@pytest.mark.req("SR-10")
def test_a_failing_subscriber_disarms_and_faults(runner: TimedRunner) -> None:
    sim = _emit(runner)

    def console(snapshot: Snapshot) -> None:
        raise ValueError("console bug")

    runner.subscribe(console)
    snap = _wait(runner, lambda s: s.state is State.FAULT)
    assert any("console bug" in c for c in snap.causes)
    time.sleep(0.05)
    assert sim.state.name == "IDLE"


@pytest.mark.req("SR-10")
def test_a_crashed_connection_disarms_faults_and_is_replaced(
    runner: TimedRunner, connections: list[TimedConnection]
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


def test_subscribers_get_immutable_snapshots_in_order(runner: TimedRunner) -> None:
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


def test_every_state_is_published_and_the_last_snapshot_is_current(runner: TimedRunner) -> None:
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


def test_close_disarms_the_device(connections: list[TimedConnection]) -> None:
    runner = ControllerRunner(
        "sim:fractional-1550", Controller(PLAN), connection_factory=_factory(connections)
    )
    runner.start()
    runner.submit(Connect())
    runner.sync()
    _wait(runner, lambda s: s.state is State.STANDBY and not s.awaiting)
    runner.submit(ConfirmEyewear())
    runner.submit(RequestArm())
    _wait(runner, lambda s: s.state is State.READY)
    sim = _sim(runner)
    runner.close()
    assert sim.state.name == "IDLE"
