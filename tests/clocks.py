"""Clocks for tests that need time to jump the way it does for a process that was not running."""

from __future__ import annotations

import time


class Steppable:
    """time.monotonic() plus whatever the test has moved it on by."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset
