"""`laserctl session`: the script parser, and scenarios against the simulator in its own
process on a pty (`laserctl sim --listen pty`)."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from drivers.protocol import HelloInfo, Param
from laserctl.cli import main
from laserctl.script import ScriptError, parse_script
from tests.plans import fast_fractional_plan
from tests.simcal import calibrate_simulator

LASERCTL = str(Path(sys.executable).with_name("laserctl"))

FAST_PLAN = fast_fractional_plan(
    "scenario-fast", area="thigh", max_pulses=200, max_fluence_j_cm2=1500
)


# ---- the parser -----------------------------------------------------------------------------
def test_parse_the_documented_example() -> None:
    steps = parse_script(
        """
        confirm eyewear
        arm
        wait 1.5            # seconds
        press 20            # twenty more pulses
        sim open door       # while the footswitch is held
        release
        press 2.0s
        set energy_mj 14 density_pct 8
        estop
        reset
        disarm
        """
    )
    assert [s.action for s in steps] == [
        "confirm_eyewear",
        "arm",
        "wait",
        "press",
        "sim",
        "release",
        "press",
        "set",
        "estop",
        "reset",
        "disarm",
    ]
    assert steps[2].seconds == 1.5 and steps[2].line == 4
    assert steps[3].pulses == 20 and steps[3].seconds is None
    assert steps[4].sim_text == "open door" and steps[4].needs_simulator
    assert steps[6].seconds == 2.0 and steps[6].pulses is None
    assert steps[7].values == ((Param.ENERGY_MJ, 14.0), (Param.DENSITY_PCT, 8.0))
    assert not steps[0].needs_simulator


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("arm now", "line 1: cannot read 'arm now'"),
        ("\n\nwait soon", "line 3: 'soon' is not a number of seconds"),
        ("press 0", "line 1: press 0: the pulse count must be within 1..100000"),
        ("press many", "line 1: press 'many'"),
        ("set power 5", "line 1: unknown parameter 'power'"),
        ("set energy_mj", "line 1: cannot read"),
        ("wait -1", "line 1: '-1': seconds must be within 0..3600"),
    ],
)
def test_parse_errors_name_the_line(text: str, message: str) -> None:
    with pytest.raises(ScriptError) as excinfo:
        parse_script(text)
    assert message in str(excinfo.value)


# ---- in-process, through click ----------------------------------------------------------------
def test_a_bad_script_is_a_usage_error(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("confirm eyewear\nfire at will\n")
    result = CliRunner().invoke(
        main, ["session", "--device", "sim:fractional-1550", "--script", str(script)]
    )
    assert result.exit_code == 2
    assert "line 2: cannot read 'fire at will'" in result.output


def test_a_bad_plan_names_file_field_and_value(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("arm\n")
    plan = tmp_path / "p.toml"
    plan.write_text(FAST_PLAN.replace("default = 12\n", "default = 30\n", 1))
    result = CliRunner().invoke(
        main,
        [
            "session",
            "--device",
            "sim:fractional-1550",
            "--script",
            str(script),
            "--plan",
            str(plan),
        ],
    )
    assert result.exit_code == 2
    assert f"{plan}: field 'params.energy_mj'" in result.output
    assert "default 30 is outside 12..16" in result.output


def test_an_unreachable_device_exits_3(tmp_path: Path) -> None:
    script = tmp_path / "s.txt"
    script.write_text("arm\n")
    db = str(tmp_path / "log.db")
    result = CliRunner().invoke(
        main,
        ["session", "--device", str(tmp_path / "no-such-tty"), "--db", db, "--script", str(script)],
    )
    assert result.exit_code == 3, result.output


def session_as_real_handpiece(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, *args: str
) -> Result:
    """`laserctl session` in process against a simulator that reports itself as real
    hardware (HELLO_INFO without the simulated flag)."""
    monkeypatch.setattr(HelloInfo, "FLAG_SIMULATED", 0)
    script_file = tmp_path / "s.txt"
    script_file.write_text(script)
    db = str(tmp_path / "log.db")
    return CliRunner().invoke(
        main,
        [
            "session",
            "--device",
            "sim:fractional-1550",
            "--script",
            str(script_file),
            "--db",
            db,
            *args,
        ],
    )


def test_simulator_steps_against_a_real_handpiece_are_refused_before_anything_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = session_as_real_handpiece(
        tmp_path, monkeypatch, "confirm eyewear\narm\nwait 1.2\npress 5\nsim open door\n"
    )
    assert result.exit_code == 2, result.output
    assert "simulator steps (lines 4, 5) against a real handpiece" in result.output
    assert "nothing was run" in result.output


@pytest.mark.req("SR-11")
def test_a_real_handpiece_fires_only_in_a_logged_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = session_as_real_handpiece(tmp_path, monkeypatch, "confirm eyewear\narm\n")
    assert result.exit_code == 2, result.output
    assert "must log every shot (SR-11): give --patient and --area" in result.output


@pytest.mark.req("SR-01")
def test_a_real_handpiece_cannot_be_armed_until_calibration_exists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    result = session_as_real_handpiece(
        tmp_path,
        monkeypatch,
        "confirm eyewear\narm\n",
        "--json",
        "--patient",
        "P-0001",
        "--area",
        "abdomen",
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["final_state"] == "STANDBY"
    assert report["refusals"][0]["line"] == 2
    assert "calibration: no calibration for fractional-1550" in report["refusals"][0]["reason"]


# ---- against the simulator in its own process -------------------------------------------------
def run_session(device: str, script: str, tmp_path: Path, plan: str | None = None) -> Any:
    """The simulator is calibrated first (SR-14: no calibration, no arming)."""
    db = tmp_path / "log.db"
    calibrate_simulator(device, db)
    script_file = tmp_path / "script.txt"
    script_file.write_text(script)
    args = [LASERCTL, "session", "--device", device, "--script", str(script_file), "--json"]
    args += ["--db", str(db)]
    if plan is not None:
        plan_file = tmp_path / "plan.toml"
        plan_file.write_text(plan)
        args += ["--plan", str(plan_file)]
    started = time.monotonic()
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    report["_elapsed"] = time.monotonic() - started
    return report


@pytest.mark.slow
@pytest.mark.req("SR-02")
@pytest.mark.req("SR-03")
def test_scenario_door_opens_while_the_footswitch_is_held(pty_sim: str, tmp_path: Path) -> None:
    report = run_session(
        pty_sim,
        """
        confirm eyewear
        arm
        wait 1.1
        press 20
        sim open door       # footswitch still held
        release
        press 0.5s          # in FAULT: nothing fires
        release
        estop
        reset               # refused: the door is still open
        sim close door
        reset
        disarm
        """,
        tmp_path,
        plan=FAST_PLAN,
    )
    assert report["shots_fired"] == report["shots_seen"]
    assert 20 <= report["shots_seen"] <= 22  # the door opened within a pulse or two of the 20th
    press_after_fault = report["steps"][6]
    assert press_after_fault["pulses"] == 0 and press_after_fault["state"] == "FAULT"
    causes = [f["cause"] for f in report["faults"]]
    assert causes[0] == "interlock opened while EMITTING: door open"
    assert "e-stop by the operator" in causes
    assert report["refusals"] == [
        {
            "line": 11,
            "step": "reset",
            "command": "RESET",
            "reason": "cause still present: door still open",
        }
    ]
    assert report["steps"][9]["state"] == "ESTOP"
    assert report["final_state"] == "STANDBY"


@pytest.mark.slow
@pytest.mark.req("SR-09")
@pytest.mark.req("SR-11")
def test_scenario_cable_pulled_while_firing(pty_sim: str, tmp_path: Path) -> None:
    report = run_session(
        pty_sim,
        """
        confirm eyewear
        arm
        wait 1.05
        press 5
        sim pull cable
        wait 0.5
        release
        sim replug
        wait 0.4
        reset
        """,
        tmp_path,
        plan=FAST_PLAN,
    )
    causes = [f["cause"] for f in report["faults"]]
    assert any("silent" in c or "watchdog" in c for c in causes), causes
    assert report["shots_fired"] == report["shots_seen"]  # the ones fired unheard were re-read
    assert report["shots_seen"] >= 5
    assert report["final_state"] == "STANDBY"


@pytest.mark.slow
@pytest.mark.req("SR-06")
@pytest.mark.req("SR-04")
def test_scenario_energy_drift_and_a_stuck_footswitch(pty_sim: str, tmp_path: Path) -> None:
    report = run_session(
        pty_sim,
        """
        confirm eyewear
        arm
        wait 1.05
        press 3
        sim drift 25
        press 5             # stops at the first pulse beyond +-20 %
        release
        sim drift 0
        reset
        sim stick footswitch
        confirm eyewear
        arm                 # refused: footswitch pressed
        """,
        tmp_path,
        plan=FAST_PLAN,
    )
    assert report["faults"][0]["kind"] == "energy"
    assert (
        "beyond +-20 %" in report["faults"][0]["cause"]
        or "device energy" in (report["faults"][0]["cause"])
    )
    assert report["steps"][5]["pulses"] == 1
    assert report["refusals"][-1]["reason"] == "interlock not closed: footswitch is pressed"
    assert report["final_state"] == "STANDBY"
    assert report["shots_fired"] == report["shots_seen"] == 4
