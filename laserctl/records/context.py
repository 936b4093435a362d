"""What the store needs to know about a shot beyond the ShotRecord the controller makes: which
handpiece fired it, under which profile, and the host's interlock view when it was processed.

The controller already holds all three (device, plan, readings()); `controller_context`
reads them on the controller's owner thread, at the moment the shot is handed to the store.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from drivers.protocol import DeviceInfo
    from laserctl.plan import TreatmentPlan


@dataclass(frozen=True, slots=True)
class ShotContext:
    serial: str
    handpiece: str  # type slug, e.g. fractional-1550
    firmware: str
    profile_id: str
    profile_hash: str  # hex SHA-256 of the profile as loaded
    interlocks: tuple[tuple[str, str], ...]  # (interlock, reading) in the controller's order


ContextSource = Callable[[], ShotContext]


class ControllerView(Protocol):
    """The part of laserctl.controller.core.Controller the shot context comes from."""

    @property
    def device(self) -> DeviceInfo | None: ...

    @property
    def plan(self) -> TreatmentPlan | None: ...

    def readings(self) -> Mapping[Any, Any]: ...


def profile_hash(plan: TreatmentPlan) -> str:
    """The SHA-256 of the profile the plan came from: for a signed profile (laserctl.profiles,
    SR-13) the digest of its file's bytes, the one its signed manifest covers (plan.extra
    "profile_sha256"); for any other plan (built-in, --plan file) the SHA-256 over the plan's
    canonical JSON (every field that decides what may be fired). The shot's parameters, the
    operator's values included, are recorded with each shot."""
    signed = plan.extra.get("profile_sha256")
    if isinstance(signed, str) and signed:
        return signed
    data = {**plan.to_json(), "serial": plan.serial, "source": plan.source}
    text = json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()


def controller_context(controller: ControllerView) -> ContextSource:
    """A context source reading the controller when called (on its owner thread)."""
    cache: list[tuple[TreatmentPlan, str]] = []  # the plan last hashed, and its hash
    # The context last made and what it was made from: the controller hands out the same
    # device, plan and readings mapping until one changes, so a burst of shots shares one.
    last: list[tuple[object, object, object, ShotContext]] = []

    def read() -> ShotContext:
        device = controller.device
        plan = controller.plan
        readings = controller.readings()
        if last and last[0][0] is device and last[0][1] is plan and last[0][2] is readings:
            return last[0][3]
        if device is None or plan is None:
            raise ValueError("a shot before the handpiece was identified and a plan chosen")
        if not cache or cache[0][0] is not plan:
            cache[:] = [(plan, profile_hash(plan))]
        context = ShotContext(
            serial=device.serial,
            handpiece=device.handpiece.slug,
            firmware=device.firmware,
            profile_id=plan.plan_id,
            profile_hash=cache[0][1],
            interlocks=tuple((str(k), str(v)) for k, v in readings.items()),
        )
        last[:] = [(device, plan, readings, context)]
        return context

    return read
