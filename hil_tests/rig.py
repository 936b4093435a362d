"""The device under test (a `Dut`) and what the HIL scenarios do with it, only through its URL
and the `laserctl` command line, as an operator and a service engineer would:

    dut.calibrate(db)                        # laserctl calibrate (service account, SR-14)
    result = dut.session(db, "chest", SCRIPT, max_pulses=12)   # laserctl session --json
    dut.counter()                            # the device's own shot counter (GET_STATUS)
    check_log(db, dut, first=0, last=dut.counter())   # what the shot log holds

A Dut is a fresh `laserctl sim` process on a pty by default (one per test); with `--device URL`
it is whatever the URL names, possibly shared between tests (see docs/hil.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from drivers.protocol import (
    DeviceState,
    GetStatus,
    Reset,
    ShotAck,
    SimControl,
    Status,
    StatusBody,
)
from tests.simcal import open_connection

from .conftest import LASERCTL, ROOT, SimProcess, run_laserctl

HANDPIECES = ("fractional-1550", "ndyag-1064")
AREAS = ("chest", "abdomen", "thighs", "buttocks")
PATIENT = "P-4711"
SERVICE_USER = "svc-hil"
# A throwaway service account in a temporary config directory, created by the fixture.
SERVICE_PASSWORD = "hil-throwaway-password"
# The interlocks a shared simulator is put back to closed after each test.
INTERLOCKS = {
    "fractional-1550": ("key", "door", "estop", "cooling", "temperature", "shutter", "skin"),
    "ndyag-1064": ("key", "door", "estop", "cooling", "temperature", "shutter", "aiming"),
}
# Pulse rates the fast plans use: the handpiece's capability maximum.
FAST_RATE_HZ = {"fractional-1550": 15.0, "ndyag-1064": 10.0}


def per_process(url: str) -> bool:
    """True when every process that opens the URL gets a simulator of its own (`sim:`, and
    `usb:` with LASERCTL_USB_BACKEND=sim): nothing of the device outlives that process."""
    if url.startswith("sim:"):
        return True
    return url.startswith("usb") and os.environ.get("LASERCTL_USB_BACKEND") == "sim"


@dataclass
class SessionResult:
    """One `laserctl session --json` run."""

    returncode: int
    data: dict[str, Any]
    stderr: str
    elapsed: float

    @property
    def faults(self) -> list[str]:
        return [f"{f['kind']}: {f['cause']} (in {f['state']})" for f in self.data["faults"]]

    def fault(self, *words: str) -> dict[str, Any]:
        """The first fault whose cause names every word (case-insensitive)."""
        for found in self.data["faults"]:
            cause = str(found["cause"]).lower()
            if all(w.lower() in cause for w in words):
                return dict(found)
        raise AssertionError(f"no fault naming {words}: {self.faults}")

    def step(self, text: str) -> dict[str, Any]:
        """The result of the (first) script step that starts with `text`."""
        for step in self.data["steps"]:
            if str(step["step"]).startswith(text):
                return dict(step)
        raise AssertionError(f"no step {text!r}: {[s['step'] for s in self.data['steps']]}")


@dataclass
class Dut:
    """The device under test: one handpiece behind one URL."""

    url: str
    handpiece: str
    serial: str
    simulated: bool
    persistent: bool  # its counter and unacknowledged records outlive the process using it
    env: dict[str, str]  # for laserctl processes: the service account's config directory
    workdir: Path
    process: SimProcess | None = None
    calibrated: set[Path] = field(default_factory=set)

    # ---- the device, directly ---------------------------------------------------------------
    def status(self) -> StatusBody:
        connection, _ = open_connection(self.url)
        try:
            reply = connection.call(GetStatus())
            assert isinstance(reply, Status)
            return reply.body
        finally:
            connection.close()

    def counter(self) -> int:
        """The device's own shot counter."""
        return self.status().shot_no

    def inject(self, *texts: str) -> None:
        """Simulator fault injection (SIM_CONTROL) over a connection of its own."""
        assert self.simulated
        connection, _ = open_connection(self.url)
        try:
            for text in texts:
                connection.call(SimControl(text))
        finally:
            connection.close()

    def restore(self) -> None:
        """Put a shared simulator back as a fresh one would be, apart from its counter: every
        input closed, footswitch up, faults cleared, and every record acknowledged (this test
        has checked its log; the next test's log must not receive them). A simulated USB bus
        lives as long as this process: the tests' own connections reach it too."""
        if not self.simulated:
            return
        connection, _ = open_connection(self.url)
        try:
            texts = ["replug", "delay 0", "drift 0", "gain 1", "cool", "release estop"]
            texts += ["unstick footswitch", "release"]
            texts += [f"close {name}" for name in INTERLOCKS[self.handpiece]]
            texts += [f"pass {item}" for item in ("inputs", "shutter", "meter", "sensors")]
            for text in texts:
                connection.call(SimControl(text))
            reply = connection.call(GetStatus())
            assert isinstance(reply, Status)
            if reply.body.state in (DeviceState.FAULT, DeviceState.ESTOP):
                connection.call(Reset())
            connection.call(ShotAck(reply.body.shot_no))
        finally:
            connection.close()

    # ---- laserctl, as a user runs it ----------------------------------------------------------
    def laserctl(
        self,
        *args: str,
        timeout: float = 60.0,
        preexec_fn: Callable[[], None] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return run_laserctl(*args, timeout=timeout, env=self.env, preexec_fn=preexec_fn)

    def calibrate(self, db: Path) -> dict[str, Any]:
        """`laserctl calibrate` into the shot log `db`, as the service account (SR-14)."""
        done = self.laserctl(
            "calibrate",
            "--device",
            self.url,
            "--db",
            str(db),
            "--user",
            SERVICE_USER,
            "--plot",
            str(self.workdir / f"calibration-{self.serial}.svg"),
            "--json",
        )
        assert done.returncode == 0, done.stdout + done.stderr
        data: dict[str, Any] = json.loads(done.stdout)
        assert data["accepted"] and data["serial"] == self.serial, data
        self.calibrated.add(db)
        return data

    def plan(self, area: str, *, max_pulses: int, ready_delay_s: float = 0.2) -> Path:
        path = self.workdir / f"plan-{self.handpiece}-{area}-{max_pulses}.toml"
        path.write_text(plan_toml(self.handpiece, area, max_pulses, ready_delay_s))
        return path

    def session_args(
        self,
        db: Path,
        area: str,
        script: str,
        *,
        max_pulses: int,
        patient: str,
        resume: bool,
        calibrate: bool = True,
    ) -> list[str]:
        if calibrate and db not in self.calibrated:
            self.calibrate(db)
        script_path = self.workdir / f"script-{time.monotonic_ns()}.txt"
        script_path.write_text(script)
        plan = self.plan(area, max_pulses=max_pulses)
        args = ["session", "--device", self.url, "--plan", str(plan), "--patient", patient]
        args += ["--area", area, "--db", str(db), "--script", str(script_path), "--json"]
        return [*args, "--resume"] if resume else args

    def session(
        self,
        db: Path,
        area: str,
        script: str,
        *,
        max_pulses: int = 12,
        patient: str = PATIENT,
        resume: bool = False,
        calibrate: bool = True,
        timeout: float = 60.0,
        preexec_fn: Callable[[], None] | None = None,
    ) -> SessionResult:
        """`laserctl session --json` on the fast plan for `area`, the shot log at `db`
        (calibrated first, through `laserctl calibrate`, unless told not to or done)."""
        args = self.session_args(
            db,
            area,
            script,
            max_pulses=max_pulses,
            patient=patient,
            resume=resume,
            calibrate=calibrate,
        )
        start = time.monotonic()
        done = self.laserctl(*args, timeout=timeout, preexec_fn=preexec_fn)
        elapsed = time.monotonic() - start
        data: dict[str, Any] = json.loads(done.stdout) if done.stdout.strip() else {}
        return SessionResult(done.returncode, data, done.stderr, elapsed)

    def start_session(
        self, db: Path, area: str, script: str, *, max_pulses: int = 12, patient: str = PATIENT
    ) -> subprocess.Popen[str]:
        """`laserctl session` in the background (to be killed)."""
        args = self.session_args(
            db, area, script, max_pulses=max_pulses, patient=patient, resume=False
        )
        return subprocess.Popen(
            [*LASERCTL, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env=self.env,
        )

    def counter_after(self, result: SessionResult) -> int:
        """The device's shot counter after a session: asked over the link when the device
        outlives the session's process, else what the session read from it last."""
        if self.persistent:
            return self.counter()
        return int(result.data["shots_fired"])


def plan_toml(handpiece: str, area: str, max_pulses: int, ready_delay_s: float) -> str:
    """A fast plan: the built-in plan's windows at the handpiece's fastest rate, a small pulse
    budget, a short ready delay. Sessions last seconds, not the minutes of a real one."""
    rate = FAST_RATE_HZ[handpiece]
    params: dict[str, tuple[float, float, float]]
    if handpiece == "fractional-1550":
        params = {
            "energy_mj": (12, 16, 12),
            "density_pct": (5, 10, 8),
            "depth_um": (400, 1000, 600),
            "passes": (2, 3, 2),
            "rep_rate_hz": (1, rate, rate),
        }
    else:
        params = {
            "fluence_j_cm2": (75, 100, 75),
            "pulse_ms": (15, 15, 15),
            "spot_mm": (5, 5, 5),
            "rep_rate_hz": (0.5, rate, rate),
        }
    lines = [
        f'plan_id = "hil-{handpiece}-{area}"',
        f'handpiece = "{handpiece}"',
        f'area = "{area}"',
        f"max_pulses = {max_pulses}",
        f"max_fluence_j_cm2 = {max_pulses * 200}",
        f"ready_delay_s = {ready_delay_s}",
        'source = "hil_tests: the built-in windows at the fastest rate, a small budget"',
    ]
    for name, (lo, hi, default) in params.items():
        lines += [f"[params.{name}]", f"min = {lo}", f"max = {hi}", f"default = {default}"]
    return "\n".join(lines) + "\n"


# ---- the shot log -----------------------------------------------------------------------------
@dataclass(frozen=True)
class StoredShot:
    serial: str
    boot_id: int
    shot_no: int
    session: str
    replayed: bool
    device_us: int


def stored_shots(db: Path) -> list[StoredShot]:
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(
            "SELECT s.serial, s.boot_id, s.shot_no, x.session,"
            " json_extract(s.body, '$.replayed'), s.device_us"
            " FROM shots s JOIN sessions x ON x.id = s.session_ref ORDER BY s.id"
        ).fetchall()
    finally:
        conn.close()
    return [
        StoredShot(str(a), int(b), int(c), str(d), bool(e), int(f)) for a, b, c, d, e, f in rows
    ]


def events(
    db: Path, kind: str | None = None, *, session: str | None = None
) -> list[dict[str, Any]]:
    """The event records (their bodies), of one kind and one session if given."""
    sql = "SELECT e.body FROM events e LEFT JOIN sessions x ON x.id = e.session_ref"
    sql += " WHERE (? IS NULL OR e.kind = ?) AND (? IS NULL OR x.session = ?) ORDER BY e.id"
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        rows = conn.execute(sql, (kind, kind, session, session)).fetchall()
    finally:
        conn.close()
    return [json.loads(body) for (body,) in rows]


def wait_for_shots(db: Path, at_least: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(sqlite3.Error):
            if len(stored_shots(db)) >= at_least:
                return
        time.sleep(0.05)
    raise AssertionError(f"fewer than {at_least} shots in the log after {timeout} s")


def check_log(
    db: Path,
    dut: Dut,
    *,
    first: int,
    last: int,
    sessions: Iterable[str] | None = None,
) -> list[StoredShot]:
    """The shot log holds exactly the device's shots first+1..last (its own counter), each
    once, none missing, in the given sessions; and every hash chain verifies."""
    from laserctl.records import open_store

    shots = [s for s in stored_shots(db) if s.serial == dut.serial]
    numbers = sorted(s.shot_no for s in shots)
    assert len(numbers) == len(set(numbers)), f"a shot stored twice: {numbers}"
    assert numbers == list(range(first + 1, last + 1)), (
        f"the log holds shots {summarise(numbers)}; the device counter went {first} -> {last}"
    )
    if sessions is not None:
        assert {s.session for s in shots} <= set(sessions)
    store = open_store(db, readonly=True)
    try:
        report = store.verify()
        assert report.ok, report.to_json()
    finally:
        store.close()
    return shots


def summarise(numbers: list[int]) -> str:
    if not numbers:
        return "none"
    runs: list[str] = []
    start = prev = numbers[0]
    for n in [*numbers[1:], None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        runs.append(f"{start}..{prev}" if prev != start else str(start))
        if n is not None:
            start = prev = n
    return ", ".join(runs)
