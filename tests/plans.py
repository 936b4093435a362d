"""Plan files for the tests that run `laserctl session` against a simulator in its own process:
the built-in fractional windows at the handpiece's full 15 Hz, with the limits each test needs."""

from __future__ import annotations


def fast_fractional_plan(
    plan_id: str,
    *,
    area: str,
    max_pulses: int,
    max_fluence_j_cm2: float,
    ready_delay_s: float | None = None,
) -> str:
    """The TOML text of a fractional plan that fires at 15 Hz."""
    delay = "" if ready_delay_s is None else f"ready_delay_s = {ready_delay_s}\n"
    return f"""
plan_id = "{plan_id}"
handpiece = "fractional-1550"
area = "{area}"
max_pulses = {max_pulses}
max_fluence_j_cm2 = {max_fluence_j_cm2:g}
{delay}source = "tests: the built-in fractional windows at 15 Hz"
[params.energy_mj]
min = 12
max = 16
default = 12
[params.density_pct]
min = 5
max = 10
default = 8
[params.depth_um]
min = 400
max = 1000
default = 600
[params.passes]
min = 2
max = 3
default = 2
[params.rep_rate_hz]
min = 1
max = 15
default = 15
"""
