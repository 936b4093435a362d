"""`laserctl session` with calibrations and signed profiles (issue 5): no valid calibration, no
arming, simulated handpieces included, except the explicit training mode (SR-14); a drifted
handpiece calibrated then treated (SR-06, SR-14); `--profile` with the operator's `--set`
values inside the windows only (SR-07); a profile changed outside the service workflow refused
before anything is sent (SR-13)."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from drivers.protocol import HelloInfo
from laserctl.cli import main
from laserctl.profiles.signing import SHIPPED_DIR
from laserctl.records import open_store
from laserctl.records.export import session_data
from tests.simcal import calibrate_simulator, sim_inject

LASERCTL = str(Path(sys.executable).with_name("laserctl"))
FIRE = "confirm eyewear\narm\nwait 1.1\npress 3\nrelease\n"


@pytest.fixture(autouse=True)
def _own_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No keyring, profile directory or accounts from the machine running the tests."""
    monkeypatch.setenv("LASERCTL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("LASERCTL_PROFILE_DIR", raising=False)


def session(tmp_path: Path, script: str, *args: str) -> Result:
    path = tmp_path / "script.txt"
    path.write_text(script)
    return CliRunner().invoke(main, ["session", "--script", str(path), *args])


def report_of(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.output)


# ---- calibration (SR-14) ------------------------------------------------------------------------
@pytest.mark.req("SR-14")
def test_without_a_calibration_laserctl_session_refuses_to_arm_even_a_simulator(
    tmp_path: Path,
) -> None:
    db = tmp_path / "log.db"
    common = ("--device", "sim:fractional-1550", "--db", str(db), "--json")
    report = report_of(session(tmp_path, FIRE, *common))
    assert report["final_state"] == "STANDBY"
    assert report["shots_fired"] == report["shots_seen"] == 0
    arm = report["refusals"][0]
    assert arm["line"] == 2 and arm["command"] == "ARM"
    assert "calibration: no calibration for fractional-1550 FX-" in arm["reason"]
    assert "laserctl calibrate" in arm["reason"]
    assert report["calibration"]["valid"] is False
    # Once a service engineer calibrated it, the same session arms and fires.
    cal = calibrate_simulator("sim:fractional-1550", db)
    report = report_of(session(tmp_path, FIRE, *common))
    assert report["refusals"] == []
    assert report["shots_seen"] == 3 and report["final_state"] == "READY"
    assert report["calibration"]["id"] == cal.record_id
    assert report["calibration"]["serial"] == cal.serial


@pytest.mark.req("SR-14")
def test_training_is_uncalibrated_on_a_simulator_only_and_never_with_a_patient(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    report = report_of(
        session(tmp_path, FIRE, "--device", "sim:fractional-1550", "--training", "--json")
    )
    assert report["training"] is True and report["shots_seen"] == 3
    assert report["calibration"] == {"valid": True, "id": None, "uncalibrated": True}
    with_patient = session(
        tmp_path,
        FIRE,
        *("--device", "sim:fractional-1550", "--training", "--patient", "P-0001"),
        *("--area", "abdomen", "--db", str(tmp_path / "log.db")),
    )
    assert with_patient.exit_code == 2
    assert "--training treats no patient" in with_patient.output
    monkeypatch.setattr(HelloInfo, "FLAG_SIMULATED", 0)  # the simulator says it is hardware
    real = session(tmp_path, FIRE, "--device", "sim:fractional-1550", "--training")
    assert real.exit_code == 2, real.output
    assert "training is for simulated handpieces only; nothing was run" in real.output


# ---- profiles (SR-07, SR-13) ------------------------------------------------------------------
@pytest.mark.req("SR-07")
def test_a_profile_session_uses_the_operators_values_inside_the_window_and_logs_them(
    tmp_path: Path,
) -> None:
    db = tmp_path / "log.db"
    calibrate_simulator("sim:fractional-1550", db)
    profile = ("--profile", "fractional-1550-abdomen/alba")
    report = report_of(
        session(
            tmp_path,
            FIRE + "disarm\nset energy_mj 36\n",  # beyond the window, in the session: refused
            *("--device", "sim:fractional-1550", "--db", str(db), "--json", *profile),
            *("--set", "energy_mj=22", "--set", "depth_um=1000"),
            *("--patient", "P-0007", "--area", "abdomen"),
        )
    )
    assert report["shots_logged"] == report["shots_seen"] == 3
    assert report["profile"]["operator_values"] == {"energy_mj": 22.0, "depth_um": 1000.0}
    refusal = report["refusals"][-1]
    assert refusal["command"] == "SET_PARAMS" and refusal["line"] == 7
    assert "energy_mj = 36 is above the maximum 35 (min of plan window 14..35" in refusal["reason"]
    sha = hashlib.sha256((SHIPPED_DIR / "fractional-1550-abdomen.toml").read_bytes()).hexdigest()
    store = open_store(db, readonly=True)
    try:
        data = session_data(store, report["session_id"])
        events = [e for e in data.events if e["kind"] == "info" and "profile" in e["message"]]
    finally:
        store.close()
    windows = {
        "energy_mj": (14, 35),
        "density_pct": (5, 10),
        "depth_um": (600, 1200),
        "passes": (2, 3),
        "rep_rate_hz": (1, 10),
    }
    for shot in data.shots:
        assert shot["profile_id"] == "fractional-1550-abdomen/alba"
        assert shot["profile_hash"] == sha  # the signed file's own SHA-256 (SR-11, SR-13)
        assert shot["params"] == {
            "energy_mj": 22.0,
            "density_pct": 10.0,
            "depth_um": 1000.0,
            "passes": 2.0,
            "rep_rate_hz": 5.0,
        }
        for name, value in shot["params"].items():
            assert windows[name][0] <= value <= windows[name][1]
        assert shot["set"] == 22.0 and shot["calibration"] is not None
    assert events and events[0]["data"]["profile_sha256"] == sha
    assert events[0]["data"]["operator_values"] == {"energy_mj": 22.0, "depth_um": 1000.0}


@pytest.mark.req("SR-07")
def test_a_set_value_beyond_the_profiles_window_refuses_the_session_naming_limit_and_value(
    tmp_path: Path,
) -> None:
    # An unreachable device: exit 2, not 3, shows nothing was even opened.
    result = session(
        tmp_path,
        FIRE,
        *("--device", str(tmp_path / "no-such-tty"), "--db", str(tmp_path / "log.db")),
        *("--profile", "fractional-1550-abdomen/alba", "--set", "energy_mj=40"),
    )
    assert result.exit_code == 2, result.output
    assert (
        "fractional-1550-abdomen/alba: energy_mj = 40 mJ is outside the profile's window "
        "14..35 mJ" in result.output
    )
    unknown = session(
        tmp_path,
        FIRE,
        *("--device", "sim:fractional-1550", "--profile", "fractional-1550-abdomen/alba"),
        *("--set", "power=3"),
    )
    assert unknown.exit_code == 2 and "--set 'power=3'" in unknown.output
    no_profile = session(tmp_path, FIRE, "--device", "sim:fractional-1550", "--set", "passes=3")
    assert no_profile.exit_code == 2 and "--set needs --profile" in no_profile.output


@pytest.mark.req("SR-13")
def test_a_profile_changed_outside_the_service_workflow_refuses_the_session(
    tmp_path: Path,
) -> None:
    copy = tmp_path / "profiles"
    shutil.copytree(SHIPPED_DIR, copy)
    edited = copy / "fractional-1550-abdomen.toml"
    text = edited.read_text()
    assert text.count("max = 35.0") == 1
    edited.write_text(text.replace("max = 35.0", "max = 45.0"))  # valid, but not signed
    nowhere = ("--device", str(tmp_path / "no-such-tty"), "--db", str(tmp_path / "log.db"))
    result = session(
        tmp_path,
        FIRE,
        *nowhere,
        *("--profile-dir", str(copy), "--profile", "fractional-1550-abdomen/alba"),
    )
    assert result.exit_code == 2, result.output  # refused before the device is opened
    assert f"{edited}: file: changed outside the service workflow: SHA-256" in result.output
    assert "laserctl profiles sign" in result.output
    # An invalid value is named with its field too (schema and capability, SR-13).
    edited.write_text(text.replace("max = 35.0", "max = 80.0"))
    result = session(
        tmp_path,
        FIRE,
        *nowhere,
        *("--profile-dir", str(copy), "--profile", "fractional-1550-abdomen/alba"),
    )
    assert result.exit_code == 2, result.output
    assert (
        f"{edited}: field 'variants.alba.params.energy_mj.max' = 80.0: outside the handpiece's "
        "capability 4..70 mJ" in result.output
    )
    # The other profiles of the directory are untouched and still load (the device then
    # cannot be reached: exit 3).
    other = session(
        tmp_path,
        FIRE,
        *nowhere,
        *("--profile-dir", str(copy), "--profile", "fractional-1550-thighs/alba"),
    )
    assert other.exit_code == 3, other.output


# ---- a drifted handpiece, calibrated, then treated (SR-06, SR-14) ----------------------------
def run_session(url: str, db: Path, patient: str, tmp_path: Path) -> tuple[Any, list[Any]]:
    script = tmp_path / f"{patient}.txt"
    script.write_text("confirm eyewear\narm\nwait 1.1\npress 15\nrelease\n")
    args = [LASERCTL, "session", "--device", url, "--db", str(db), "--script", str(script)]
    args += ["--profile", "fractional-1550-abdomen/alba", "--set", "energy_mj=20"]
    args += ["--set", "rep_rate_hz=10", "--patient", patient, "--area", "abdomen", "--json"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    store = open_store(db, readonly=True)
    try:
        shots = session_data(store, report["session_id"]).shots
    finally:
        store.close()
    assert len(shots) >= 15, report
    return report, shots


@pytest.mark.slow
@pytest.mark.req("SR-06")
@pytest.mark.req("SR-14")
def test_a_drifted_simulator_calibrated_then_treated_delivers_the_target_within_5_percent(
    pty_sim: str, tmp_path: Path
) -> None:
    db = tmp_path / "log.db"
    calibrate_simulator(pty_sim, db)  # healthy: gain about 1.0
    sim_inject(pty_sim, "drift 12")  # then the source drifts: +12 %

    # Treated with the calibration from before the drift: every shot about 12 % above the
    # profile's target, and the host's energy monitor says so against the target (SR-06).
    report, shots = run_session(pty_sim, db, "P-0021", tmp_path)
    deviations = [s["measured"] / 20.0 - 1.0 for s in shots]
    assert sum(deviations) / len(deviations) > 0.08, deviations
    assert any("beyond +-10 %" in w and "against 20 set" in w for w in report["warnings"])

    # Calibrated again (service), the same drifted handpiece delivers the target within 5 %.
    cal = calibrate_simulator(pty_sim, db)
    assert cal.fit.slope == pytest.approx(1.12, abs=0.03)
    report, shots = run_session(pty_sim, db, "P-0022", tmp_path)
    assert report["faults"] == [] and report["calibration"]["id"] == cal.record_id
    for shot in shots:
        assert shot["set"] == 20.0  # the profile's value the operator chose
        assert shot["drive"] == pytest.approx(cal.drive_milli(20000) / 1000.0)
        assert shot["drive"] == pytest.approx(20.0 / 1.12, abs=0.5)  # what the device was sent
        assert abs(shot["measured"] / 20.0 - 1.0) < 0.05, shot
        assert abs(shot["deviation_pct"]) < 5.0
    assert not [w for w in report["warnings"] if "SR-06" in w]
