"""Weighted least-squares fit of measured against set output, and the bounds it must meet (SR-14).

measured = slope x set + offset, over every test pulse. Then:
  residual_pct   RMS over the pulses of (measured - fit) / fit, in %: pulse-to-pulse scatter.
  linearity_pct  the largest |mean measured at one set point - fit| / fit, in %: how far the
                 handpiece's response bends away from a straight line.
A fit out of bounds (too noisy, not linear, a gain or offset a healthy source never shows) is
rejected: the handpiece needs repair, not a correction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Point:
    set: float
    measured: float


@dataclass(frozen=True, slots=True)
class Fit:
    slope: float
    offset: float
    residual_pct: float
    linearity_pct: float
    r2: float
    pulses: int
    set_points: int

    def at(self, set_value: float) -> float:
        return self.slope * set_value + self.offset

    def to_json(self) -> dict[str, Any]:
        return {
            "slope": self.slope,
            "offset": self.offset,
            "residual_pct": self.residual_pct,
            "linearity_pct": self.linearity_pct,
            "r2": self.r2,
            "pulses": self.pulses,
            "set_points": self.set_points,
        }


@dataclass(frozen=True, slots=True)
class Bounds:
    """Ours (no standard gives numbers): chosen for a source with about 1.5 % pulse-to-pulse
    scatter (the simulator's, docs/simulator.md), each bound at least 2x what a healthy
    handpiece shows, and the gain band wide enough for ageing but narrower than a fault."""

    max_residual_pct: float = 3.0
    max_linearity_pct: float = 3.0
    min_slope: float = 0.70
    max_slope: float = 1.30
    max_offset_fraction: float = 0.05  # |offset| / the highest set point
    min_set_points: int = 4
    min_pulses: int = 12

    def to_json(self) -> dict[str, Any]:
        return {
            "max_residual_pct": self.max_residual_pct,
            "max_linearity_pct": self.max_linearity_pct,
            "min_slope": self.min_slope,
            "max_slope": self.max_slope,
            "max_offset_fraction": self.max_offset_fraction,
            "min_set_points": self.min_set_points,
            "min_pulses": self.min_pulses,
        }


DEFAULT_BOUNDS = Bounds()


class FitError(ValueError):
    """Too few or degenerate points to fit."""


def fit_points(points: Sequence[Point]) -> Fit:
    if len(points) < 2:
        raise FitError(f"{len(points)} point(s): at least 2 are needed")
    xs = [p.set for p in points]
    ys = [p.measured for p in points]
    if not all(math.isfinite(v) for v in (*xs, *ys)):
        raise FitError("a point is not a finite number")
    if min(xs) <= 0.0:
        raise FitError("a set point is not positive")
    n = len(points)
    # Weighted least squares, weight 1/set^2: the source's scatter is relative (a percentage of
    # the output), so each pulse counts by its relative error and the low end is fitted as
    # well as the high end.
    ws = [1.0 / (x * x) for x in xs]
    total = sum(ws)
    mx = sum(w * x for w, x in zip(ws, xs, strict=True)) / total
    my = sum(w * y for w, y in zip(ws, ys, strict=True)) / total
    sxx = sum(w * (x - mx) ** 2 for w, x in zip(ws, xs, strict=True))
    if sxx <= 1e-12 * total * mx * mx:
        raise FitError("every pulse has the same set point: nothing to fit")
    sxy = sum(w * (x - mx) * (y - my) for w, x, y in zip(ws, xs, ys, strict=True))
    slope = sxy / sxx
    offset = my - slope * mx
    mean_y = sum(ys) / n
    predicted = [slope * x + offset for x in xs]
    if min(predicted) <= 0.0:
        raise FitError("the fit predicts no output at some set point")
    relative = [(y - f) / f for y, f in zip(ys, predicted, strict=True)]
    residual = math.sqrt(sum(r * r for r in relative) / n) * 100.0
    groups: dict[float, list[float]] = {}
    for p in points:
        groups.setdefault(p.set, []).append(p.measured)
    linearity = max(
        abs(sum(vals) / len(vals) - (slope * s + offset)) / (slope * s + offset)
        for s, vals in groups.items()
    )
    ss_tot = sum((y - mean_y) ** 2 for y in ys)
    ss_res = sum((y - f) ** 2 for y, f in zip(ys, predicted, strict=True))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else 0.0
    return Fit(slope, offset, residual, linearity * 100.0, r2, n, len(groups))


def fit_problems(fit: Fit, highest_set: float, bounds: Bounds = DEFAULT_BOUNDS) -> list[str]:
    """Why this fit may not be used; empty when it is within every bound."""
    out = []
    if fit.set_points < bounds.min_set_points:
        out.append(f"{fit.set_points} set points, at least {bounds.min_set_points} needed")
    if fit.pulses < bounds.min_pulses:
        out.append(f"{fit.pulses} pulses, at least {bounds.min_pulses} needed")
    if not fit.residual_pct <= bounds.max_residual_pct:
        out.append(
            f"residual {fit.residual_pct:.2f} % is above the bound {bounds.max_residual_pct:g} %"
        )
    if not fit.linearity_pct <= bounds.max_linearity_pct:
        out.append(
            f"linearity error {fit.linearity_pct:.2f} % is above the bound "
            f"{bounds.max_linearity_pct:g} %"
        )
    if not bounds.min_slope <= fit.slope <= bounds.max_slope:
        out.append(
            f"gain {fit.slope:.3f} is outside {bounds.min_slope:g}..{bounds.max_slope:g}: the "
            "source needs service, not a correction"
        )
    limit = bounds.max_offset_fraction * highest_set
    if not abs(fit.offset) <= limit:
        out.append(
            f"offset {fit.offset:+.3f} is beyond +-{limit:.3f} "
            f"({bounds.max_offset_fraction:.0%} of full scale)"
        )
    return out
