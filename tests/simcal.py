"""Calibrate a simulated handpiece into a shot log, the way `laserctl calibrate` does (without
the service login): sessions refuse to arm any handpiece, simulated ones included, that has no
valid calibration in the shot log (SR-14). Fixtures call this before `laserctl session`.

    calibrate_simulator("/dev/pts/5", tmp_path / "log.db")
    calibrate_simulator(url, db, inject=("drift 12",))     # fault injection first
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Sequence
from pathlib import Path

from drivers.host import CommandError, HandpieceConnection
from drivers.protocol import DeviceInfo, SimControl
from laserctl.calibration import Calibration, calibrate
from laserctl.records import open_store

SERVICE_USER = "svc-test"


def open_connection(url: str, timeout: float = 5.0) -> tuple[HandpieceConnection, DeviceInfo]:
    """A simulator process takes the next host once the last one has let go: retry a while."""
    deadline = time.monotonic() + timeout
    while True:
        connection = HandpieceConnection(url, reconnect=False)
        try:
            return connection, connection.open()
        except CommandError:
            connection.close()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def sim_inject(url: str, *texts: str) -> None:
    """Fault injections into a simulator process (its state outlives the connection)."""
    connection, info = open_connection(url)
    try:
        assert info.simulated
        for text in texts:
            connection.call(SimControl(text))
    finally:
        connection.close()


def calibrate_simulator(
    url: str, db: Path, *, inject: Sequence[str] = (), who: str = SERVICE_USER
) -> Calibration:
    """Calibrate the handpiece at `url` (a simulator: `inject` goes to it first) and store the
    calibration in the shot log `db`; returns it with its record id."""
    connection, info = open_connection(url)
    try:
        assert info.simulated, "calibrate_simulator is for simulated handpieces"
        for text in inject:
            connection.call(SimControl(text))
        outcome = calibrate(connection, info, who)
    finally:
        connection.close()
    assert outcome.calibration is not None, outcome.problems
    store = open_store(db)
    try:
        record_id = store.add_calibration(
            info.serial, info.handpiece.slug, who, outcome.calibration.to_record()
        )
    finally:
        store.close()
    return dataclasses.replace(outcome.calibration, record_id=record_id)
