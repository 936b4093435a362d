"""Signed checkpoints of the shot log (SR-12): the note's one text form, its signature, and the
log held to it (truncation and rewrites detected)."""

from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import json
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from laserctl.auth import console_key
from laserctl.records import RecordError, RecordStore, chain, schema
from laserctl.records import checkpoints as cps
from laserctl.records.checkpoints import Checkpoint, CheckpointProblem


def _key(seed: int) -> console_key.ConsoleKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from laserctl.auth import keys

    private = Ed25519PrivateKey.from_private_bytes(bytes([seed]) * 32)
    return console_key.ConsoleKey(keys.key_id(private.public_key()), private)


CONSOLE = _key(1)
OTHER = _key(2)
NOW = dt.datetime(2026, 12, 7, 14, 30, tzinfo=dt.UTC).timestamp()


def empty_log() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:", isolation_level=None)
    schema.migrate(conn)
    return conn


def test_the_note_is_origin_tables_time_key_blank_signature() -> None:
    cp = cps.make(empty_log(), CONSOLE, NOW + 0.25)
    lines = cp.text().split("\n")
    assert lines[0] == f"laserctl/{CONSOLE.console_id}" == cp.origin
    assert [line.split(" ")[0] for line in lines[1:9]] == list(schema.TABLE_NAMES)
    assert lines[1] == "patients 0 " + base64.b64encode(chain.genesis("patients")).decode()
    assert lines[9] == "time 2026-12-07T14:30:00.250000Z" and cp.made_at == lines[9][5:]
    assert lines[10] == f"key {CONSOLE.public_text()}"
    assert lines[11] == "" and lines[13] == "" and len(lines) == 14
    dash, name, stamp = lines[12].split(" ")
    assert (dash, name) == ("\u2014", cp.origin)
    raw = base64.b64decode(stamp)
    assert raw[:4] == cps.key_hash(cp.origin, CONSOLE.public_text()) and raw[4:] == cp.signature
    # the signature is over the body exactly: every line before the blank line
    CONSOLE.private.public_key().verify(cp.signature, "\n".join(lines[:11]).encode() + b"\n")


tables = st.dictionaries(
    st.from_regex(r"[a-z_][a-z0-9_]{0,12}", fullmatch=True).filter(
        lambda t: t not in ("time", "key")
    ),
    st.tuples(st.integers(0, 2**63), st.binary(min_size=32, max_size=32)),
    min_size=1,
    max_size=10,
)


@given(
    tables=tables,
    when=st.floats(0, 4e9, allow_nan=False),
    signature=st.binary(min_size=64, max_size=64),
    seed=st.integers(1, 255),
)
def test_parse_reads_back_exactly_what_text_wrote(
    tables: dict[str, tuple[int, bytes]], when: float, signature: bytes, seed: int
) -> None:
    key = _key(seed)
    cp = Checkpoint(
        f"laserctl/{key.console_id}",
        key.console_id,
        {t: size for t, (size, _) in tables.items()},
        {t: head for t, (_, head) in tables.items()},
        cps.format_time(when),
        key.public_text(),
        signature,
    )
    assert cps.parse(cp.text()) == cp
    assert cps.parse(cp.text()).text() == cp.text()


@given(st.integers(0, 2000), st.integers(0, 255))
def test_any_changed_byte_is_refused_by_parse_or_by_the_signature(at: int, value: int) -> None:
    cp = cps.make(empty_log(), CONSOLE, NOW)
    data = bytearray(cp.text().encode())
    at %= len(data)
    if data[at] == value:
        value ^= 1
    data[at] = value
    try:
        text = data.decode()
        cps.check_signature(cps.parse(text), CONSOLE.public_text())
    except (UnicodeDecodeError, CheckpointProblem):
        return
    pytest.fail(f"a checkpoint with byte {at} changed was accepted:\n{text}")


@pytest.mark.parametrize(
    ("edit", "line", "what"),
    [
        (lambda t: t.replace("laserctl/", "other/", 1), "line 1", "is not 'laserctl/"),
        (lambda t: t.replace("shots 0 ", "shots 01 "), "line 7", "count '01'"),
        (lambda t: t.replace("shots 0 ", "shots -1 "), "line 7", "count '-1'"),
        (lambda t: t.replace("shots 0 q6", "shots 0 !!"), "line 7", "not a SHA-256 hash"),
        (lambda t: t.replace("shots 0 ", "patients 0 "), "line 7", "patients named twice"),
        (lambda t: t.replace("time 2026-12-07T14", "time 2026-13-07T14"), "line 10", "date"),
        (
            lambda t: t.replace("time 2026-12-07T14:30:00.000000Z", "time 2026-12-07"),
            "line 10",
            "time",
        ),
        (lambda t: t.replace("key ed25519 ", "key rsa "), "line 11", "ed25519"),
        (lambda t: t.replace("\n\n", "\n"), "ship.txt", "no blank line"),
        (lambda t: t[:-1], "ship.txt", "newline"),
        (lambda t: t + "\u2014 witness AAAA\n", "line 13", "exactly one signature line"),
        (lambda t: t.replace("\u2014 laserctl/", "\u2014 laserctl/x"), "line 13", "signed by"),
        (lambda t: t[: t.rindex(" ") + 1] + "AAAA\n", "line 13", "4 + 64 bytes"),
    ],
)
def test_a_malformed_checkpoint_is_refused_naming_line_and_what(
    edit: object, line: str, what: str
) -> None:
    text = cps.make(empty_log(), CONSOLE, NOW).text()
    assert callable(edit)
    changed = edit(text)
    assert changed != text
    with pytest.raises(CheckpointProblem) as caught:
        cps.parse(changed, "ship.txt")
    assert caught.value.where.startswith("ship.txt")
    assert line in caught.value.where, caught.value
    assert what in caught.value.what, caught.value


