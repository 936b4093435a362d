"""A NAK in words: which command the device refused, why, and the parameter or interlock.

The host's errors (drivers/host.py CommandRefused) and the controller's refusal causes say
it the same way: `device refused ARM: INTERLOCK_OPEN: door`.
"""

from __future__ import annotations

import contextlib

from .constants import Interlock, NakReason, Param
from .messages import Command, Nak


def describe_nak(command: Command, nak: Nak) -> str:
    name = type(command).__name__.upper()
    try:
        reason = NakReason(nak.reason).name
    except ValueError:
        reason = f"reason {nak.reason}"
    detail = ""
    if nak.reason in (NakReason.OUT_OF_RANGE, NakReason.UNKNOWN_PARAM, NakReason.NO_PARAMS):
        with contextlib.suppress(ValueError):
            detail = f": {Param(nak.detail).field_name}"
        if nak.reason == NakReason.OUT_OF_RANGE:
            detail += f" = {nak.value / 1000:g}"
    elif nak.reason == NakReason.INTERLOCK_OPEN:
        with contextlib.suppress(ValueError):
            detail = f": {Interlock(nak.detail).name.lower()}"
    return f"device refused {name}: {reason}{detail}"
