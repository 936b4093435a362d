"""Group commit in the deterministic bench (SR-11): the core acknowledges a shot to the device
(SHOT_ACK) only once a ShotsDurable event said it is stored, whatever batches the shot writer
commits them in. The bench holds the writer's completions back (hold_durable) and reports them
with make_durable(upto_ticket), as a group commit that reaches the disk later would."""

from __future__ import annotations

import dataclasses

import pytest

from drivers.protocol import Param, ShotAck
from laserctl.controller.events import (
    Action,
    ConfirmEyewear,
    RecordShot,
    RequestArm,
    Send,
)
from laserctl.controller.table import State
from laserctl.plan import FRACTIONAL_CONSERVATIVE
from tests.harness import Bench

FAST = dataclasses.replace(
    FRACTIONAL_CONSERVATIVE,
    windows={
        **FRACTIONAL_CONSERVATIVE.windows,
        Param.REP_RATE_HZ: dataclasses.replace(
            FRACTIONAL_CONSERVATIVE.windows[Param.REP_RATE_HZ], default=10.0
        ),
    },
)


class Watch:
    """Every action as the bench carries it out: which shot each RecordShot ticket holds, and
    at every SHOT_ACK, the shots reported durable by then."""

    def __init__(self, bench: Bench) -> None:
        self.bench = bench
        self.shot_of: dict[int, int] = {}  # RecordShot ticket -> shot_no
        self.acks: list[tuple[int, set[int]]] = []  # (up_to_shot, shots durable when sent)

    def __call__(self, action: Action) -> None:
        if isinstance(action, RecordShot):
            self.shot_of[action.ticket] = action.record.shot_no
        elif isinstance(action, Send) and isinstance(action.command, ShotAck):
            durable = {n for t, n in self.shot_of.items() if t <= self.bench.durable}
            self.acks.append((action.command.up_to_shot, durable))

    def acked(self) -> list[int]:
        return [upto for upto, _ in self.acks]


def fire(shots: int) -> tuple[Bench, Watch]:
    """A burst of at least `shots` shots with every completion of the writer held back."""
    bench = Bench(plan=FAST, hold_durable=True)
    watch = Watch(bench)
    bench.on_action = watch
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    assert bench.state is State.READY, bench.core.refusals
    bench.run(1.0)
    bench.inject("press")
    assert bench.run_until(lambda: bench.core.shots_seen >= shots, 2.0)
    bench.inject("release")
    bench.run(0.3)
    assert bench.stored == bench.sim.shot_no == bench.core.shots_seen >= shots
    return bench, watch


def assert_never_ahead_of_the_disk(watch: Watch) -> None:
    for upto, durable in watch.acks:
        assert set(range(1, upto + 1)) <= durable, (upto, sorted(durable))


@pytest.mark.req("SR-11")
def test_no_shot_ack_before_the_shots_it_acknowledges_are_durable() -> None:
    bench, watch = fire(5)
    fired = bench.sim.shot_no
    assert watch.acks == []  # recorded, none durable yet: the device keeps every one
    assert [s.shot_no for s in bench.sim.unacked] == list(range(1, fired + 1))
    bench.make_durable()
    bench.pump()
    assert watch.acked() == [fired]
    assert_never_ahead_of_the_disk(watch)
    assert len(bench.sim.unacked) == 0


@pytest.mark.req("SR-11")
def test_shots_made_durable_in_batches_are_acked_in_order() -> None:
    bench, watch = fire(7)
    fired = bench.sim.shot_no
    for upto_ticket in (2, 5):
        bench.make_durable(upto_ticket)
        bench.pump()
    bench.make_durable(3)  # a late report below the last one: nothing new, nothing backwards
    bench.pump()
    bench.make_durable()
    bench.pump()
    assert watch.acked() == [watch.shot_of[2], watch.shot_of[5], fired]
    assert watch.acked() == sorted(set(watch.acked()))
    assert_never_ahead_of_the_disk(watch)
    assert len(bench.sim.unacked) == 0


@pytest.mark.req("SR-11")
def test_a_durable_report_for_fewer_shots_acks_only_those() -> None:
    bench, watch = fire(5)
    fired = bench.sim.shot_no
    bench.make_durable(3)
    bench.pump()
    bench.run(0.5)  # the ack is answered; nothing more becomes durable meanwhile
    assert watch.acked() == [watch.shot_of[3]] == [3]
    assert_never_ahead_of_the_disk(watch)
    assert [s.shot_no for s in bench.sim.unacked] == list(range(4, fired + 1))
