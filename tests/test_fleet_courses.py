"""The course rules across consoles against a real PostgreSQL (issue 14, SR-18, SR-19): two
consoles' shot logs shipped to one central store; a console asks it before a session starts,
refuses what breaks the rules across consoles or what it cannot check (offline) unless a
service override, and what it decided reaches the central store with its next push."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner, Result

from laserctl.auth import AccountBook, console_key
from laserctl.cli import main
from laserctl.fleet import central
from laserctl.fleet.courses import (
    COURSES_SQL,
    DECISIONS_SQL,
    SESSIONS_SQL,
    CentralCourses,
    course_summary,
)
from laserctl.fleet.push import push
from laserctl.records import CourseOverride, CourseRuleBroken, open_store
from laserctl.records.course_check import DECISION_EVENT, CentralUnreachable

from .test_console import FAST_HASHER
from .test_course_rules import CONTEXT, DAY, START, Clock, deliver_and_end, events

PATIENT = "P-0042"
OVERRIDE = CourseOverride("svc-anna", "touch-up agreed by the dermatologist in writing")


def migrate(url: str) -> None:
    with central.connect(url) as store:
        store.migrate()


class Console:
    """One console of the chain: its own shot log and clock, asking the central store."""

    def __init__(self, path: Path, url: str | None) -> None:
        self.key = console_key.load_or_create(path.with_suffix(".pem"))
        self.name = self.key.console_id
        self.clock = Clock()
        key = self.key  # the console's own: it signs the checkpoints its pushes carry
        self.store = open_store(path, clock=self.clock, tz=dt.UTC, console_key=lambda: key)
        self.url = url
        self.authority = CentralCourses(url) if url else None

    def treat(self, day: float, override: CourseOverride | None = None) -> str:
        self.clock.now = START + day * DAY
        sid = self.store.begin_session(
            PATIENT, "abdomen", context=lambda: CONTEXT, authority=self.authority,
            override=override,
        )  # fmt: skip
        deliver_and_end(self.store, sid)
        return sid

    def refused(self, day: float) -> str:
        self.clock.now = START + day * DAY
        with pytest.raises(CourseRuleBroken) as excinfo:
            self.store.begin_session(
                PATIENT, "abdomen", context=lambda: CONTEXT, authority=self.authority
            )
        return str(excinfo.value)

    def push(self) -> int:
        """`laserctl fleet push`; returns the rows new to the central store."""
        assert self.url is not None
        return sum(push(self.store.path, self.url, key=self.key).shipped.values())


@pytest.fixture
def consoles(tmp_path: Path, pg_url: str) -> Iterator[tuple[Console, Console]]:
    migrate(pg_url)
    a = Console(tmp_path / "a.db", pg_url)
    b = Console(tmp_path / "b.db", pg_url)
    yield a, b
    a.store.close()
    b.store.close()


@pytest.mark.req("SR-18")
@pytest.mark.req("SR-19")
def test_a_course_rule_is_enforced_across_consoles(
    consoles: tuple[Console, Console], pg_url: str
) -> None:
    a, b = consoles
    first = a.treat(0)
    a.push()
    # console B has never seen the patient; the central store has
    assert f"only 10 days since session {first}" in b.refused(10)
    b.treat(21)
    b.push()
    assert "only 5 days since session" in a.refused(26)  # and the other way round
    a.treat(42)
    a.treat(63)
    a.push()
    b.treat(84)
    b.push()
    assert "course 1 already has 5 sessions on abdomen" in b.refused(105)  # 3 on A, 2 on B
    sixth = b.treat(105, OVERRIDE)
    assert b.push() > 0
    decisions = CentralCourses(pg_url).decisions(PATIENT)
    seen = [(d.console, d.data["decision"], d.data["sessions_in_course"]) for d in decisions]
    assert seen == [
        (a.name, "allowed", 0),
        (b.name, "refused", 1),
        (b.name, "allowed", 1),
        (a.name, "refused", 2),
        (a.name, "allowed", 2),
        (a.name, "allowed", 3),
        (b.name, "allowed", 4),
        (b.name, "refused", 5),
        (b.name, "overridden", 5),
    ]
    last = decisions[-1]
    assert last.who == "svc-anna" and last.data["reason"] == OVERRIDE.reason
    assert last.data["session"] == sixth and last.data["offline"] is False
    assert last.data["consoles"] == [a.name]  # whose sessions made the rule bite
    listed = CliRunner().invoke(main, ["fleet", "decisions", "--to", pg_url, "--patient", PATIENT])
    assert listed.exit_code == 0, listed.output
    assert (
        f"console {b.name}  {PATIENT} abdomen course 1: overridden (central; 5 session(s) in "
        f"the course, 3 from other consoles) by svc-anna: {OVERRIDE.reason}"
    ) in listed.output
    assert "    - course 1 already has 5 sessions on abdomen" in listed.output
    # what console A sees of the patient now: six sessions, the override's among them
    summary, note = course_summary(a.store, PATIENT, a.authority)
    assert f"3 session(s) from other consoles ({b.name})" in note
    (area,) = summary["courses"][0]["areas"]  # type: ignore[index]
    assert area["treated_sessions"] == 6


@pytest.mark.req("SR-18")
@pytest.mark.req("SR-19")
def test_offline_a_session_is_refused_unless_overridden_and_the_override_is_shipped_later(
    tmp_path: Path, pg_url: str
) -> None:
    migrate(pg_url)
    a = Console(tmp_path / "a.db", pg_url)
    a.treat(0)
    a.push()
    b = Console(tmp_path / "b.db", pg_url)
    b.authority = CentralCourses(f"postgresql://postgres@/fleet?host={tmp_path}/gone&port=1")
    why = b.refused(30)
    assert "cannot be reached" in why and "sessions of P-0042 on other consoles are unknown" in why
    assert b.store.history(PATIENT) == []
    sid = b.treat(30, OVERRIDE)
    (override,) = events(b.store, "override")
    assert override["data"]["offline"] is True  # type: ignore[index]
    store = CentralCourses(pg_url)
    assert [d.console for d in store.decisions(PATIENT)] == [a.name]  # B's not yet
    b.push()  # back online: the push ships what was decided offline
    _, refused, overridden = store.decisions(PATIENT)
    assert refused.data["decision"] == "refused" and refused.data["offline"] is True
    assert overridden.data["decision"] == "overridden" and overridden.data["offline"] is True
    assert overridden.who == "svc-anna" and overridden.data["session"] == sid
    assert "overridden offline by svc-anna" in overridden.message
    listed = CliRunner().invoke(main, ["fleet", "decisions", "--to", pg_url, "--offline", "--json"])
    assert listed.exit_code == 0, listed.output
    shown = json.loads(listed.output)["decisions"]
    assert [(d["console"], d["decision"]) for d in shown] == [
        (b.name, "refused"),
        (b.name, "overridden"),
    ]
    assert shown[1]["who"] == "svc-anna" and shown[1]["reason"] == OVERRIDE.reason
    down = CliRunner().invoke(main, ["fleet", "decisions", "--to", f"{b.authority.url}"])
    assert down.exit_code == 1 and "unreachable" in down.output
    a.store.close()
    b.store.close()


def test_a_central_store_that_never_answers_is_given_up_on_within_its_timeout() -> None:
    with socket.socket() as silent:  # accepts the connection (the backlog) and says nothing
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        authority = CentralCourses(f"postgresql://postgres@127.0.0.1:{port}/fleet", timeout_s=1)
        with pytest.raises(CentralUnreachable, match="timeout expired"):
            authority.course_of(PATIENT)


def test_a_central_store_without_the_fleet_schema_counts_as_unreachable(pg_url: str) -> None:
    with pytest.raises(CentralUnreachable, match="fleet_rows"):
        CentralCourses(pg_url).course_of(PATIENT)


@pytest.mark.req("SR-18")
def test_a_console_without_a_central_store_judges_its_own_log_alone(
    consoles: tuple[Console, Console], tmp_path: Path
) -> None:
    a, _ = consoles
    a.treat(0)
    a.push()
    alone = Console(tmp_path / "alone.db", None)
    alone.treat(10)  # it cannot know of console A's session: today's behaviour, unchanged
    assert events(alone.store, DECISION_EVENT) == []
    alone.store.close()


@pytest.mark.parametrize(
    "url",
    ["postgresql://clinic:s3cret@127.0.0.1:1/fleet", "postgresql://127.0.0.1:1/f?password=s3cret"],
)
def test_the_password_of_the_central_store_is_never_shown(url: str) -> None:
    authority = CentralCourses(url, timeout_s=1)
    assert "s3cret" not in authority.where
    with pytest.raises(CentralUnreachable) as excinfo:
        authority.course_of(PATIENT)
    assert "s3cret" not in str(excinfo.value)


# ---- `laserctl session --fleet`, `laserctl course show --fleet` ---------------------------------
def cli_session(tmp_path: Path, db: Path, *extra: str) -> Result:
    script = tmp_path / "script.txt"
    script.write_text("confirm eyewear\n")
    args = ["session", "--device", "sim:fractional-1550", "--script", str(script)]
    args += ["--patient", PATIENT, "--area", "abdomen", "--db", str(db), *extra]
    return CliRunner().invoke(main, args)


@pytest.mark.req("SR-18")
@pytest.mark.req("SR-19")
def test_laserctl_session_asks_the_central_store_and_only_a_service_login_overrides(
    tmp_path: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LASERCTL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.delenv("LASERCTL_SERVICE_PASSWORD", raising=False)
    AccountBook(hasher=FAST_HASHER).setup("svc-anna", "correct horse battery")
    password = tmp_path / "password"
    password.write_text("correct horse battery\n")
    migrate(pg_url)
    a = Console(tmp_path / "a.db", pg_url)
    a.clock.now = time.time()  # today, as `laserctl session` sees it
    sid = a.store.begin_session(PATIENT, "abdomen", context=lambda: CONTEXT)
    deliver_and_end(a.store, sid)
    a.push()
    b_db = tmp_path / "b.db"

    alone = cli_session(tmp_path, tmp_path / "alone.db")  # no --fleet: this log alone
    assert alone.exit_code == 0, alone.output
    refused = cli_session(tmp_path, b_db, "--fleet", pg_url)
    assert refused.exit_code == 1
    assert f"only 0 days since session {sid}" in refused.output
    wrong = password.with_name("wrong")
    wrong.write_text("not the password\n")
    args = ("--fleet", pg_url, "--override-reason", "second pass agreed with the dermatologist")
    denied = cli_session(tmp_path, b_db, *args, "--user", "svc-anna", "--password-file", str(wrong))
    assert denied.exit_code == 1 and "override the course rules refused" in denied.output
    allowed = cli_session(
        tmp_path, b_db, *args, "--user", "svc-anna", "--password-file", str(password), "--json"
    )
    assert allowed.exit_code == 0, allowed.output
    summary = json.loads(allowed.stdout)
    assert summary["course_decision"]["decision"] == "overridden"
    assert summary["course_decision"]["consoles"] == [a.name]
    with open_store(b_db, readonly=True) as b:
        (override,) = events(b, "override")
        assert override["who"] == "svc-anna" and override["data"]["central"]  # type: ignore[index]
        decisions = [e["data"]["decision"] for e in events(b, DECISION_EVENT)]  # type: ignore[index]
        assert decisions == ["refused", "overridden"]
    shown = CliRunner().invoke(
        main, ["course", "show", PATIENT, "--db", str(b_db), "--fleet", pg_url]
    )
    assert shown.exit_code == 0, shown.output
    assert f"{sid}" in shown.output and f"(console {a.name})" in shown.output
    assert f"1 session(s) from other consoles ({a.name})" in shown.output
    a.store.close()


# ---- the central store's indexes (course_index.py) ----------------------------------------------
def test_the_course_questions_are_answered_from_the_indexes(
    consoles: tuple[Console, Console], pg_url: str
) -> None:
    a, _ = consoles
    a.treat(0)
    a.push()
    used: set[str] = set()
    with psycopg.connect(pg_url) as conn:
        conn.execute("SET enable_seqscan = off")  # a tiny table: else a scan is cheaper
        for sql, params in (
            (SESSIONS_SQL, {"patient": PATIENT}),
            (COURSES_SQL, {"patient": PATIENT}),
            (DECISIONS_SQL, {"kind": DECISION_EVENT, "patient": None}),
        ):
            row = conn.execute("EXPLAIN (FORMAT JSON) " + sql, params).fetchone()
            assert row is not None
            used |= set(re.findall(r'"Index Name": "(fleet_\w+)"', json.dumps(row[0])))
    assert used >= {
        "fleet_patients_id",
        "fleet_sessions_patient",
        "fleet_courses_patient",
        "fleet_shots_session",
        "fleet_session_ends",
        "fleet_course_decisions",
    }


def test_a_nul_in_a_device_text_neither_fails_the_push_nor_hides_a_shot(
    tmp_path: Path, pg_url: str
) -> None:
    """A device's text with a NUL in it is valid JSON (\\u0000) that jsonb refuses: read as
    U+FFFD, the shot is pushed and counted."""
    migrate(pg_url)
    a = Console(tmp_path / "a.db", pg_url)
    odd = dataclasses.replace(CONTEXT, serial="FR-\x0000001")
    a.clock.now = START
    sid = a.store.begin_session(PATIENT, "abdomen", context=lambda: odd)
    deliver_and_end(a.store, sid)
    assert a.push() > 0
    (session,) = CentralCourses(pg_url).course_of(PATIENT).sessions
    assert (session.session_id, session.shots, session.ended) == (sid, 1, True)
    a.store.close()


def test_a_record_the_course_rules_cannot_read_refuses_rather_than_miscounts(
    consoles: tuple[Console, Console], pg_url: str
) -> None:
    """A body that is not JSON (a forged log whose chain was recomputed) could hide a session:
    the question fails, and the session is refused as for an unreachable store."""
    a, b = consoles
    a.treat(0)
    a.push()
    with psycopg.connect(pg_url) as conn:  # what a forged log pushes: its hash chains
        conn.execute("ALTER TABLE fleet_rows DISABLE TRIGGER USER")
        conn.execute(
            "INSERT INTO fleet_rows (console_id, tbl, row_id, body, hash, prev)"
            " SELECT console_id, tbl, row_id + 1000, 'not json', hash, prev FROM fleet_rows"
            " WHERE tbl = 'shots' AND console_id = %s",
            (a.name,),
        )
    with pytest.raises(CentralUnreachable, match=r"cannot read \(1 shots, not JSON\)"):
        CentralCourses(pg_url).course_of(PATIENT)
    assert "cannot be reached" in b.refused(30)
