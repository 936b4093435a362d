"""The shot log behind the running controller (in process, simulated handpiece): every shot
stored with its handpiece, profile and interlock snapshot; the JSON-lines event stream and the
events table carry the same events."""

from __future__ import annotations

import dataclasses
import io
import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from drivers.protocol import Param
from laserctl.controller.core import Controller
from laserctl.controller.events import ConfirmEyewear, Connect, RequestArm
from laserctl.controller.runner import ControllerRunner
from laserctl.controller.table import State
from laserctl.logging import EventStream, json_lines
from laserctl.plan import FRACTIONAL_CONSERVATIVE, ParamWindow
from laserctl.records import controller_context, open_store, profile_hash

PLAN = dataclasses.replace(
    FRACTIONAL_CONSERVATIVE,
    ready_delay_s=0.05,
    windows={**FRACTIONAL_CONSERVATIVE.windows, Param.REP_RATE_HZ: ParamWindow(1.0, 15.0, 15.0)},
)


@pytest.mark.req("SR-11")
def test_a_burst_is_logged_shot_by_shot_with_its_context_and_events(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.db")
    sid = store.new_session_id()
    controller = Controller(PLAN, session_id=sid)
    context = controller_context(controller)
    store.begin_session("P-0001", "abdomen", session_id=sid, context=context)
    lines = io.StringIO()
    stream = EventStream(store, sid, log=json_lines(lines, patient="P-0001"), context=context)
    runner = ControllerRunner("sim:fractional-1550", controller, store=store)
    runner.on_note = stream.on_note
    runner.start()
    try:
        runner.submit(Connect())
        runner.sync()
        assert runner.wait_for(lambda s: s.state is State.STANDBY and not s.awaiting, 3.0)
        runner.submit(ConfirmEyewear())
        runner.submit(RequestArm())
        assert runner.wait_for(lambda s: s.state is State.READY, 3.0)
        runner.sim_control("press")
        assert runner.wait_for(lambda s: s.shots_seen >= 6, 3.0)
        runner.sim_control("release")
        runner.disarm()
        assert runner.wait_for(lambda s: s.state is State.STANDBY, 3.0)
        time.sleep(0.1)
        report = runner.report()
    finally:
        runner.close()
    logged = store.end_session(sid, {"final_state": report["final_state"]})
    assert logged == report["shots_seen"] == report["shots_fired"] >= 6

    from laserctl.records.export import session_data

    data = session_data(store, sid)
    serial = data.header()["serial"]
    assert serial and data.header()["profile_hash"] == profile_hash(PLAN)
    for shot in data.shots:
        assert shot["serial"] == serial and shot["profile_id"] == PLAN.plan_id
        assert shot["profile_hash"] == profile_hash(PLAN)
        assert shot["interlocks"]["door"] == "closed" and shot["interlocks"]["eyewear"] == "closed"
        assert set(shot["params"]) == {p.field_name for p in PLAN.windows}
        assert abs(shot["deviation_pct"]) < 10
    # the handpiece was logged before the first shot
    kinds = [e["kind"] for e in data.events]
    assert kinds.index("handpiece") < kinds.index("emission")
    # the same events in the JSON lines and in the log, with the session bound
    json_events = [json.loads(line) for line in lines.getvalue().splitlines()]
    assert all(e["session_id"] == sid and e["patient"] == "P-0001" for e in json_events)
    stored = [
        (e["kind"], e["message"]) for e in data.events if e["kind"] in ("transition", "emission")
    ]
    streamed = [
        (e["kind"], e["event"]) for e in json_events if e["kind"] in ("transition", "emission")
    ]
    assert stored == streamed and ("transition", "READY -> EMITTING (emission_started)") in stored
    assert store.verify().ok


def test_help_imports_neither_structlog_nor_the_shot_log() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from laserctl.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0; "
        "print(sorted(m for m in sys.modules if m.startswith(('structlog', 'laserctl.records', "
        "'platformdirs', 'sqlite3'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
