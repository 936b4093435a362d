"""The steps of a session script (laserctl/script.py) carried out on a running controller:
each step submitted, then waited on until the controller settles, with what it refused."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from laserctl.controller.runner import ControllerRunner
    from laserctl.controller.snapshot import Snapshot
    from laserctl.script import Step

SETTLE_TIMEOUT_S = 3.0


def settle(runner: ControllerRunner) -> Snapshot | None:
    from laserctl.controller.table import State

    runner.sync()
    transitional = (State.CONNECTING, State.SELF_TEST)
    return runner.wait_for(
        lambda s: not s.awaiting and s.state not in transitional, SETTLE_TIMEOUT_S
    )


def run_step(runner: ControllerRunner, step: Step) -> dict[str, Any]:
    from drivers.host import CommandError
    from laserctl.controller.events import (
        ConfirmEyewear,
        RequestArm,
        RequestReset,
        SetParameters,
    )

    refusals_before = len(runner.call(lambda c: c.refusals))
    error = ""
    detail: dict[str, Any] = {}
    try:
        match step.action:
            case "confirm_eyewear":
                runner.submit(ConfirmEyewear())
            case "arm":
                runner.submit(RequestArm())
            case "disarm":
                runner.disarm()
            case "estop":
                runner.estop()
            case "reset":
                runner.submit(RequestReset())
            case "set":
                runner.submit(SetParameters(step.values))
            case "wait":
                time.sleep(step.seconds or 0.0)
            case "release" | "sim":
                runner.sim_control(step.sim_text or "release")
            case "press":
                detail = press(runner, step)
        if step.action in ("release", "sim"):
            runner.sync()
        elif step.action not in ("wait", "press"):
            settle(runner)
    except CommandError as exc:
        error = str(exc)
    refusals = runner.call(lambda c: c.refusals[refusals_before:])
    snap = runner.snapshot
    return {
        "line": step.line,
        "step": step.text,
        "state": str(snap.state),
        "shots_seen": snap.shots_seen,
        "error": error,
        **detail,
        "_refusals": [{"command": r.command, "reason": r.reason} for r in refusals],
    }


def press(runner: ControllerRunner, step: Step) -> dict[str, Any]:
    from laserctl.controller.table import State

    runner.sync()
    start = runner.snapshot.shots_seen
    runner.sim_control("press")
    if step.seconds is not None:
        time.sleep(step.seconds)
        runner.sync()
        return {"pulses": runner.snapshot.shots_seen - start}
    if step.pulses is None:
        return {}
    want = step.pulses
    snap = runner.snapshot
    rate = dict(snap.params).get("rep_rate_hz", 1.0) or 1.0
    timeout = (snap.ready_in_s or 0.0) + want / rate + 2.0
    armed = (State.READY, State.EMITTING)
    done = runner.wait_for(lambda s: s.shots_seen - start >= want or s.state not in armed, timeout)
    runner.sync()
    pulses = runner.snapshot.shots_seen - start
    result: dict[str, Any] = {"pulses": pulses}
    if done is None:
        result["timed_out"] = True
    return result
