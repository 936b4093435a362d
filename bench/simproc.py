"""A simulator process for the reaction benchmark: `laserctl sim --listen pty`'s server and
firmware, with one addition: it notes the time (time.monotonic_ns(), the same clock as the
benchmark's on Linux) at which emission stopped, and why, and writes the notes to --out as JSON
when told to stop (SIGTERM).

    python -m bench.simproc --handpiece fractional-1550 --out stops.json   # prints "pty: ..."
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from drivers.protocol import DeviceState, FaultCode
from drivers.sim.firmware import SimulatedHandpiece
from drivers.sim.server import PtyServer


class NotingHandpiece(SimulatedHandpiece):
    """Notes (monotonic ns, new state) whenever emission stops."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        self.stops: list[tuple[int, str]] = []
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]

    def stop_emission(self, state: DeviceState, fault: FaultCode = FaultCode.NONE) -> None:
        if self.state is DeviceState.EMITTING:
            self.stops.append((time.monotonic_ns(), state.name))
        super().stop_emission(state, fault)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.simproc")
    parser.add_argument("--handpiece", default="fractional-1550")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    sim = NotingHandpiece(args.handpiece, seed=1, now=time.monotonic())
    server = PtyServer(sim)
    stopped = threading.Event()

    def stop(_signum: int, _frame: FrameType | None) -> None:
        server.stop.set()
        stopped.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    print(f"pty: {server.path}", flush=True)
    while not stopped.wait(0.2):
        pass
    thread.join(timeout=2)
    args.out.write_text(json.dumps(sim.stops))
    server.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