def test_a_forged_or_foreign_signature_is_refused() -> None:
    cp = cps.make(empty_log(), CONSOLE, NOW)
    cps.check_signature(cp)
    cps.check_signature(cp, CONSOLE.public_text())
    # the attacker's edit, re-signed with a key of their own under the console's name
    forged = dataclasses.replace(cp, sizes={**cp.sizes, "shots": 5})
    with pytest.raises(CheckpointProblem, match="forged or altered"):
        cps.check_signature(forged)
    borrowed = dataclasses.replace(
        forged,
        public_key=OTHER.public_text(),
        signature=OTHER.sign(
            dataclasses.replace(forged, public_key=OTHER.public_text()).body().encode()
        ),
    )
    with pytest.raises(CheckpointProblem, match="is not console"):
        cps.check_signature(borrowed)
    # a genuine checkpoint of another console is no checkpoint of this log
    foreign = cps.make(empty_log(), OTHER, NOW)
    cps.check_signature(foreign)
    with pytest.raises(CheckpointProblem, match=f"made by console {OTHER.console_id}, not by"):
        cps.check_signature(foreign, CONSOLE.public_text())


def _log_with(rows: int) -> sqlite3.Connection:
    conn = empty_log()
    last = chain.genesis("events")
    for n in range(1, rows + 1):
        body = f'{{"n":{n}}}'
        digest = chain.link(last, body)
        conn.execute(
            "INSERT INTO events (id, prev, hash, body) VALUES (?, ?, ?, ?)", (n, last, digest, body)
        )
        last = digest
    return conn


def test_check_log_passes_the_log_it_was_made_of_and_one_grown_since() -> None:
    conn = _log_with(5)
    cp = cps.make(conn, CONSOLE, NOW)
    assert cp.sizes["events"] == 5 and cp.sizes["shots"] == 0
    assert cps.check_log(conn, cp) == []
    grown = _log_with(9)
    assert cps.check_log(grown, cp) == []


def test_check_log_names_a_truncated_table_and_its_missing_rows() -> None:
    cp = cps.make(_log_with(5), CONSOLE, NOW)
    (problem,) = cps.check_log(_log_with(3), cp)
    assert (problem.table, problem.row_id) == ("events", 4)
    assert problem.what.startswith("deleted: rows 4..5 are gone")
    assert "signed 5 records, the log holds 3 (truncated)" in problem.what
    assert cp.made_at in problem.what
    (problem,) = cps.check_log(_log_with(4), cp)
    assert problem.what.startswith("deleted: row 5 is gone")


def test_check_log_names_a_rewritten_chain() -> None:
    cp = cps.make(_log_with(5), CONSOLE, NOW)
    rewritten = empty_log()
    last = chain.genesis("events")
    for n in range(1, 6):
        body = f'{{"n":{n if n != 2 else 20}}}'  # row 2 changed, every hash after recomputed
        digest = chain.link(last, body)
        rewritten.execute(
            "INSERT INTO events (id, prev, hash, body) VALUES (?, ?, ?, ?)", (n, last, digest, body)
        )
        last = digest
    (problem,) = cps.check_log(rewritten, cp)
    assert (problem.table, problem.row_id) == ("events", 5)
    assert problem.what.startswith("rewritten: row 5 no longer hashes to what the checkpoint")


def test_check_log_reads_the_chain_heads_of_a_database_or_a_transaction(tmp_path: Path) -> None:
    from laserctl.records import open_store

    store = open_store(tmp_path / "log.db", tz=dt.UTC)
    store.log_event("info", "one")
    store.log_event("info", "two")
    conn = sqlite3.connect(tmp_path / "log.db")
    from_rows = cps.make(conn, CONSOLE, NOW)
    from_heads = cps.make(store._db, CONSOLE, NOW)  # the Database as a HeadSource
    assert from_rows == from_heads and from_rows.sizes["events"] == 2
    conn.close()
    store.close()


def test_a_checkpoint_naming_an_unknown_table_says_so() -> None:
    cp = cps.make(empty_log(), CONSOLE, NOW)
    odd = dataclasses.replace(
        cp, sizes={**cp.sizes, "invoices": 1}, heads={**cp.heads, "invoices": bytes(32)}
    )
    (problem,) = cps.check_log(empty_log(), odd)
    assert problem.table == "invoices" and "names a table this log does not have" in problem.what


# ---- stored in the log: at every session end, on request ----------------------------------


