"""The grant book (SR-08): the pulses the last ARM granted, the shots seen on it, and the
pulses in doubt.

A grant is open from the ARM that sent it until a STATUS shows the device disarmed with every
shot it counted recorded; while it is open no new grant is sent (a reboot could then hide the
pulses of both). When the device loses its shot counter with a grant open, the pulses of that
grant never reported count as delivered, at the grant's dose per pulse with its margin: the
rest of the session can never exceed the plan's limits because a reboot hid pulses. Pure: the
core decides what to do with the answers.
"""

from __future__ import annotations

from drivers.protocol import DeviceInfo, DeviceState, Param, StatusBody

from ..plan import TreatmentPlan
from ..safety.limits import GRANT_MARGIN, DoseUsed, Grant, fluence_per_pulse, pulse_grant
from .causes import device_state
from .shots import ShotLedger


def next_grant(
    plan: TreatmentPlan, device: DeviceInfo | None, dose: DoseUsed, params: dict[Param, float]
) -> Grant:
    """What the next ARM may grant: the remaining budget at these parameters' dose per pulse."""
    handpiece = device.handpiece if device else plan.handpiece
    return pulse_grant(plan, dose, fluence_per_pulse(handpiece, params))


class GrantBook:
    def __init__(self) -> None:
        self.pulses = 0  # granted by the last ARM
        self.shots = 0  # shots seen live on it
        self.open = False
        self.in_doubt = 0  # pulses of the session counted as delivered, never reported
        self._fluence = 0.0  # J/cm2 charged per pulse in doubt: the grant's, with margin
        self._pulses_at_grant = 0  # dose.pulses when it was sent

    def granted(self, pulses: int, dose: DoseUsed, per_pulse_j_cm2: float) -> None:
        """ARM goes out with this grant."""
        self.pulses = pulses
        self.shots = 0
        self.open = True
        self._pulses_at_grant = dose.pulses
        self._fluence = per_pulse_j_cm2 * GRANT_MARGIN

    def settle(self, body: StatusBody, ledger: ShotLedger) -> None:
        """The grant owes nothing once a status shows the device disarmed with every shot it
        counted recorded."""
        if (
            self.open
            and device_state(body.state) not in (DeviceState.ARMED, DeviceState.EMITTING)
            and ledger.upto is not None
            and body.shot_no <= ledger.upto
        ):
            self.open = False

    def doubt(self, dose: DoseUsed) -> tuple[int, DoseUsed]:
        """The device lost its shot counter and buffer: the pulses of the open grant it fired
        but never reported, and the dose with them counted as delivered. Once per grant; a
        grant known finished owes none."""
        if not self.open:
            return 0, dose
        self.open = False
        # Its shots seen live, or re-read (lost events): the more of the two counts.
        seen = max(self.shots, dose.pulses - self._pulses_at_grant)
        doubt = max(0, self.pulses - seen)
        if doubt == 0:
            return 0, dose
        self.in_doubt += doubt
        return doubt, dose.add(self._fluence, doubt)

    def unsettled(self, ledger: ShotLedger) -> str:
        """Why no new grant yet: pulses of the last one not all recorded (the re-read,
        SHOTS_SINCE, settles it) or no status since."""
        if ledger.upto is not None and ledger.missing:
            top = max([*ledger.ahead, ledger.device_count or 0])
            shots = f"shot {top}" if top == ledger.upto + 1 else f"shots {ledger.upto + 1}..{top}"
            return (
                f"{shots} of the last grant not recorded yet: re-reading them before a new "
                "grant (SR-08)"
            )
        return "the last grant is not settled yet: waiting for the device's status (SR-08)"
