"""A full disk or a read-only database: emission stops (FAULT), what is stored stays intact, and
the message says what happened and where (SR-10, SR-11).

A size-limited database (PRAGMA max_page_count) fails with SQLITE_FULL exactly as a full disk
does; PRAGMA query_only fails writes with SQLITE_READONLY as a read-only file system does."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from pathlib import Path

import pytest

from drivers.protocol import Param
from drivers.sim import SimulatedHandpiece
from laserctl.controller.core import Controller
from laserctl.controller.events import ConfirmEyewear, Connect, RequestArm
from laserctl.controller.runner import ControllerRunner
from laserctl.controller.table import State
from laserctl.plan import FRACTIONAL_CONSERVATIVE, ParamWindow
from laserctl.records import (
    RecordStore,
    ShotContext,
    StoreFull,
    StoreReadOnly,
    controller_context,
    open_store,
)

from .shots import shot

# How long to wait for the controller to get somewhere: liveness only (it takes well under a
# second); generous, because a loaded CI machine can stall a thread for seconds.
WAIT_S = 10.0
CONTEXT = ShotContext("FR-00001", "fractional-1550", "1.4.0", "plan", "00" * 32, ())
PLAN = dataclasses.replace(
    FRACTIONAL_CONSERVATIVE,
    ready_delay_s=0.05,
    windows={**FRACTIONAL_CONSERVATIVE.windows, Param.REP_RATE_HZ: ParamWindow(1.0, 15.0, 15.0)},
)


def limit_to_current_size(store: RecordStore) -> None:
    pages = store.query("PRAGMA page_count")[0][0]
    store.query(f"PRAGMA max_page_count = {pages}")


@pytest.mark.req("SR-11")
def test_a_full_database_refuses_the_whole_batch_and_keeps_what_was_stored(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "log.db", tz=dt.UTC)
    sid = store.begin_session("P-0001", "abdomen", context=lambda: CONTEXT)
    store.record_many(shot(sid, n) for n in range(1, 51))
    limit_to_current_size(store)
    with pytest.raises(StoreFull) as excinfo:
        store.record_many(shot(sid, n) for n in range(51, 551))
    message = str(excinfo.value)
    assert str(tmp_path / "log.db") in message and "full" in message
    assert "shots 51..550" in message
    assert store.shots_logged(sid) == 50  # all of the failed batch rolled back, none half
    assert store.verify().ok
    with pytest.raises(StoreFull):  # still full: the next batch fails the same way (one shot
        store.record_many(shot(sid, n) for n in range(51, 151))  # may fit a page's slack)
    store.close()
    reopened = open_store(tmp_path / "log.db")  # space again (a new connection, no limit)
    reopened.attach(sid, lambda: CONTEXT)
    reopened.record(shot(sid, 51))
    assert reopened.shots_logged(sid) == 51 and reopened.verify().ok
    reopened.close()


@pytest.mark.req("SR-11")
def test_a_database_that_turns_read_only_says_so(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.db")
    sid = store.begin_session("P-0001", "abdomen", context=lambda: CONTEXT)
    store.record(shot(sid, 1))
    store.query("PRAGMA query_only = ON")
    with pytest.raises(StoreReadOnly, match="read-only"):
        store.record(shot(sid, 2))
    store.query("PRAGMA query_only = OFF")
    assert store.shots_logged(sid) == 1 and store.verify().ok


def _sim(runner: ControllerRunner) -> SimulatedHandpiece:
    assert runner._connection is not None and runner._connection.transport is not None
    sim: SimulatedHandpiece = runner._connection.transport.simulator  # type: ignore[attr-defined]
    return sim


@pytest.mark.req("SR-10")
@pytest.mark.req("SR-11")
def test_the_disk_filling_mid_burst_stops_emission_and_keeps_the_log_consistent(
    tmp_path: Path,
) -> None:
    store = open_store(tmp_path / "log.db")
    sid = store.new_session_id()
    controller = Controller(PLAN, session_id=sid)
    store.begin_session("P-0001", "abdomen", session_id=sid, context=controller_context(controller))
    runner = ControllerRunner("sim:fractional-1550", controller, store=store)
    runner.start()
    try:
        runner.submit(Connect())
        runner.sync()
        assert runner.wait_for(lambda s: s.state is State.STANDBY and not s.awaiting, WAIT_S)
        runner.submit(ConfirmEyewear())
        runner.submit(RequestArm())
        assert runner.wait_for(lambda s: s.state is State.READY, WAIT_S)
        sim = _sim(runner)
        runner.sim_control("press")
        assert runner.wait_for(lambda s: s.shots_seen >= 5, WAIT_S)
        runner.call(lambda _c: limit_to_current_size(store))  # between two shots
        snap = runner.wait_for(lambda s: s.state is State.FAULT, WAIT_S)
        assert snap is not None, runner.snapshot
        cause = " ".join(snap.causes)
        assert "StoreFull" in cause and str(tmp_path / "log.db") in cause and "full" in cause
        time.sleep(0.1)
        assert not sim.emission and sim.state.name in ("IDLE", "FAULT")
        stored = store.shots_logged(sid)
        assert stored >= 5
        # The device keeps every shot the log does not hold: nothing was acknowledged past it.
        assert min(s.shot_no for s in sim.unacked) <= stored + 1
        assert sim.shot_no == stored + len([s for s in sim.unacked if s.shot_no > stored])
    finally:
        runner.close()
    assert store.verify().ok
    numbers = [r[0] for r in store.query("SELECT shot_no FROM shots ORDER BY id")]
    assert numbers == list(range(1, len(numbers) + 1))
    store.close()
