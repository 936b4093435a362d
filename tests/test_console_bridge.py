"""The console's parts without a screen: the bridge never makes the controller wait, every
latched cause has advice, the course check, and `laserctl --help` stays free of textual."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from laserctl.console.bridge import ControllerBridge
from laserctl.console.clinic import Clinic, ClinicError
from laserctl.console.guidance import _INTERLOCK, advise
from laserctl.console.view import CauseView
from laserctl.controller.core import CauseKind, Controller
from laserctl.controller.events import ConfirmEyewear, Connect, RequestArm
from laserctl.controller.runner import ControllerRunner
from laserctl.controller.shots import MemoryShotStore
from laserctl.controller.table import State
from laserctl.safety.interlocks import SPECS, Effect
from laserctl.shotrecord import ShotRecord


def test_a_burst_of_changes_costs_one_wake_up_and_the_console_takes_the_newest_view() -> None:
    """Until the console takes a view, the controller's changes only replace the newest one:
    a busy interface is woken once, never queued up behind."""
    wakes: list[float] = []

    def wake() -> None:
        wakes.append(time.monotonic())

    runner = ControllerRunner("sim:fractional-1550", Controller(session_id="bridge"))
    bridge = ControllerBridge(runner, wake)

    class Tapped(MemoryShotStore):  # the console taps its writer the same way
        def record(self, shot: ShotRecord) -> None:
            super().record(shot)
            bridge.on_shot(shot)

    runner.store = Tapped()
    runner.on_note = bridge.on_note
    bridge.attach()
    runner.start()
    try:
        runner.submit(Connect())
        assert runner.wait_for(lambda s: s.state is State.STANDBY and s.params_confirmed, 3.0)
        assert len(wakes) == 1  # many changes so far, nobody took a view: one wake-up
        runner.submit(ConfirmEyewear())
        runner.submit(RequestArm())
        assert runner.wait_for(lambda s: s.state is State.READY, 3.0)
        runner.sim_control("press")
        assert runner.wait_for(lambda s: s.shots_seen >= 2, 3.0)
        runner.sim_control("release")
        runner.disarm()
        assert runner.wait_for(lambda s: s.state is State.STANDBY and not s.awaiting, 3.0)
        assert len(wakes) == 1
        runner.sync()
        view = bridge.take()
        assert view is not None and view.snapshot.seq == runner.snapshot.seq
        assert len(view.shots) == view.snapshot.shots_seen >= 2
        assert all(abs(p.deviation_pct) < 10 for p in view.shots)
        assert any("READY" in line for line in view.log)
        runner.submit(ConfirmEyewear())
        runner.submit(RequestArm())
        assert runner.wait_for(lambda s: s.state is State.READY, 3.0)
        assert len(wakes) == 2  # taken once: woken again at the next change
    finally:
        runner.close()


def test_estop_from_the_bridge_goes_to_the_wire_on_its_own_thread() -> None:
    runner = ControllerRunner("sim:ndyag-1064", Controller(session_id="bridge"))
    bridge = ControllerBridge(runner, lambda: None)
    bridge.attach()
    runner.start()
    try:
        runner.submit(Connect())
        assert runner.wait_for(lambda s: s.state is State.STANDBY, 3.0)
        caller = threading.get_ident()
        seen: list[int] = []
        original = runner.estop

        def spy() -> None:
            seen.append(threading.get_ident())
            original()

        runner.estop = spy  # type: ignore[method-assign]
        bridge.estop()
        assert runner.wait_for(lambda s: s.state is State.ESTOP, 2.0)
        assert seen and seen[0] != caller
    finally:
        runner.close()


@pytest.mark.parametrize("kind", list(CauseKind))
def test_every_kind_of_latched_cause_has_advice_with_a_reset(kind: CauseKind) -> None:
    advice = advise(CauseView(str(kind), "x"))
    assert advice.title != "Fault" and advice.todo and advice.reset


@pytest.mark.parametrize("spec", [s for s in SPECS.values() if s.effect is Effect.FAULT])
def test_every_interlock_that_latches_has_its_own_advice(spec: object) -> None:
    ident = str(getattr(spec, "id"))  # noqa: B009
    assert ident in _INTERLOCK
    assert advise(CauseView("interlock", "x", ident)) is _INTERLOCK[ident]


def test_the_course_check_counts_treated_sessions_and_names_the_next_day(tmp_path: Path) -> None:
    from drivers.protocol import Param
    from laserctl.records import ShotContext
    from laserctl.shotrecord import ShotRecord

    day = 86400.0
    now = [1_790_000_000.0]
    clinic = Clinic(tmp_path / "log.db", clock=lambda: now[0])
    context = ShotContext("FX-1", "fractional-1550", "1", "p", "0" * 64, ())
    store = clinic.store
    sid = store.begin_session("P-0001", "chest", context=lambda: context)
    store.record(
        ShotRecord(sid, "p", "chest", 1, 1, 0, Param.ENERGY_MJ, 14, 14, 1, (), False, True, 6.5, 0)
    )
    store.end_session(sid)
    now[0] += 3 * day
    check = clinic.course_check("P-0001", "chest")
    assert (check.course, check.sessions_on_area, check.course_pulses) == (1, 1, 1)
    assert not check.ok and "21 days" in check.reasons[0]
    assert check.next_allowed > check.last_session
    assert clinic.course_check("P-0001", "thighs").ok
    assert clinic.course_check("P-0002", "chest").next_allowed == "any day"
    with pytest.raises(ClinicError, match="pseudonymous"):
        clinic.course_check("Jane Doe", "chest")


def test_help_and_the_console_command_list_do_not_import_textual() -> None:
    code = (
        "import sys; from click.testing import CliRunner; from laserctl.cli import main; "
        "r = CliRunner().invoke(main, ['--help']); assert r.exit_code == 0, r.output; "
        "assert 'console' in r.output; "
        "r = CliRunner().invoke(main, ['console', '--help']); assert r.exit_code == 0; "
        "assert 'Esc' in r.output; "
        "print(sorted(m for m in sys.modules if m.startswith(('textual', 'rich'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


def test_the_operator_guide_gives_every_fault_its_advice() -> None:
    from laserctl.console.guidance import _ANY_INTERLOCK, _KIND

    guide = (Path(__file__).resolve().parent.parent / "docs" / "operator-guide.md").read_text(
        encoding="utf-8"
    )
    for advice in {*_INTERLOCK.values(), *_KIND.values(), _ANY_INTERLOCK}:
        assert f"| {advice.title} | {advice.todo} |" in guide, advice.title
