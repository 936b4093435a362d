"""Safe on real hardware (docs/hil.md): nothing here can fire. A handpiece whose calibration is
not in the shot log cannot be armed (SR-14), whatever it is; once `laserctl calibrate` (a
service engineer) has stored one, the same session arms (on a simulator; on hardware the
second half is skipped: it would need the bench's service login)."""

from __future__ import annotations

from pathlib import Path

import pytest

from .rig import Dut, stored_shots

SCRIPT = "confirm eyewear\narm\nwait 0.3\ndisarm\n"


@pytest.mark.hardware_safe
@pytest.mark.req("SR-14")
def test_no_calibration_in_the_log_no_arming(dut: Dut, tmp_path: Path) -> None:
    db = tmp_path / "log.db"
    result = dut.session(db, "chest", SCRIPT, calibrate=False)
    assert result.returncode == 0, result.stderr
    [refusal] = result.data["refusals"]
    assert refusal["command"] == "ARM" and "calibration" in refusal["reason"], refusal
    assert result.step("arm")["state"] == "STANDBY"
    assert result.data["final_state"] == "STANDBY" and result.data["faults"] == []
    assert stored_shots(db) == []
    if not dut.simulated:
        return  # calibrating a real handpiece is the bench engineer's service step
    dut.calibrate(db)
    armed = dut.session(db, "abdomen", SCRIPT)
    assert armed.returncode == 0, armed.stderr
    assert armed.data["refusals"] == [] and armed.step("arm")["state"] == "READY"
    assert armed.data["calibration"]["valid"] and armed.data["calibration"]["serial"] == dut.serial
