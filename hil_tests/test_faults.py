"""Faults mid-burst, each on both handpiece types, through `laserctl session` against the device
URL: an interlock opened, the e-stop, the cable pulled and replugged, garbage and corrupted
bytes on the line, the device rebooting. Each checks what its requirement asks of the whole
system, and that the shot log holds exactly the shots the device's own counter says it fired.

Scripts are lists of steps; `Script.at(label)` finds a step's result by the label given to it.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path

import pytest

from .conftest import SimProcess
from .noise import LineNoise
from .rig import FAST_RATE_HZ, Dut, SessionResult, check_log, events, stored_shots, wait_for_shots

SOFT_INTERLOCK = {"fractional-1550": "skin", "ndyag-1064": "aiming"}  # opening: back to STANDBY
BURST_S = 0.4  # firing before a fault is injected: 6 pulses at 15 Hz, 4 at 10 Hz


class Script:
    """Session script lines, some labelled, to find their step results by label."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.labels: dict[str, int] = {}

    def add(self, *lines: str, label: str | None = None) -> Script:
        for line in lines:
            self.lines.append(line)
        if label is not None:
            self.labels[label] = len(self.lines) - 1
        return self

    def text(self) -> str:
        return "\n".join(self.lines) + "\n"

    def at(self, result: SessionResult, label: str) -> dict[str, object]:
        step = result.data["steps"][self.labels[label]]
        assert step["step"] == self.lines[self.labels[label]]
        return dict(step)


def before(dut: Dut) -> int:
    """The device counter before the test's session (a shared device has fired before)."""
    return dut.counter() if dut.persistent else 0


def run_on_abdomen(dut: Dut, tmp_path: Path, script: Script) -> tuple[int, Path, SessionResult]:
    """`laserctl session` running `script` on the abdomen (100 pulses) into a fresh shot log:
    the device counter before it, the log, and the session's result (which must have run)."""
    first = before(dut)
    db = tmp_path / "log.db"
    result = dut.session(db, "abdomen", script.text(), max_pulses=100)
    assert result.returncode == 0, result.stderr
    return first, db, result


def seen(script: Script, result: SessionResult, label: str) -> int:
    value = script.at(result, label)["shots_seen"]
    assert isinstance(value, int)
    return value


# ---- interlocks (SR-02) --------------------------------------------------------------------------
@pytest.mark.req("SR-02")
@pytest.mark.req("SR-11")
def test_interlocks_opened_mid_burst_stop_emission_latch_or_drop_to_standby(
    dut: Dut, tmp_path: Path
) -> None:
    """The door opening mid-burst latches FAULT; the handpiece's skin-contact (fractional) or
    aiming-beam (Nd:YAG) interlock drops to STANDBY. Either way no pulse follows the opening;
    after closing it (and a reset, for the door) the session fires again."""
    soft = SOFT_INTERLOCK[dut.handpiece]
    s = Script()
    s.add("confirm eyewear", "arm", "press", f"wait {BURST_S}", label="burst 1")
    s.add("sim open door", label="door opened")
    s.add("wait 0.4", label="after door")
    s.add("sim close door", "release", "reset", label="reset")
    s.add("confirm eyewear", "arm", "press", f"wait {BURST_S}", label="burst 2")
    s.add(f"sim open {soft}", label="soft opened")
    s.add("wait 0.4", label="after soft")
    s.add(f"sim close {soft}", "release", "arm", label="re-armed")
    s.add("press 3", label="burst 3")
    s.add("release", "disarm")
    first, db, result = run_on_abdomen(dut, tmp_path, s)
    assert result.data["errors"] == []
    # The door: FAULT, latched, out of EMITTING; no pulse while it was open.
    [door] = result.data["faults"]
    assert door["kind"] == "interlock" and "door" in door["cause"] and door["state"] == "EMITTING"
    assert seen(s, result, "burst 1") > 0
    assert s.at(result, "after door")["state"] == "FAULT"
    assert seen(s, result, "after door") == seen(s, result, "door opened")
    assert s.at(result, "reset")["state"] == "STANDBY"
    # The soft interlock: STANDBY, not latched; no pulse while open; arming works at once.
    assert seen(s, result, "burst 2") > seen(s, result, "reset")
    assert s.at(result, "after soft")["state"] == "STANDBY"
    assert seen(s, result, "after soft") == seen(s, result, "soft opened")
    assert s.at(result, "re-armed")["state"] == "READY"
    assert s.at(result, "burst 3")["pulses"] == 3
    notes = [e["message"] for e in events(db, session=result.data["session_id"])]
    assert any(m.startswith("back to STANDBY") and soft in m for m in notes), notes
    last = dut.counter_after(result)
    assert last - first == result.data["shots_seen"]
    check_log(db, dut, first=first, last=last)


