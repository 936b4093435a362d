"""Controller memory over a long run: the whole pipeline of bench/fastsim.py with a shot store
that keeps nothing (so what is measured is the host's own memory: connection, link, runner,
controller; the shot log's is SQLite's page cache, bounded), firing in bursts; after each
burst, once every shot is acknowledged (a quiet point), the process's resident memory and
Python's allocated block count are sampled. The device fires at 4 kHz, about what the host keeps
up with, so that its own buffer of unacknowledged shots (in this process too) stays small.

The figure is the growth from the end of the warm-up (the first tenth of the shots) to the
end; flat means no growth. Full run: 1,000,000 shots in 100 bursts; --quick: 20,000 in 10.

It runs in a process of its own (`python -m bench.soak`), so that its absolute figures are the
host's memory and not also what earlier suites left in the bench's process (the fleet suite's
PostgreSQL driver alone is about 75,000 blocks and 14 MiB).
"""

from __future__ import annotations

import gc
import json
import os
import subprocess
import sys
from typing import Any

from .fastsim import Discard, Pipeline

TIMEOUT_S = 600.0
RATE_HZ = 4_000.0  # about what the host keeps up with: the device does not run far ahead


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; else the peak from getrusage)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # pragma: no cover - not Linux
        import resource

        return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


def sample() -> tuple[int, int]:
    gc.collect()
    return rss_bytes(), sys.getallocatedblocks()


def run(*, quick: bool = False) -> list[dict[str, Any]]:
    """The soak, measured in a child process (see the module's docstring)."""
    child = subprocess.run(
        [sys.executable, "-m", "bench.soak", *(["--quick"] if quick else [])],
        check=True,
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S * 2,
    )
    results: list[dict[str, Any]] = json.loads(child.stdout)
    return results


def measure(*, quick: bool = False) -> list[dict[str, Any]]:
    total = 20_000 if quick else 1_000_000
    bursts = 10 if quick else 100
    per_burst = total // bursts
    samples: list[tuple[int, int, int]] = []  # (shots so far, rss, blocks)
    fired = 0
    with Pipeline(store=Discard(), pulses=total * 2, rate_hz=RATE_HZ) as pipeline:
        for _ in range(bursts):
            shots, _elapsed = pipeline.burst(per_burst, TIMEOUT_S)
            fired += shots
            samples.append((fired, *sample()))
    warm = samples[max(0, bursts // 10 - 1)]
    end = samples[-1]
    between = max(1, end[0] - warm[0])
    mib = 1024 * 1024
    return [
        {
            "name": f"controller RSS after {fired} shots (soak, in bursts)",
            "value": end[1] / mib,
            "unit": "MiB",
            "baseline": warm[1] / mib,
            "baseline_name": f"RSS after warm-up ({warm[0]} shots)",
            "ratio": end[1] / warm[1],
            "target": "flat (no growth)",
            "growth_bytes_per_shot": (end[1] - warm[1]) / between,
            "samples": [{"shots": n, "rss": r, "blocks": b} for n, r, b in samples],
        },
        {
            "name": f"Python allocated blocks after {fired} shots (soak)",
            "value": float(end[2]),
            "unit": "blocks",
            "baseline": float(warm[2]),
            "baseline_name": f"after warm-up ({warm[0]} shots)",
            "ratio": end[2] / warm[2],
            "target": "flat (no growth)",
            "growth_blocks_per_shot": (end[2] - warm[2]) / between,
        },
    ]


if __name__ == "__main__":
    print(json.dumps(measure(quick="--quick" in sys.argv[1:])))