def _store(path: Path, key: console_key.ConsoleKey | None = CONSOLE) -> RecordStore:
    from laserctl.records import open_store

    return open_store(path, tz=dt.UTC, console_key=(lambda: key) if key else None)


def _session(store: RecordStore) -> str:
    from laserctl.records import ShotContext

    context = ShotContext("FR-1", "fractional-1550", "1.4.0", "plan", "ef" * 32, ())
    return store.begin_session("P-0007", "thigh", context=lambda: context)


def _session_end(path: Path) -> dict[str, object]:
    conn = sqlite3.connect(path)
    (body,) = conn.execute(
        "SELECT body FROM events WHERE kind = 'session_end' ORDER BY id DESC LIMIT 1"
    ).fetchone()
    conn.close()
    data = json.loads(body)["data"]
    assert isinstance(data, dict)
    return data


@pytest.mark.req("SR-12")
def test_every_session_end_stores_a_checkpoint_covering_it(tmp_path: Path) -> None:
    store = _store(tmp_path / "log.db")
    assert store.checkpoints() == []
    first = _session(store)
    store.end_session(first, {"reason": "done"})
    second = _session(store)
    store.end_session(second)
    found = store.checkpoints()
    assert len(found) == 2 and all(cp.console_id == CONSOLE.console_id for cp in found)
    for cp in found:
        cps.check_signature(cp, CONSOLE.public_text())
    conn = sqlite3.connect(tmp_path / "log.db")
    ends = [i for (i,) in conn.execute("SELECT id FROM events WHERE kind = 'session_end'")]
    conn.close()
    assert [cp.sizes["events"] for cp in found] == ends  # each covers its session end
    assert found[1].sizes["sessions"] == 2
    assert _session_end(tmp_path / "log.db") == {"shots_logged": 0, "checkpoint": True}
    report = store.verify()
    assert report.ok and report.checkpoints == 2, report.problems
    store.close()


def test_the_default_key_is_the_console_key_in_the_config_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LASERCTL_CONFIG_DIR", str(tmp_path / "config"))
    store = _store(tmp_path / "log.db", key=None)
    store.end_session(_session(store))
    (cp,) = store.checkpoints()
    store.close()
    assert (
        cp.console_id
        == console_key.load_or_create(tmp_path / "config" / "console-key.pem").console_id
    )


def test_without_a_usable_key_the_session_end_is_stored_saying_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "config"
    config.mkdir()
    (config / "console-key.pem").write_text("garbage\n")
    monkeypatch.setenv("LASERCTL_CONFIG_DIR", str(config))
    store = _store(tmp_path / "log.db", key=None)
    sid = _session(store)
    assert store.end_session(sid) == 0
    assert store.checkpoints() == []
    data = _session_end(tmp_path / "log.db")
    assert data["checkpoint"] is False
    assert str(config / "console-key.pem") in str(data["checkpoint_problem"])
    assert store.verify().ok  # nothing was claimed, nothing is missing
    store.close()


def test_a_checkpoint_that_cannot_be_stored_does_not_lose_the_session_end(tmp_path: Path) -> None:
    store = _store(tmp_path / "log.db")
    sid = _session(store)
    conn = sqlite3.connect(tmp_path / "log.db")
    conn.execute("DROP TABLE checkpoints")  # or anything else that makes the INSERT fail
    conn.commit()
    conn.close()
    store.end_session(sid)
    data = _session_end(tmp_path / "log.db")
    assert data["checkpoint"] is False
    assert "no such table: checkpoints" in str(data["checkpoint_problem"])
    report = store.verify()  # the chain is whole: the failed attempt left nothing behind
    expected = [
        "table: schema: checkpoints missing",
        "trigger: schema: checkpoints_no_delete missing",
        "trigger: schema: checkpoints_no_update missing",
    ]
    assert sorted(str(p) for p in report.problems) == expected
    store.log_event("info", "after")  # the chain goes on from the session end
    assert sorted(str(p) for p in store.verify().problems) == expected
    store.close()


def test_a_checkpoint_on_request_covers_the_log_as_it_is(tmp_path: Path) -> None:
    store = _store(tmp_path / "log.db")
    store.log_event("info", "one")
    made = store.checkpoint()
    assert made.sizes["events"] == 1 and store.checkpoints() == [made]
    store.close()
    readonly = open_store_readonly(tmp_path / "log.db")
    assert readonly.checkpoints() == [made]
    with pytest.raises(RecordError, match="read-only"):
        readonly.checkpoint()
    readonly.close()


def test_a_log_from_before_checkpoints_is_migrated_and_verifies(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in schema.MIGRATIONS[0]:
        conn.execute(statement)
    conn.execute("PRAGMA user_version = 1")
    conn.close()
    store = _store(path)
    store.end_session(_session(store))
    assert len(store.checkpoints()) == 1
    report = store.verify()
    assert report.ok and report.checkpoints == 1, report.problems
    store.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == schema.SCHEMA_VERSION >= 2
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        conn.execute("DELETE FROM checkpoints")
    conn.close()


def open_store_readonly(path: Path) -> RecordStore:
    from laserctl.records import open_store

    return open_store(path, readonly=True)