# ---- e-stop (SR-03) -----------------------------------------------------------------------------
@pytest.mark.req("SR-03")
@pytest.mark.req("SR-11")
def test_estop_mid_burst_latches_and_needs_release_reset_and_self_test(
    dut: Dut, tmp_path: Path
) -> None:
    """The console's e-stop input pressed mid-burst, then the operator's ESTOP command
    mid-burst: each stops emission and latches ESTOP; RESET is refused while the input is
    pressed; leaving ESTOP takes the release, a reset and a new self test."""
    s = Script()
    s.add("confirm eyewear", "arm", "press", f"wait {BURST_S}", label="burst 1")
    s.add("sim estop", label="input pressed")
    s.add("wait 0.4", label="after input")
    s.add("release", "reset", label="reset refused")
    s.add("sim release estop", "reset", label="reset 1")
    s.add("confirm eyewear", "arm", "press 3", label="burst 2")
    s.add(
        "release", "disarm", "confirm eyewear", "arm", "press", f"wait {BURST_S}", label="burst 3"
    )
    s.add("estop", label="operator estop")
    s.add("wait 0.4", label="after estop")
    s.add("release", "reset", label="reset 2")
    s.add("confirm eyewear", "arm", "press 2", label="burst 4")
    s.add("release", "disarm")
    first, db, result = run_on_abdomen(dut, tmp_path, s)
    pressed = result.fault("e-stop pressed")
    by_operator = result.fault("e-stop by the operator")
    assert pressed["kind"] == by_operator["kind"] == "estop"
    assert pressed["state"] == by_operator["state"] == "EMITTING"
    for stop, after in (("input pressed", "after input"), ("operator estop", "after estop")):
        assert s.at(result, after)["state"] == "ESTOP"
        assert seen(s, result, after) == seen(s, result, stop), f"a pulse after {stop}"
    [refused] = result.data["refusals"]
    assert refused["command"] == "RESET" and "e-stop" in refused["reason"]
    assert s.at(result, "reset refused")["state"] == "ESTOP"
    for reset in ("reset 1", "reset 2"):
        assert s.at(result, reset)["state"] == "STANDBY"
    assert s.at(result, "burst 2")["pulses"] == 3 and s.at(result, "burst 4")["pulses"] == 2
    # Each way out of ESTOP went through a new self test, and the eyewear was asked again.
    log = [e["message"] for e in events(db, session=result.data["session_id"])]
    out = [m for m in log if m.startswith("transition ESTOP") or m.startswith("ESTOP")]
    assert len(out) == 2 and all("-> SELF_TEST" in m for m in out), out
    assert sum("eyewear confirmation cleared" in m for m in log) == 2
    last = dut.counter_after(result)
    check_log(db, dut, first=first, last=last)


