"""The interlock table (SR-01): sources, fail-safe defaults, effects; and arming refused with
any interlock open, against the simulator."""

from __future__ import annotations

import dataclasses

import pytest

from drivers.protocol import HandpieceType, Interlock, StatusBody
from laserctl.controller.events import ConfirmEyewear, RequestArm
from laserctl.controller.table import State
from laserctl.plan import FRACTIONAL_CONSERVATIVE
from laserctl.safety.interlocks import (
    BY_DEVICE_BIT,
    INTERLOCKS,
    SPECS,
    Effect,
    InterlockId,
    InterlockInputs,
    Reading,
    not_closed,
    read_all,
    worst_effect,
)
from tests.harness import Bench

ALL_BITS = sum(1 << i for i in Interlock)


def _status(closed: int = ALL_BITS, known: int = ALL_BITS, footswitch: int = 0) -> StatusBody:
    return StatusBody(1, closed, known, footswitch, 0, 0, 0, 0, 25000, 0, 1, 0)


def _inputs(**changes: object) -> InterlockInputs:
    base = InterlockInputs(
        handpiece=HandpieceType.FRACTIONAL_1550,
        device_inputs=frozenset(Interlock) - {Interlock.AIMING_BEAM},
        status=_status(),
        identity_ok=True,
        calibration_ok=True,
        link_alive=True,
        eyewear=True,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def test_every_device_input_and_every_required_interlock_is_declared() -> None:
    assert set(BY_DEVICE_BIT) == set(Interlock)
    required = {
        "key",
        "door",
        "estop",
        "footswitch",
        "handpiece",
        "calibration",
        "link",
        "cooling",
        "temperature",
        "skin_contact",
        "aiming_beam",
        "eyewear",
    }
    assert required <= {str(spec.id) for spec in INTERLOCKS}
    for spec in INTERLOCKS:
        assert spec.why, spec.id


@pytest.mark.req("SR-01")
def test_all_closed_reads_closed() -> None:
    assert not_closed(read_all(_inputs())) == []


@pytest.mark.req("SR-01")
@pytest.mark.parametrize("bit", [b for b in Interlock if b is not Interlock.AIMING_BEAM])
def test_unknown_device_input_counts_as_open(bit: Interlock) -> None:
    readings = read_all(_inputs(status=_status(known=ALL_BITS & ~(1 << bit))))
    ident = BY_DEVICE_BIT[bit].id
    assert readings[ident] is Reading.UNKNOWN
    assert not_closed(readings) == [ident]


@pytest.mark.req("SR-01")
def test_no_status_or_no_link_makes_every_device_input_unknown() -> None:
    for inputs in (_inputs(status=None), _inputs(link_alive=False)):
        readings = read_all(inputs)
        device_ids = [s.id for s in INTERLOCKS if s.device_bit is not None and s.id in readings]
        assert all(readings[i] is Reading.UNKNOWN for i in device_ids)


@pytest.mark.req("SR-01")
def test_controller_and_operator_interlocks_default_open() -> None:
    readings = read_all(_inputs(identity_ok=None, calibration_ok=None, eyewear=False))
    assert readings[InterlockId.HANDPIECE] is Reading.UNKNOWN
    assert readings[InterlockId.CALIBRATION] is Reading.UNKNOWN
    assert readings[InterlockId.EYEWEAR] is Reading.OPEN
    assert read_all(_inputs(status=_status(footswitch=1)))[InterlockId.FOOTSWITCH] is Reading.OPEN


@pytest.mark.req("SR-01")
def test_skin_contact_and_aiming_beam_apply_to_the_handpieces_that_have_them() -> None:
    fractional = read_all(_inputs())
    assert InterlockId.SKIN_CONTACT in fractional
    assert InterlockId.AIMING_BEAM not in fractional
    ndyag = read_all(
        _inputs(
            handpiece=HandpieceType.NDYAG_1064,
            device_inputs=frozenset(Interlock) - {Interlock.SKIN_CONTACT},
        )
    )
    assert InterlockId.AIMING_BEAM in ndyag
    assert InterlockId.SKIN_CONTACT not in ndyag
    # A handpiece whose HELLO omits its own sensor still needs it: unknown, so open.
    missing = read_all(
        _inputs(
            status=_status(known=ALL_BITS & ~(1 << Interlock.SKIN_CONTACT)),
            device_inputs=frozenset(Interlock) - {Interlock.SKIN_CONTACT},
        )
    )
    assert missing[InterlockId.SKIN_CONTACT] is Reading.UNKNOWN


def test_worst_effect_orders_estop_fault_standby() -> None:
    assert worst_effect([InterlockId.SKIN_CONTACT, InterlockId.DOOR]) is Effect.FAULT
    assert worst_effect([InterlockId.DOOR, InterlockId.ESTOP]) is Effect.ESTOP
    assert worst_effect([InterlockId.EYEWEAR]) is Effect.STANDBY
    assert worst_effect([InterlockId.FOOTSWITCH]) is None
    assert SPECS[InterlockId.COOLING].effect is Effect.FAULT  # SR-20
    assert SPECS[InterlockId.TEMPERATURE].effect is Effect.FAULT


# ---- against the simulator -------------------------------------------------------------------
DEVICE_INPUTS = ["key", "door", "cooling", "temperature", "skin", "shutter"]


@pytest.mark.req("SR-01")
@pytest.mark.parametrize("name", DEVICE_INPUTS)
def test_arming_is_refused_while_a_device_interlock_is_open(name: str) -> None:
    bench = Bench()
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.inject(f"open {name}")
    bench.run(0.05)
    bench.operator(RequestArm())
    bench.run(0.05)
    assert bench.arms() == []
    assert bench.state in (State.STANDBY, State.FAULT)
    if bench.state is State.STANDBY:
        assert "interlock not closed" in bench.core.refusals[-1].reason


@pytest.mark.req("SR-01")
@pytest.mark.parametrize("name", ["key", "door", "skin"])
def test_arming_is_refused_while_a_device_interlock_is_unknown(name: str) -> None:
    bench = Bench()
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.inject(f"unknown {name}")
    bench.operator(RequestArm())
    assert bench.arms() == []
    assert "unknown" in bench.core.refusals[-1].reason


@pytest.mark.req("SR-01")
def test_arming_is_refused_without_eyewear_confirmation() -> None:
    bench = Bench()
    bench.connect()
    bench.operator(RequestArm())
    assert bench.arms() == []
    assert bench.core.refusals[-1].reason == "interlock not closed: eyewear not confirmed"
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    assert len(bench.arms()) == 1


@pytest.mark.req("SR-01")
def test_arming_is_refused_without_a_valid_calibration() -> None:
    bench = Bench(calibration=lambda info: "expired on 2024-01-01")
    bench.connect()
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    assert bench.arms() == []
    assert "calibration: expired on 2024-01-01" in bench.core.refusals[-1].reason


@pytest.mark.req("SR-01")
def test_the_stand_in_calibration_refuses_a_real_handpiece() -> None:
    from drivers.protocol import DeviceInfo
    from laserctl.controller.core import stand_in_calibration

    info = DeviceInfo(
        HandpieceType.FRACTIONAL_1550, "FX-1", "1.0", 1, 1, False, 1550, frozenset(), {}
    )
    assert stand_in_calibration(info) != ""
    assert stand_in_calibration(dataclasses.replace(info, simulated=True)) == ""


@pytest.mark.req("SR-01")
@pytest.mark.req("SR-15")
def test_a_handpiece_that_does_not_match_the_plan_cannot_be_armed() -> None:
    plan = dataclasses.replace(FRACTIONAL_CONSERVATIVE, serial="FX-99999")
    bench = Bench(plan=plan)
    bench.connect(expect=State.FAULT)
    assert "serial FX-00000, the plan is for FX-99999" in bench.core.causes[0].message
    bench.operator(ConfirmEyewear())
    bench.operator(RequestArm())
    assert bench.arms() == []
    # The cause is a condition: reset is refused while the wrong handpiece is connected.
    from laserctl.controller.events import RequestReset

    bench.operator(RequestReset())
    assert bench.state is State.FAULT
    assert "cause still present" in bench.core.refusals[-1].reason


@pytest.mark.req("SR-15")
def test_a_plan_for_the_other_handpiece_type_faults_at_connect() -> None:
    bench = Bench(handpiece="ndyag-1064", plan=FRACTIONAL_CONSERVATIVE)
    bench.connect(expect=State.FAULT)
    assert "is for fractional-1550, the handpiece is ndyag-1064" in bench.core.causes[0].message
