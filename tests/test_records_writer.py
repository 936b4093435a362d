"""Group commit: many shots per transaction on the writer's thread; a ticket is reported
durable only after its commit; a failure is reported, sticky, and loses nothing stored."""

from __future__ import annotations

from pathlib import Path

import pytest

from laserctl.records import RecordError, RecordStore, ShotContext, StoreFull, open_store
from laserctl.records.writer import GroupCommitWriter

from .shots import shot

CONTEXT = ShotContext("FR-00001", "fractional-1550", "1.4.0", "plan", "11" * 32, ())


@pytest.fixture
def store(tmp_path: Path) -> RecordStore:
    return open_store(tmp_path / "log.db")


@pytest.mark.req("SR-11")
def test_a_burst_is_committed_in_few_transactions_and_reported_durable(
    store: RecordStore,
) -> None:
    sid = store.begin_session("P-0001", "abdomen", context=lambda: CONTEXT)
    reported: list[int] = []
    durable_when_reported: list[int] = []

    def on_durable(ticket: int) -> None:
        durable_when_reported.append(store.shots_logged(sid))
        reported.append(ticket)

    writer = GroupCommitWriter(store, on_durable=on_durable)
    # Hold the store (as a slow disk would) so the burst queues up behind the first commit.
    with store._lock:
        tickets = [writer.submit_shot(shot(sid, n)) for n in range(1, 301)]
        writer.submit_event("emission", "emission stopped", session_id=sid)
    writer.flush()
    writer.close()
    assert tickets == list(range(1, 301))
    assert store.shots_logged(sid) == 300
    assert writer.commits <= 3, writer.commits
    assert reported[-1] == 301
    # on_durable saw every shot of its ticket already stored: nothing reported early
    assert all(
        stored >= min(t, 300) for t, stored in zip(reported, durable_when_reported, strict=True)
    )
    assert store.verify().ok


@pytest.mark.req("SR-11")
def test_a_failed_commit_is_reported_and_sticky(store: RecordStore) -> None:
    sid = store.begin_session("P-0001", "abdomen", context=lambda: CONTEXT)
    errors: list[RecordError] = []
    writer = GroupCommitWriter(store, on_error=errors.append)
    for n in range(1, 11):
        writer.submit_shot(shot(sid, n))
    writer.flush()
    pages = store.query("PRAGMA page_count")[0][0]
    store.query(f"PRAGMA max_page_count = {pages}")
    last = 0
    for n in range(11, 600):
        try:
            last = writer.submit_shot(shot(sid, n))
        except StoreFull:
            break
    with pytest.raises(StoreFull):
        writer.wait(last, timeout=5.0)
    assert len(errors) == 1 and isinstance(errors[0], StoreFull)
    with pytest.raises(StoreFull):  # sticky: nothing more is taken
        writer.submit_shot(shot(sid, 1000))
    assert writer.durable < last
    writer.close()
    logged = store.shots_logged(sid)
    assert 10 <= logged < 600
    numbers = [r[0] for r in store.query("SELECT shot_no FROM shots ORDER BY id")]
    assert numbers == list(range(1, logged + 1))
    assert store.verify().ok