# ---- the cable pulled (SR-09, SR-11) -------------------------------------------------------------
@pytest.mark.req("SR-09")
@pytest.mark.req("SR-11")
def test_cable_pulled_mid_burst_and_replugged_rereads_the_shots_fired_meanwhile(
    dut: Dut, tmp_path: Path
) -> None:
    """With the cable out the device stops by its own watchdog within 250 ms of the last host
    frame, the host declares the silent link lost (FAULT); after the replug the host
    identifies the device again and re-reads the shots fired in the dark: all logged once."""
    rate = FAST_RATE_HZ[dut.handpiece]
    s = Script()
    s.add("confirm eyewear", "arm", "press", f"wait {BURST_S}", label="burst")
    s.add("sim pull cable", label="pulled")
    s.add("wait 1.0", label="pulled 1 s")
    s.add("sim replug", "wait 1.0", label="replugged")
    s.add("release", "reset", label="reset")
    s.add("confirm eyewear", "arm", "press 3", label="again")
    s.add("release", "disarm")
    first, db, result = run_on_abdomen(dut, tmp_path, s)
    silent = result.fault("device silent for", "SR-09")
    assert silent["kind"] == "link" and silent["state"] == "EMITTING"
    assert s.at(result, "pulled 1 s")["state"] == "FAULT"
    assert s.at(result, "reset")["state"] == "STANDBY"
    assert s.at(result, "again")["pulses"] == 3
    log = [e["message"] for e in events(db, session=result.data["session_id"])]
    assert any("answers again: identifying it" in m for m in log), log
    last = dut.counter_after(result)
    shots = check_log(db, dut, first=first, last=last)
    # The shots fired in the dark came back with SHOTS_SINCE: at least one (the device did
    # fire on until its watchdog), at most 250 ms worth (its watchdog stopped it).
    dark = [x for x in shots if x.replayed]
    assert 1 <= len(dark) <= math.ceil(0.25 * rate) + 1, len(dark)
    live = [x for x in shots if not x.replayed and x.shot_no < dark[0].shot_no]
    quiet_us = dark[-1].device_us - live[-1].device_us  # from the last pulse seen to the last
    assert quiet_us <= (0.25 + 1 / rate) * 1e6 + 5_000, quiet_us


# ---- garbage and corrupted bytes (SR-16) ---------------------------------------------------------
@pytest.mark.req("SR-11")
@pytest.mark.req("SR-16")
def test_garbage_and_corrupted_frames_from_the_device_are_never_acted_upon(
    dut: Dut, tmp_path: Path
) -> None:
    """The device's output is hit mid-burst by a garbage burst, corrupted frames and truncated
    frames: the host drops each, notices the lost events, re-reads the lost shots, and the
    burst goes on without a fault; every shot is logged once."""
    s = Script()
    s.add("confirm eyewear", "arm", "press", "wait 0.3", "sim garbage 64", "wait 0.3")
    s.add("sim corrupt 4", "wait 0.3", "sim truncate 3", "wait 0.4", label="burst")
    s.add("release", "disarm")
    first, db, result = run_on_abdomen(dut, tmp_path, s)
    assert result.data["faults"] == [], result.faults
    assert result.data["errors"] == []
    assert s.at(result, "burst")["state"] == "EMITTING"  # it never stopped
    lost = [e for e in events(db, "warning") if "lost" in str(e["message"])]
    assert lost, "no frame was lost: the injection did not happen"
    last = dut.counter_after(result)
    assert last - first == result.data["shots_seen"]
    check_log(db, dut, first=first, last=last)


@pytest.fixture
def tcp_device(dut: Dut) -> Dut | SimProcess:
    """What a noisy line can sit in front of: the --device URL when it is socket://, else a
    simulator process of the same handpiece type on TCP."""
    if dut.url.startswith("socket://"):
        return dut
    if dut.process is None:
        pytest.skip(f"{dut.url}: the noisy line is a TCP proxy; give a socket:// device")
    return SimProcess(dut.handpiece, "tcp:0", *dut.process.extra)


@pytest.mark.req("SR-11")
@pytest.mark.req("SR-16")
def test_a_noisy_line_corrupting_both_directions_changes_nothing_that_is_logged(
    dut: Dut, tcp_device: Dut | SimProcess, tmp_path: Path
) -> None:
    """A noisy line between host and device corrupts every 4th frame each way (commands,
    heartbeats and SHOT_ACKs too, which the device must drop) and adds garbage after each:
    the burst fires exactly its pulses, without a fault, and every shot is logged once."""
    upstream = tcp_device.url
    sim = tcp_device if isinstance(tcp_device, SimProcess) else None
    try:
        with LineNoise(upstream) as line:
            noisy = Dut(line.url, dut.handpiece, dut.serial, True, True, dut.env, tmp_path, sim)
            db = tmp_path / "log.db"
            first = noisy.counter()
            outcome: list[SessionResult] = []
            script = "confirm eyewear\narm\npress 30\nrelease\ndisarm\n"
            noisy.calibrate(db)
            runner = threading.Thread(
                target=lambda: outcome.append(noisy.session(db, "abdomen", script, max_pulses=100))
            )
            runner.start()
            wait_for_shots(db, 3, timeout=20.0)
            line.start(every=4, garbage=16)
            deadline = time.monotonic() + 10.0
            while min(line.corrupted.values()) < 6 and time.monotonic() < deadline:
                time.sleep(0.05)
            line.stop()
            runner.join(timeout=60)
            [result] = outcome
            assert min(line.corrupted.values()) >= 6, line.corrupted
            assert result.returncode == 0, result.stderr
            assert result.data["faults"] == [], result.faults
            assert result.step("press 30")["pulses"] == 30
            last = noisy.counter()
            assert last - first == 30
            check_log(db, noisy, first=first, last=last)
    finally:
        if sim is not None:
            sim.stop()


