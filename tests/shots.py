"""A minimal shot record for the shot-log tests (one size, so full-disk tests are repeatable)."""

from __future__ import annotations

from drivers.protocol import Param
from laserctl.shotrecord import ShotRecord


def shot(sid: str, n: int) -> ShotRecord:
    return ShotRecord(
        sid,
        "plan",
        "abdomen",
        1,
        n,
        n,
        Param.ENERGY_MJ,
        12.0,
        12.0,
        1800,
        ((Param.ENERGY_MJ, 12.0),),
        False,
        True,
        0.5,
        0.0,
    )
