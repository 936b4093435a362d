"""The shot log's store: durability settings, exactly-once shots, events, calibrations,
sessions, and errors that name the database (SR-11)."""

from __future__ import annotations

import datetime as dt
import json
import math
import sqlite3
import tempfile
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from drivers.protocol import Param
from laserctl.records import (
    RecordError,
    RecordStore,
    ShotContext,
    StoreReadOnly,
    UnknownRecord,
    open_store,
)
from laserctl.records.schema import SCHEMA_VERSION
from laserctl.shotrecord import ShotRecord

CONTEXT = ShotContext(
    serial="FR-00001",
    handpiece="fractional-1550",
    firmware="1.4.0",
    profile_id="builtin-fractional-1550-conservative",
    profile_hash="ab" * 32,
    interlocks=(("key", "closed"), ("door", "closed"), ("eyewear", "closed")),
)
DAY = 86_400.0


class Clock:
    def __init__(self, now: float = 1_790_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def shot(
    session: str,
    n: int,
    *,
    boot: int = 7,
    replayed: bool = False,
    counted: bool = True,
    measured: float = 11.9,
    area: str = "abdomen",
) -> ShotRecord:
    return ShotRecord(
        session=session,
        plan_id=CONTEXT.profile_id,
        area=area,
        boot_id=boot,
        shot_no=n,
        device_time_us=n * 66_000,
        dose_param=Param.ENERGY_MJ,
        set_value=12.0,
        measured_value=measured,
        pulse_us=1800,
        params=((Param.ENERGY_MJ, 12.0), (Param.DENSITY_PCT, 8.0)),
        replayed=replayed,
        counted=counted,
        fluence_j_cm2=0.5 if counted else 0.0,
        received_at=0.0,
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(tmp_path: Path, clock: Clock) -> RecordStore:
    return open_store(tmp_path / "log.db", clock=clock, tz=dt.UTC)


def begin(store: RecordStore, patient: str = "P-0001", area: str = "abdomen") -> str:
    return store.begin_session(patient, area, context=lambda: CONTEXT)


def test_a_new_database_is_migrated_and_durable(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "log.db"
    store = open_store(path)
    store.close()
    db = sqlite3.connect(path)
    assert db.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"patients", "courses", "areas", "sessions", "shots", "events", "calibrations"} <= (
        tables
    )
    # synchronous is per connection: the store's own connection runs FULL
    store = open_store(path)
    assert store.query("PRAGMA synchronous")[0][0] == 2  # FULL
    store.close()


def test_the_default_location_is_the_user_data_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    store = open_store()
    assert store.path == tmp_path / "data" / "laserctl" / "laserctl.db"
    assert store.path.exists()
    store.close()


@pytest.mark.req("SR-11")
def test_every_shot_is_stored_once_with_what_sr11_asks(store: RecordStore) -> None:
    sid = begin(store)
    store.record(shot(sid, 1))
    store.record(shot(sid, 1))  # the same shot again (a replay seen live too)
    assert store.record_many([shot(sid, n) for n in range(2, 12)]) == 10
    assert store.record_many([shot(sid, n, replayed=True) for n in range(5, 13)]) == 1
    assert store.shots_logged(sid) == 12
    (body,) = store.query("SELECT body FROM shots WHERE shot_no = 3")[0]
    row = json.loads(body)
    contexts = {
        int(i): json.loads(v)
        for i, v in store.query("SELECT id, json_extract(body, '$.value') FROM contexts")
    }
    assert row["serial"] == "FR-00001" and row["boot"] == 7 and row["shot"] == 3
    assert row["device_us"] == 3 * 66_000 and row["host_time"] == pytest.approx(1_790_000_000)
    assert row["session"] == store.session(sid).ref and row["area"] == store.session(sid).area_ref
    assert contexts[row["profile"]] == {"id": CONTEXT.profile_id, "hash": CONTEXT.profile_hash}
    assert contexts[row["params"]] == {"energy_mj": 12.0, "density_pct": 8.0}
    assert contexts[row["interlocks"]] == dict(CONTEXT.interlocks)
    assert row["set"] == 12.0 and row["measured"] == 11.9
    assert row["deviation_pct"] == pytest.approx(-0.833, abs=1e-3)
    assert store.verify().ok


@pytest.mark.req("SR-11")
def test_a_counter_reset_is_a_new_epoch_not_a_duplicate(store: RecordStore) -> None:
    sid = begin(store)
    store.record_many([shot(sid, n, boot=7) for n in (1, 2, 3)])
    # the device lost its counter in a reboot: shot 1 again, with a new boot id
    store.record_many([shot(sid, n, boot=8) for n in (1, 2)])
    assert store.shots_logged(sid) == 5
    # a replay after a reboot that kept the counter: same pulse, new boot id: not again
    store.record(shot(sid, 3, boot=9, replayed=True))
    assert store.shots_logged(sid) == 5


def test_a_shot_for_another_area_or_without_context_is_refused(
    store: RecordStore,
) -> None:
    sid = begin(store)
    with pytest.raises(RecordError, match=r"area 'thigh'.*not stored"):
        store.record(shot(sid, 1, area="thigh"))
    other = store.begin_session("P-0002", "thigh")
    with pytest.raises(RecordError, match="no context attached"):
        store.record(shot(other, 1, area="thigh"))
    assert store.shots_logged(sid) == 0


def test_events_and_calibrations_are_chained_and_read_back(store: RecordStore) -> None:
    sid = begin(store)
    first = store.log_event("fault", "door opened", session_id=sid, data={"interlock": "door"})
    second = store.log_event("service", "limits changed", who="svc-anna")
    assert second == first + 1
    a = store.add_calibration("FR-00001", "fractional-1550", "svc-anna", {"fit": [1.0, 0.1]})
    b = store.add_calibration("FR-00001", "fractional-1550", "svc-ben", {"fit": [1.1, 0.0]})
    store.add_calibration("ND-00002", "ndyag-1064", "svc-ben", {"fit": [2.0, 0.0]})
    found = store.calibrations("FR-00001")
    assert [c["id"] for c in found] == [b, a]  # newest first
    assert found[0]["who"] == "svc-ben" and found[0]["fit"] == [1.1, 0.0]
    assert found[0]["stored_at"] == pytest.approx(1_790_000_000)
    kinds = [r[0] for r in store.query("SELECT kind FROM events ORDER BY id")]
    assert kinds.count("service") == 4  # the limit change and three calibrations, with who
    assert store.verify().ok


def test_patients_are_pseudonymous_ids_never_names(store: RecordStore) -> None:
    for bad in ("Jane Doe", "Smith", "", "x" * 70, "P 12"):
        with pytest.raises(RecordError, match="pseudonymous"):
            store.begin_session(bad, "abdomen")
    assert store.query("SELECT count(*) FROM patients")[0][0] == 0


def test_errors_name_the_database_and_are_never_bare_sqlite(tmp_path: Path) -> None:
    path = tmp_path / "not-a-db.db"
    path.write_bytes(b"this is not a database" * 100)
    with pytest.raises(RecordError) as excinfo:
        open_store(path)
    assert str(path) in str(excinfo.value)
    assert not isinstance(excinfo.value, sqlite3.Error)
    with pytest.raises(RecordError, match="no such file"):
        open_store(tmp_path / "missing.db", readonly=True)


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "log.db"
    open_store(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.commit()
    db.close()
    with pytest.raises(RecordError, match="newer than this laserctl"):
        open_store(path)


def test_readers_open_read_only_and_cannot_write(store: RecordStore, tmp_path: Path) -> None:
    sid = begin(store)
    store.record(shot(sid, 1))
    reader = open_store(store.path, readonly=True)
    assert reader.shots_logged(sid) == 1
    with pytest.raises(StoreReadOnly, match="read-only"):
        reader.log_event("info", "no")
    reader.close()


@pytest.mark.req("SR-11")
def test_shots_recovered_after_a_crash_go_to_the_session_that_fired_them(
    store: RecordStore, clock: Clock
) -> None:
    crashed = begin(store, "P-0001")
    store.record_many([shot(crashed, n) for n in (1, 2, 3)])  # then the controller died
    clock.now += 600
    # the next patient's session recovers shots 4..5 that the device still kept
    other = begin(store, "P-0002", "thigh")
    store.record_many([shot(other, n, replayed=True, counted=False, area="thigh") for n in (4, 5)])
    assert store.shots_logged(crashed) == 5
    assert store.shots_logged(other) == 0
    rows = store.query("SELECT json_extract(body, '$.recovered_by') FROM shots WHERE shot_no = 4")
    assert rows[0][0] == store.session(other).ref


@pytest.mark.req("SR-11")
def test_an_interrupted_session_is_resumed_the_same_day_with_its_dose(
    store: RecordStore, clock: Clock
) -> None:
    sid = begin(store)
    store.record_many([shot(sid, n) for n in (1, 2, 3)])
    clock.now += 300
    assert store.interrupted_session("P-0001", "abdomen") == sid
    again = store.begin_session("P-0001", "abdomen", resume=sid, context=lambda: CONTEXT)
    assert again == sid
    store.record_many([shot(sid, n, replayed=True, counted=False) for n in (3, 4)])
    assert store.session_dose(sid) == (4, pytest.approx(1.5))
    store.end_session(sid)
    assert store.interrupted_session("P-0001", "abdomen") is None
    with pytest.raises(RecordError, match="has ended"):
        store.begin_session("P-0001", "abdomen", resume=sid)
    other = begin(store, "P-0003")
    clock.now += DAY
    with pytest.raises(RecordError, match="only a session begun today"):
        store.begin_session("P-0003", "abdomen", resume=other)


def test_unknown_sessions_are_named(store: RecordStore) -> None:
    with pytest.raises(UnknownRecord, match="no session S-nope"):
        store.session("S-nope")


@pytest.mark.req("SR-11")
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_a_non_finite_number_is_refused_with_the_database_named_and_nothing_stored(
    store: RecordStore, bad: float
) -> None:
    sid = begin(store)
    store.record(shot(sid, 1))
    with pytest.raises(RecordError, match=r"log\.db: a shots record not stored: .*only finite"):
        store.record_many([shot(sid, 2), shot(sid, 3, measured=bad)])
    with pytest.raises(RecordError, match=r"a events record not stored: .*only finite"):
        store.log_event("note", "a reading", data={"nested": [1, {"value": bad}]})
    assert store.shots_logged(sid) == 1  # the whole batch refused, the earlier shot kept
    assert store.verify().ok


@pytest.mark.req("SR-11")
@pytest.mark.req("SR-12")
@pytest.mark.parametrize("at", [0, 99, 100, 150, 249])
def test_a_shot_already_stored_inside_a_large_batch_is_skipped_and_the_chain_holds(
    store: RecordStore, at: int
) -> None:
    """Shots go in many to a statement: a duplicate at any place in a batch (first row, last
    row of a statement, first of the next, in the middle, last) is skipped and every other
    row is stored once, chained in order."""
    sid = begin(store)
    batch = [shot(sid, n) for n in range(1, 251)]
    store.record(batch[at])  # stored before, as a live shot (the unique index catches it)
    assert store.record_many(batch) == 249
    assert store.shots_logged(sid) == 250
    numbers = [r[0] for r in store.query("SELECT shot_no FROM shots ORDER BY id")]
    assert numbers == [at + 1] + [n for n in range(1, 251) if n != at + 1]
    assert store.verify().ok


@pytest.mark.req("SR-11")
@pytest.mark.req("SR-12")
@given(
    st.lists(
        st.lists(st.integers(min_value=1, max_value=400), max_size=260),
        min_size=1,
        max_size=5,
    )
)
def test_batches_with_repeated_shots_store_each_once_in_first_seen_order(
    batches: list[list[int]],
) -> None:
    """Any batches of live shots, repeats within a batch and across batches included: each
    shot is stored once, in the order it was first handed over, every batch reports how many
    it added, and the chain verifies (the rows go in many to a statement)."""
    with tempfile.TemporaryDirectory() as tmp:
        store = open_store(Path(tmp) / "log.db", clock=Clock(), tz=dt.UTC)
        sid = begin(store)
        order: list[int] = []
        for batch in batches:
            new = [n for n in dict.fromkeys(batch) if n not in order]
            assert store.record_many([shot(sid, n) for n in batch]) == len(new)
            order += new
        assert [r[0] for r in store.query("SELECT shot_no FROM shots ORDER BY id")] == order
        assert store.verify().ok
        store.close()
