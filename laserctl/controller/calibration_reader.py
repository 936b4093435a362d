"""The connected handpiece's calibration, read from its source off the runner's owner thread.

The source (laserctl.calibration.calibration_lookup: the shot log) queries SQLite under the
store's lock, which the group-commit writer holds while it commits: tens of milliseconds, longer
than an interlock may wait (SR-02). So the owner thread never reads it; this does, and feeds each
reading to the core as CalibrationLoaded, stamped with the wall clock. The core judges the
calibration itself, expiry on its own injected clock (SR-14).

Read: for the opening connection before the core hears it is open (read_now, on the opening
thread, so the first identification already has it), at every identification (want, from the
core's ReadCalibration), every `refresh_s` (a calibration stored or revoked meanwhile by another
process), and on demand (refresh, e.g. after a service calibration).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from drivers.protocol import DeviceInfo

from .dosing import CalibrationSource
from .events import CalibrationLoaded, InternalError

REFRESH_S = 10.0


class CalibrationReader:
    def __init__(
        self,
        source: CalibrationSource,
        put: Callable[[CalibrationLoaded | InternalError], None],
        *,
        wall_clock: Callable[[], float] = time.time,
        refresh_s: float = REFRESH_S,
    ) -> None:
        self.source = source
        self._put = put
        self._wall_clock = wall_clock
        self.refresh_s = refresh_s
        self._info: DeviceInfo | None = None
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None

    def read_now(self, info: DeviceInfo) -> CalibrationLoaded:
        """Read on this thread (never the owner thread); later refreshes are for `info`."""
        self._info = info
        try:
            found = self.source(info)
        except Exception as exc:  # the source failing must not let a handpiece arm (SR-14)
            found = f"calibration source failed: {type(exc).__name__}: {exc}"
        return CalibrationLoaded(info.serial, found, self._wall_clock())

    def want(self, info: DeviceInfo) -> None:
        """A reading for `info` soon, on the reader's thread."""
        self._info = info
        self._wake.set()

    def refresh(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="calibration", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stopped.set()
        self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(self.refresh_s)
            self._wake.clear()
            if self._stopped.is_set():
                return
            info = self._info
            if info is None:
                continue
            try:
                self._put(self.read_now(info))
            except Exception as exc:  # SR-10: reported, and the reader goes on
                self._put(InternalError(f"calibration reader: {type(exc).__name__}: {exc}"))
