"""`laserctl --help` start-up against a bare `python -c pass` in the same run."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from typing import Any


def _time(cmd: list[str], runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    runs = 3 if quick else 15
    value = _time([sys.executable, "-m", "laserctl", "--help"], runs) * 1e3
    baseline = _time([sys.executable, "-c", "pass"], runs) * 1e3
    return [
        {
            "name": "laserctl --help start-up (median)",
            "value": value,
            "unit": "ms",
            "baseline": baseline,
            "baseline_name": "python -c pass",
            "ratio": value / baseline,
            "target": "<= 200 ms",
        }
    ]
