"""The fixed scenes the README's screenshots show (screenshots.py drives the screens): a
handpiece, what discovery found, a snapshot like the controller publishes with set and measured
values, a shot series with about 1.5 % scatter, a session and its report. Fixed, so a
screenshot does not change from one run to the next."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from drivers.protocol import HANDPIECES, DeviceInfo, HandpieceType
from laserctl.controller.snapshot import Snapshot
from laserctl.controller.table import State

from .discovery import DeviceChoice, simulators
from .view import CauseView, ConsoleView, RefusalView, ShotPoint

if TYPE_CHECKING:
    from .treatment import SessionSummary


FRACTIONAL = HANDPIECES[HandpieceType.FRACTIONAL_1550]
DEVICE = DeviceInfo(
    handpiece=FRACTIONAL.type,
    serial="FX-00001",
    firmware="sim-1.0.0",
    protocol=1,
    boot_id=1,
    simulated=True,
    wavelength_nm=FRACTIONAL.wavelength_nm,
    interlocks=FRACTIONAL.interlocks,
    capabilities=dict(FRACTIONAL.capabilities),
)
FOUND = [
    *simulators(),
    DeviceChoice("/dev/ttyUSB0", "serial port: CP2102 USB to UART Bridge Controller"),
    DeviceChoice("usb:1209:4c31:FX-20417", "USB handpiece: laserctl fractional 1550"),
]
INTERLOCKS = (
    "key",
    "door",
    "estop",
    "footswitch",
    "handpiece",
    "calibration",
    "link",
    "cooling",
    "temperature",
    "shutter",
    "skin_contact",
    "eyewear",
)
PARAMS = (
    ("energy_mj", 14.0),
    ("density_pct", 8.0),
    ("depth_um", 600.0),
    ("passes", 2.0),
    ("rep_rate_hz", 5.0),
)
# measured / set - 1, in %: a source with about 1.5 % scatter (docs/simulator.md)
SCATTER = (0.4, -1.1, 1.6, -0.3, 0.9, -2.2, 1.2, 0.1, -0.8, 2.0, -1.4, 0.6, -0.2, 1.1, -1.7)


def snapshot(state: State, **changes: Any) -> Snapshot:
    base: dict[str, Any] = {
        "seq": 1,
        "at": 100.0,
        "state": state,
        "state_since": 88.0,
        "plan_id": "fractional-1550-abdomen/rubra",
        "handpiece": "fractional-1550",
        "serial": "FX-00001",
        "simulated": True,
        "connected": True,
        "link_alive": True,
        "device_state": "EMITTING" if state is State.EMITTING else "IDLE",
        "interlocks": tuple((name, "closed") for name in INTERLOCKS),
        "not_closed": (),
        "eyewear": True,
        "footswitch": state is State.EMITTING,
        "emission": state is State.EMITTING,
        "temperature_c": 27.4,
        "params": PARAMS,
        "params_confirmed": True,
        "grant": 300,
        "shots_in_grant": 42,
        "ready_in_s": None,
        "pulses_used": 42,
        "pulses_max": 300,
        "fluence_used_j_cm2": 306.2,
        "fluence_max_j_cm2": 2620.0,
        "shots_seen": 42,
        "shots_recovered": 0,
        "device_shots_fired": 42,
        "causes": (),
        "faults": 0,
        "refusals": 0,
        "warnings": 0,
        "last_message": "",
        "commands_in_flight": 0,
        "awaiting": (),
    }
    base.update(changes)
    return Snapshot(**base)


def shots(count: int = 42) -> tuple[ShotPoint, ...]:
    return tuple(
        ShotPoint(n, "energy_mj", 14.0, round(14.0 * (1 + SCATTER[n % len(SCATTER)] / 100), 3))
        for n in range(1, count + 1)
    )[-60:]


LOG = (
    "[transition] SELF_TEST -> STANDBY (self_test_passed)",
    "[info] protective eyewear confirmed by the operator",
    "[info] ARM sent: grant 300 pulses (max_pulses 300, 0 used)",
    "[transition] STANDBY -> READY (arm_acked)",
    "[emission] emission indication on",
    "[transition] READY -> EMITTING (emission_started)",
)

EMITTING = ConsoleView(snapshot(State.EMITTING), shots=shots(), log=LOG)
DOOR_CAUSE = "interlock opened while EMITTING: door open"
FAULT = ConsoleView(
    snapshot(
        State.FAULT,
        device_state="IDLE",
        interlocks=tuple((n, "open" if n in ("door", "eyewear") else "closed") for n in INTERLOCKS),
        not_closed=("door", "eyewear"),
        eyewear=False,
        grant=300,
        causes=(DOOR_CAUSE,),
        faults=1,
        refusals=1,
        last_message="RESET refused: cause still present: door still open",
    ),
    causes=(CauseView("interlock", DOOR_CAUSE, "door"),),
    refusals=(RefusalView("RESET", "cause still present: door still open"),),
    shots=shots(),
    log=(
        *LOG[2:],
        "[emission] emission stopped",
        f"[fault] {DOOR_CAUSE}",
        "[transition] EMITTING -> FAULT (fault)",
        "[refusal] RESET refused: cause still present: door still open",
    ),
)


class SceneBridge:
    def __init__(self, view: ConsoleView) -> None:
        self.view = view

    def take(self) -> ConsoleView:
        return self.view

    def submit(self, _event: object) -> None:
        pass

    def estop(self) -> None:
        pass

    def disarm(self) -> None:
        pass


class SceneRunner:
    device_info = DEVICE


class SceneSession:
    """What the treatment screen reads of a ConsoleSession, holding a fixed view."""

    def __init__(self, view: ConsoleView) -> None:
        from laserctl.plan import FRACTIONAL_CONSERVATIVE

        self.session_id = "S-20261123-1a2b3c4d"
        self.course = 1
        self.patient = "P-0042"
        self.area = "abdomen"
        self.url = "sim:fractional-1550"
        self.plan = FRACTIONAL_CONSERVATIVE
        self.bridge = SceneBridge(view)
        self.runner = SceneRunner()
        self.finished = None
        self.closed = False

    def close(self) -> None:
        self.closed = True


def report_summary() -> SessionSummary:
    from .treatment import SessionSummary

    return SessionSummary(
        session_id="S-20261123-1a2b3c4d",
        patient="P-0042",
        area="abdomen",
        course=1,
        report={
            "final_state": "STANDBY",
            "plan_id": "fractional-1550-abdomen/rubra",
            "handpiece": {"handpiece": "fractional-1550", "serial": "FX-00001", "simulated": True},
            "shots_fired": 186,
            "shots_seen": 186,
            "pulses_used": 186,
            "fluence_used_j_cm2": 1355.9,
            "faults": [
                {"state": "EMITTING", "cause": DOOR_CAUSE},
            ],
            "refusals": [{"command": "RESET", "reason": "cause still present: door still open"}],
            "warnings": [],
        },
        shots_logged=186,
        report_path="/var/lib/laserctl/reports/S-20261123-1a2b3c4d.html",
        report_problem="",
        log_ok=True,
        log_note="hash chains intact (412 records)",
    )