# ---- reboot (SR-15, SR-11, SR-08) ----------------------------------------------------------------
@pytest.mark.req("SR-08")
@pytest.mark.req("SR-11")
@pytest.mark.req("SR-15")
def test_device_reboot_mid_session_faults_and_the_log_keeps_both_boots_apart(
    dut: Dut, tmp_path: Path
) -> None:
    """The handpiece reboots mid-burst, losing its shot counter: the controller latches FAULT
    (device rebooted, counter reset), both logged. The pulses it may have fired unreported are
    gone with its buffer and count as delivered (SR-08), which takes the rest of the area's
    budget: after a reset ARM is refused. The next area's session fires on the new boot, and
    the log holds the shots of each boot, numbered as the device numbered them."""
    s = Script()
    s.add("confirm eyewear", "arm", "press", f"wait {BURST_S}", label="burst")
    s.add("sim reboot", label="rebooted")
    s.add("wait 0.4", label="after reboot")
    s.add("release", "reset", "wait 0.3", label="reset")
    s.add("confirm eyewear", "arm", label="again")
    first, db, result = run_on_abdomen(dut, tmp_path, s)
    rebooted = result.fault("rebooted")
    assert rebooted["kind"] == "reboot" and rebooted["state"] == "EMITTING"
    assert result.fault("shot counter")["kind"] == "shot_counter"
    assert s.at(result, "after reboot")["state"] == "FAULT"
    assert seen(s, result, "after reboot") == seen(s, result, "rebooted")
    assert s.at(result, "reset")["state"] == "STANDBY"
    data = result.data
    assert data["pulses_in_doubt"] > 0
    assert data["pulses_used"] == data["shots_seen"] + data["pulses_in_doubt"]
    assert [r["command"] for r in data["refusals"]] == ["ARM"]
    assert "session budget used up" in data["refusals"][0]["reason"]
    assert s.at(result, "again")["state"] == "STANDBY"
    warnings = [e["message"] for e in events(db, "warning", session=data["session_id"])]
    assert any("count as delivered (SR-08)" in m for m in warnings), warnings
    faults = [e["message"] for e in events(db, "fault", session=data["session_id"])]
    assert any("rebooted" in m for m in faults) and any("shot counter" in m for m in faults)
    # Another area, the same handpiece on its new boot.
    thighs = dut.session(db, "thighs", "confirm eyewear\narm\npress 3\nrelease\n", max_pulses=3)
    assert thighs.returncode == 0, thighs.stderr
    assert thighs.data["faults"] == [] and thighs.data["shots_seen"] == 3
    # The device's counter restarted at the reboot: the shots before it, 1..k under the old
    # boot id, and after it 1..m under the new one, m being the counter now.
    boots: dict[int, list[int]] = {}
    for shot in stored_shots(db):
        boots.setdefault(shot.boot_id, []).append(shot.shot_no)
    assert len(boots) == 2, boots.keys()
    old, new = boots.values()
    assert sorted(old) == list(range(first + 1, first + len(old) + 1)) == sorted(set(old))
    assert sorted(new) == list(range(1, len(new) + 1)) == sorted(set(new)) == [1, 2, 3]
    assert len(old) == seen(s, result, "rebooted") > 0
    assert data["shots_fired"] == len(old) == data["shots_logged"]
    assert thighs.data["shots_fired"] == len(new) == thighs.data["shots_logged"]
    if dut.persistent:
        assert dut.counter() == len(new)
