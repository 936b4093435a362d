"""Every interlock's reading as the core sees it (SR-01), and an open one in words.

The interlock table itself is laserctl/safety/interlocks.py; this room feeds it the core's
inputs and keeps the last readings, computed again only when one of those inputs changed (a
burst of shots changes none of them). Pure.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from drivers.protocol import DeviceInfo, StatusBody

from ..safety.interlocks import InterlockId, InterlockInputs, Reading, read_all
from .dosing import Dosing


class InterlockReadings:
    def __init__(self) -> None:
        self._of: tuple[object, ...] | None = None  # the inputs the cache came from
        self._cache: Mapping[InterlockId, Reading] = {}

    def read(
        self,
        device: DeviceInfo | None,
        status: StatusBody | None,
        identity_problem: str,
        dosing: Dosing,
        *,
        link_alive: bool,
        eyewear: bool,
    ) -> Mapping[InterlockId, Reading]:
        """Read-only: copy it to change a reading."""
        key = (
            device,
            status,
            identity_problem,
            dosing.problem,
            dosing.pending,
            link_alive,
            eyewear,
        )
        if key != self._of:
            self._cache = read_all(
                InterlockInputs(
                    handpiece=device.handpiece if device else None,
                    device_inputs=device.interlocks if device else frozenset(),
                    status=status,
                    identity_ok=None if device is None else not identity_problem,
                    calibration_ok=(
                        None if device is None or dosing.pending else not dosing.problem
                    ),
                    link_alive=link_alive,
                    eyewear=eyewear,
                )
            )
            self._of = key
        return self._cache


def interlock_reason(
    ids: Sequence[InterlockId],
    readings: Mapping[InterlockId, Reading],
    *,
    calibration_problem: str,
    identity_problem: str,
) -> str:
    parts = []
    for ident in ids:
        if ident is InterlockId.FOOTSWITCH and readings[ident] is Reading.OPEN:
            parts.append("footswitch is pressed")
        elif ident is InterlockId.CALIBRATION and calibration_problem:
            parts.append(f"calibration: {calibration_problem}")
        elif ident is InterlockId.HANDPIECE and identity_problem:
            parts.append(f"handpiece: {identity_problem}")
        elif ident is InterlockId.EYEWEAR:
            parts.append("eyewear not confirmed")
        else:
            parts.append(f"{ident} {readings[ident]}")
    return "interlock not closed: " + ", ".join(parts)
