"""The outside view of the core: the Snapshot a console subscribes to and the report the
session summary prints. Read only: nothing here changes the core.
"""

from __future__ import annotations

from typing import Any

from ..safety.interlocks import not_closed
from .causes import device_state
from .context import Core
from .snapshot import Snapshot
from .table import State


def snapshot(core: Core, seq: int = 0) -> Snapshot:
    readings = core.readings()
    status = core.status
    plan = core.plan
    device = core.device
    ready_in = None
    if core.state is State.READY and core.ready_at is not None:
        ready_in = max(0.0, core.ready_at - core.now)
    return Snapshot(
        seq=seq,
        at=core.now,
        state=core.state,
        state_since=core.state_since,
        plan_id=plan.plan_id if plan else "",
        handpiece=device.handpiece.slug if device else "",
        serial=device.serial if device else "",
        simulated=bool(device and device.simulated),
        connected=core.connected,
        link_alive=core.connected and core.link_alive,
        device_state=device_state(status.state).name if status else "",
        interlocks=tuple((str(i), str(r)) for i, r in readings.items()),
        not_closed=tuple(str(i) for i in not_closed(readings)),
        eyewear=core.eyewear,
        footswitch=bool(status and status.footswitch),
        emission=bool(status and status.emission),
        temperature_c=status.temp_mc / 1000.0 if status else None,
        params=tuple((p.field_name, v) for p, v in sorted(core.params.items())),
        params_confirmed=core.params_confirmed,
        grant=core.grants.pulses,
        shots_in_grant=core.grants.shots,
        ready_in_s=ready_in,
        pulses_used=core.dose.pulses,
        pulses_max=plan.max_pulses if plan else 0,
        fluence_used_j_cm2=core.dose.fluence_j_cm2,
        fluence_max_j_cm2=plan.max_fluence_j_cm2 if plan else 0.0,
        shots_seen=core.shots_seen,
        shots_recovered=core.shots_recovered,
        device_shots_fired=core.ledger.device_fired,
        causes=tuple(c.message for c in core.causes),
        faults=len(core.faults),
        refusals=len(core.refusals),
        warnings=len(core.warnings),
        last_message=core.last_message,
        commands_in_flight=len(core.inflight.pending),
        awaiting=core.inflight.awaiting(),
    )


def report(core: Core) -> dict[str, Any]:
    """What the session summary prints."""
    return {
        "final_state": str(core.state),
        "plan_id": core.plan.plan_id if core.plan else "",
        "handpiece": core.device.to_json() if core.device else None,
        "shots_fired": core.ledger.device_fired,
        "shots_seen": core.shots_seen,
        "shots_recovered": core.shots_recovered,
        "pulses_used": core.dose.pulses,
        "pulses_in_doubt": core.grants.in_doubt,
        "fluence_used_j_cm2": round(core.dose.fluence_j_cm2, 3),
        "faults": [
            {"at": round(f.at, 3), "state": str(f.state), "kind": str(f.kind), "cause": f.cause}
            for f in core.faults
        ],
        "refusals": [
            {"at": round(r.at, 3), "command": r.command, "reason": r.reason} for r in core.refusals
        ],
        "warnings": list(core.warnings),
        "latched_causes": [c.message for c in core.causes],
        "calibration": core.dosing.to_json(core.device is not None),
    }
