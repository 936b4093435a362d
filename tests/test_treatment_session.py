"""laserctl.session.TreatmentSession: the one treatment session `laserctl session --patient
--area` and the console both run (issue 13): the controller is built with its session settings
(no patching afterwards), a resumed session starts from the dose its shots delivered, and the
profile event names the defaults sent first, from either front end."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from argon2 import PasswordHasher

from drivers.protocol import HandpieceType
from laserctl.console.clinic import Clinic
from laserctl.console.treatment import ConsoleSession
from laserctl.controller.core import training_calibration
from laserctl.plan import builtin_plan
from laserctl.records import RecordStore, open_store
from laserctl.safety.limits import DoseUsed
from laserctl.session import NothingToResume, TreatmentSession, plan_defaults

from .shots import shot
from .test_records_store import CONTEXT

FRACTIONAL = "sim:fractional-1550"
PLAN = dataclasses.replace(
    builtin_plan(HandpieceType.FRACTIONAL_1550),
    area="abdomen",
    extra={"profile_version": "7", "profile_sha256": "ab" * 32, "operator_values": None},
)


def interrupted(store: RecordStore, shots: int) -> str:
    """A session with `shots` logged that never ended (the console or the CLI crashed)."""
    first = TreatmentSession(
        store, FRACTIONAL, PLAN, "P-0001", "abdomen", calibration=training_calibration
    )
    store.attach(first.session_id, lambda: CONTEXT)
    for n in range(1, shots + 1):
        store.record(shot(first.session_id, n))
    first.close()
    return first.session_id


def profile_events(store: RecordStore, session_id: str) -> list[dict[str, object]]:
    rows = store.query(
        "SELECT json_extract(e.body, '$.data') FROM events e JOIN sessions s"
        " ON json_extract(e.body, '$.session') = s.id WHERE s.session = ?"
        " AND json_extract(e.body, '$.kind') = 'info'",
        (session_id,),
    )
    return [json.loads(data) for (data,) in rows if data and "plan_id" in json.loads(data)]


def test_the_controller_is_built_with_the_session_it_belongs_to(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.db")
    session = TreatmentSession(
        store, FRACTIONAL, PLAN, "P-0001", "abdomen", calibration=training_calibration
    )
    try:
        assert session.controller.session_id == session.session_id
        assert store.session(session.session_id).patient == "P-0001"
        assert session.controller.dose == DoseUsed()
        assert not session.controller.count_recovered
        [event] = profile_events(store, session.session_id)
        assert event["defaults"] == plan_defaults(PLAN)
    finally:
        session.close()


def test_a_resumed_session_starts_from_the_dose_of_its_shots(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.db")
    sid = interrupted(store, shots=3)
    resumed = TreatmentSession(
        store, FRACTIONAL, PLAN, "P-0001", "abdomen", calibration=training_calibration, resume=True
    )
    try:
        assert resumed.session_id == sid
        assert resumed.controller.session_id == sid
        assert resumed.controller.dose == DoseUsed(*store.session_dose(sid))
        assert resumed.controller.dose.pulses == 3
        assert resumed.controller.count_recovered  # shots re-read now were fired in it
    finally:
        resumed.close()


def test_nothing_to_resume_is_refused_by_name(tmp_path: Path) -> None:
    store = open_store(tmp_path / "log.db")
    with pytest.raises(NothingToResume, match="no interrupted session today for P-0001 on abdomen"):
        TreatmentSession(
            store,
            FRACTIONAL,
            PLAN,
            "P-0001",
            "abdomen",
            calibration=training_calibration,
            resume=True,
        )


def test_the_console_runs_the_same_session_resume_and_defaults_included(tmp_path: Path) -> None:
    clinic = Clinic(
        tmp_path / "log.db",
        accounts_dir=tmp_path / "config",
        reports_dir=tmp_path / "reports",
        hasher=PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1),
    )
    sid = interrupted(clinic.store, shots=2)
    session = ConsoleSession(
        clinic, FRACTIONAL, PLAN, "P-0001", "abdomen", wake=lambda: None, resume=True
    )
    try:
        assert isinstance(session.treatment, TreatmentSession)
        assert session.session_id == sid
        assert session.runner.controller.dose.pulses == 2
        assert all(e["defaults"] == plan_defaults(PLAN) for e in profile_events(clinic.store, sid))
        assert len(profile_events(clinic.store, sid)) == 2  # the first run's, and the resumed
    finally:
        session.close()
        clinic.close()
