"""The login lockout (SR-19, issue 15): the 5th failed login in a row of a name locks it for
30 s, doubling with each further failure up to 1 h; unknown names the same; kept across a
restart; logged; and a scripted guesser slowed to the rate docs/service-guide.md states.

Time is a manual clock that moves only when a test moves it: nothing here sleeps.
"""

from __future__ import annotations

import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from textual.pilot import Pilot
from textual.widgets import Button, Input

from laserctl.auth import AccountBook, AuthError, Identity, LockedOut, Role
from laserctl.auth import lockout as policy
from laserctl.cli.calibrate import calibrate
from laserctl.cli.service import service
from laserctl.console.app import ConsoleApp
from laserctl.console.screens.connect import ConnectScreen
from laserctl.console.screens.service import ServiceLoginDialog, ServiceScreen
from laserctl.records import RecordStore, open_store
from tests.test_console import (
    SERVICE_PASSWORD,
    SERVICE_USER,
    click,
    clinic_in,
    console,
    drive,
    keys,
    on,
    service_account,
    shown,
    type_into,
    until,
)

SECRET = "correct horse battery staple"
WRONG = "incorrect horse battery"
DAY = 86400.0
START = 1_700_000_000.0


class ManualClock:
    """Time that moves only when the test moves it."""

    def __init__(self, now: float = START) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class CountingHasher(PasswordHasher):
    """A cheap Argon2id (tests only) that counts the password checks."""

    def __init__(self) -> None:
        super().__init__(time_cost=1, memory_cost=8, parallelism=1)
        self.checks = 0
        self.hashes = 0

    def verify(self, hash: str | bytes, password: str | bytes) -> bool:
        self.checks += 1
        return super().verify(hash, password)

    def hash(self, password: str | bytes, *, salt: bytes | None = None) -> str:
        self.hashes += 1
        return super().hash(password, salt=salt)


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LASERCTL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for name in ("LASERCTL_SERVICE_USER", "LASERCTL_SERVICE_PASSWORD", "LASERCTL_NEW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def hasher() -> CountingHasher:
    return CountingHasher()


@pytest.fixture
def store(env: Path, clock: ManualClock) -> Iterator[RecordStore]:
    s = open_store(env / "laserctl.db", clock=clock)
    yield s
    s.close()


@pytest.fixture
def book(env: Path, store: RecordStore, hasher: CountingHasher, clock: ManualClock) -> AccountBook:
    b = AccountBook(env / "config", hasher=hasher, log=store, clock=clock)
    b.setup("alice", SECRET)
    hasher.checks = 0
    return b


def fail(book: AccountBook, name: str = "alice", password: str = WRONG) -> AuthError:
    with pytest.raises(AuthError) as caught:
        book.authenticate(name, password)
    return caught.value


def fail_until_locked(book: AccountBook, name: str = "alice") -> LockedOut:
    for _ in range(policy.THRESHOLD - 1):
        assert not isinstance(fail(book, name), LockedOut)
    locked = fail(book, name)
    assert isinstance(locked, LockedOut)
    return locked


def service_events(store: RecordStore) -> list[dict[str, Any]]:
    events = [json.loads(body) for (body,) in store.query("SELECT body FROM events ORDER BY id")]
    return [e for e in events if e["kind"] == "service"]


# ---- the policy ---------------------------------------------------------------------------------
def test_the_policy_30_s_at_the_5th_failure_doubling_to_1_h() -> None:
    assert [policy.lock_seconds(n) for n in range(1, 14)] == [
        *[0.0] * 4,
        *[30.0, 60.0, 120.0, 240.0, 480.0, 960.0, 1920.0],
        3600.0,
        3600.0,
    ]
    assert policy.lock_seconds(10_000) == policy.MAX_LOCK_S == 3600.0
    assert policy.checks_allowed(DAY) == 34  # 11 in the first 32 min, then one an hour
    assert policy.checks_allowed(2 * DAY) == 34 + 24


# ---- the account book ---------------------------------------------------------------------------
@pytest.mark.req("SR-19")
def test_the_5th_failure_locks_for_30_s_and_then_even_the_right_password_is_refused_unchecked(
    book: AccountBook, hasher: CountingHasher, clock: ManualClock
) -> None:
    locked = fail_until_locked(book)
    assert locked.until == START + 30
    assert "wrong user name or password for 'alice'; 5 failed in a row: locked for 30 s" in str(
        locked
    )
    assert f"try again at {time.strftime('%H:%M:%S', time.localtime(START + 30))}" in str(locked)
    assert hasher.checks == 5
    clock.now += 29
    with pytest.raises(LockedOut, match="too many failed logins for 'alice': locked for 1 s"):
        book.authenticate("alice", SECRET)
    with pytest.raises(LockedOut):
        book.change_password("alice", SECRET, "a brand new password")  # another way to guess
    assert hasher.checks == 5  # refused without an Argon2 check
    clock.now += 1
    assert book.authenticate("alice", SECRET) == Identity("alice", Role.SERVICE)
    assert hasher.checks == 6


@pytest.mark.req("SR-19")
def test_each_failure_after_a_lockout_doubles_it_up_to_1_h(
    book: AccountBook, clock: ManualClock
) -> None:
    wait = fail_until_locked(book).until - clock.now
    locks = []
    for _ in range(9):
        clock.now += wait
        error = fail(book)
        assert isinstance(error, LockedOut)
        wait = error.until - clock.now
        locks.append(wait)
    assert locks == [60.0, 120.0, 240.0, 480.0, 960.0, 1920.0, 3600.0, 3600.0, 3600.0]


@pytest.mark.req("SR-19")
def test_a_successful_login_clears_the_count(book: AccountBook, clock: ManualClock) -> None:
    fail_until_locked(book)
    clock.now += 30
    fail(book)  # 6th: 60 s
    clock.now += 60
    book.authenticate("alice", SECRET)
    assert book.lockout.record("alice") is None
    locked = fail_until_locked(book)  # four free failures again, then 30 s, not 120
    assert locked.until - clock.now == 30


@pytest.mark.req("SR-19")
def test_an_unknown_name_is_refused_and_locked_exactly_like_a_wrong_password(
    book: AccountBook, hasher: CountingHasher, clock: ManualClock
) -> None:
    def attempts(name: str, password: str) -> list[tuple[str, str, float, int]]:
        seen = []
        for step in [0.0] * 5 + [30.0, 10.0, 50.0]:
            clock.now += step
            before = hasher.checks
            error = fail(book, name, password)
            until = error.until - clock.now if isinstance(error, LockedOut) else 0.0
            text = str(error).replace(repr(name), "NAME")
            seen.append((type(error).__name__, text, until, hasher.checks - before))
        return seen

    wrong_password = attempts("alice", WRONG)
    clock.now = START
    no_account = attempts("nobody", SECRET)
    assert no_account == wrong_password
    assert [checks for *_, checks in no_account] == [1, 1, 1, 1, 1, 1, 0, 1]
    assert no_account[4][0] == "LockedOut"
    # the decoy hash is made once per process, not at each attempt (the console makes an
    # AccountBook per login): otherwise a name that is none would take twice as long
    fresh = CountingHasher()
    for _ in range(3):
        clock.now += DAY
        fail(AccountBook(book.directory, hasher=fresh, clock=clock), "somebody")
    assert fresh.checks == 3 and fresh.hashes <= 1


@pytest.mark.req("SR-19")
def test_the_lockout_survives_a_restart(
    book: AccountBook, env: Path, store: RecordStore, clock: ManualClock
) -> None:
    fail_until_locked(book)
    fail_until_locked(book, "nobody")
    restarted = AccountBook(env / "config", hasher=CountingHasher(), log=store, clock=clock)
    for name, password in (("alice", SECRET), ("nobody", SECRET)):
        with pytest.raises(LockedOut, match="locked for 30 s"):
            restarted.authenticate(name, password)
    path = env / "config" / policy.LockoutFile.FILENAME
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    names = json.loads(path.read_text())["names"]
    assert names["alice"]["failures"] == 5 and names["alice"]["locked_until"] == START + 30
    for secret in (SECRET, WRONG):
        assert secret not in path.read_text()


@pytest.mark.req("SR-19")
def test_failures_and_lockouts_are_logged_with_who_count_and_duration_never_the_password(
    book: AccountBook, store: RecordStore, clock: ManualClock
) -> None:
    fail_until_locked(book)
    for _ in range(3):  # hammering while locked: one refusal logged, not three
        clock.now += 5
        fail(book, "alice", SECRET)
    clock.now = START + 30
    fail(book)
    clock.now += 60
    book.authenticate("alice", SECRET)
    events = service_events(store)[1:]  # after the first-run setup
    assert [(e["data"]["action"], e["who"]) for e in events] == [
        *[("login", "alice")] * 5,
        ("lockout", "alice"),
        ("login", "alice"),  # the refusal during the lockout
        ("login", "alice"),  # the 6th failure
        ("lockout", "alice"),
        ("login", "alice"),  # the success that clears the count
    ]
    assert [e["data"].get("failures") for e in events[:5]] == [1, 2, 3, 4, 5]
    assert "failed login for alice (5 in a row)" in events[4]["message"]
    assert events[5]["data"]["lockout_s"] == 30.0 and events[5]["at"]
    assert events[5]["data"]["locked_until"] == START + 30
    assert "locked out" in events[6]["message"] and "not logged" in events[6]["message"]
    assert events[8]["data"]["lockout_s"] == 60.0 and events[8]["data"]["failures"] == 6
    assert events[9]["data"] == {"action": "login", "ok": True, "cleared": 6}
    for secret in (SECRET, WRONG):
        assert secret not in json.dumps(events)


@pytest.mark.req("SR-19")
def test_an_attempt_during_another_attempts_check_uses_no_second_chance(
    env: Path, store: RecordStore, clock: ManualClock
) -> None:
    """The console and a CLI command (or a guesser's parallel runs) at once: an attempt is
    counted before its Argon2 check, so the 5th attempt's check leaves no room for a 6th."""
    inner: list[AuthError] = []

    class Concurrent(CountingHasher):
        def verify(self, hash: str | bytes, password: str | bytes) -> bool:
            if self.checks == 4:  # the 5th attempt is being checked: another process tries
                other = AccountBook(env / "config", hasher=CountingHasher(), clock=clock)
                with pytest.raises(AuthError) as caught:
                    other.authenticate("alice", SECRET)
                inner.append(caught.value)
            return super().verify(hash, password)

    book = AccountBook(env / "config", hasher=Concurrent(), log=store, clock=clock)
    book.setup("alice", SECRET)
    fail_until_locked(book)
    [refused] = inner
    assert isinstance(refused, LockedOut) and "too many failed logins" in str(refused)


@pytest.mark.req("SR-19")
def test_a_lockout_never_outlasts_itself_when_the_clock_is_set_back(
    book: AccountBook, clock: ManualClock
) -> None:
    fail_until_locked(book)
    clock.now -= 7 * DAY
    with pytest.raises(LockedOut) as caught:
        book.authenticate("alice", SECRET)
    assert caught.value.until == clock.now + 30
    clock.now += 30
    assert book.authenticate("alice", SECRET).name == "alice"


def test_a_name_is_forgotten_a_day_after_its_last_failure(
    book: AccountBook, clock: ManualClock
) -> None:
    fail_until_locked(book, "nobody")
    fail(book, "alice")
    clock.now += DAY
    fail(book, "alice")  # a new record for alice; the expired ones are dropped on the write
    assert book.lockout.record("nobody") is None
    record = book.lockout.record("alice")
    assert record is not None and record.failures == 1


@pytest.mark.req("SR-19")
def test_an_unreadable_lockout_file_refuses_every_login_and_is_kept(
    book: AccountBook, env: Path, hasher: CountingHasher
) -> None:
    path = env / "config" / policy.LockoutFile.FILENAME
    for body in ("{not json", '{"format": 1, "names": {"alice": {"failures": "many"}}}'):
        path.write_text(body)
        with pytest.raises(AuthError, match=f"{path}: .*inspect or remove it"):
            book.authenticate("alice", SECRET)
        assert path.read_text() == body
    assert hasher.checks == 0


# ---- a scripted guesser -------------------------------------------------------------------------
def guess_for(
    book: AccountBook,
    hasher: CountingHasher,
    clock: ManualClock,
    name: str,
    seconds: float,
    pause: Any = None,
) -> int:
    """A guesser script against the real login: a new wrong password at every attempt, again
    the moment the lockout allows (or after `pause(attempt)` more seconds); each check costs
    1 s. Returns how many password checks it got within `seconds`; it gives up counting one
    past the bound (without a lockout it would get ~86,400 a day)."""
    bound = policy.checks_allowed(seconds)
    start, attempt = clock.now, 0
    while clock.now - start <= seconds and hasher.checks <= bound:
        attempt += 1
        before = hasher.checks
        try:
            book.authenticate(name, f"guess number {attempt:08d}")
        except LockedOut as locked:
            clock.now = max(clock.now, locked.until)  # waits exactly as long as told
        except AuthError:
            pass
        else:
            raise AssertionError("a guess was right")
        clock.now += hasher.checks - before  # 1 s a check
        if pause is not None:
            clock.now += pause(attempt)
    return hasher.checks


@pytest.mark.req("SR-19")
@pytest.mark.parametrize("name", ["alice", "no.such.account"])
def test_a_scripted_guesser_gets_at_most_34_password_checks_a_day(
    book: AccountBook, hasher: CountingHasher, clock: ManualClock, name: str
) -> None:
    """The stated rate (docs/service-guide.md): retrying the moment the lockout allows, a
    guesser gets 5 checks at once, 6 more within 32 min (30 + 60 + ... + 960 s), then one an
    hour at the 1 h cap: 34 in its first 24 h (policy.checks_allowed), 24 a day after that.
    Without the lockout the same loop gets one a second: 86,400."""
    checks = guess_for(book, hasher, clock, name, DAY)
    assert checks <= 34
    assert checks >= 30  # it really was retrying as soon as allowed
    day_two = hasher.checks
    guess_for(book, hasher, clock, name, DAY)
    assert hasher.checks - day_two <= 24 + 1  # +1: the check at the very edge of the day


@pytest.mark.req("SR-19")
@settings(max_examples=25, deadline=None)
@given(pauses=st.lists(st.sampled_from([0.0, 1.0, 600.0, 3600.0, DAY, DAY + 1]), min_size=1))
def test_no_pattern_of_pauses_beats_the_stated_rate(
    tmp_path_factory: Any, pauses: list[float]
) -> None:
    """Waiting longer than told, even a day so that the count is forgotten, never gets a
    guesser more checks in 3 days than retrying at once does."""
    directory = tmp_path_factory.mktemp("guesser")
    clock, hasher = ManualClock(), CountingHasher()
    book = AccountBook(directory, hasher=hasher, clock=clock)
    book.setup("alice", SECRET)
    hasher.checks = 0
    checks = guess_for(book, hasher, clock, "alice", 3 * DAY, lambda n: pauses[n % len(pauses)])
    assert checks <= policy.checks_allowed(3 * DAY)


# ---- the command line ---------------------------------------------------------------------------
@pytest.mark.req("SR-19")
def test_cli_service_commands_are_locked_out_after_5_wrong_passwords(
    env: Path, store: RecordStore
) -> None:
    AccountBook(env / "config", hasher=CountingHasher()).setup("alice", SECRET)
    runner = CliRunner()
    db = env / "cli.db"
    args = ["--device", "sim:fractional-1550", "--user", "alice", "--db", str(db)]
    for _ in range(5):
        wrong = runner.invoke(calibrate, args, env={"LASERCTL_SERVICE_PASSWORD": WRONG})
        assert wrong.exit_code == 1
        assert "wrong user name or password" in wrong.output
    assert "5 failed in a row: locked for 30 s, try again at" in wrong.output
    right = runner.invoke(calibrate, args, env={"LASERCTL_SERVICE_PASSWORD": SECRET})
    assert right.exit_code == 1
    assert "calibrate a handpiece refused: too many failed logins for 'alice': locked" in (
        right.output
    )
    passwd = runner.invoke(
        service,
        ["passwd", "--user", "alice", "--db", str(db)],
        env={"LASERCTL_SERVICE_PASSWORD": SECRET, "LASERCTL_NEW_PASSWORD": "a new password!"},
    )
    assert passwd.exit_code == 1 and "too many failed logins" in passwd.output
    with open_store(db) as log:
        assert log.calibrations("FX-00001") == []
        assert any(e["data"].get("action") == "lockout" for e in service_events(log))


# ---- the console --------------------------------------------------------------------------------
@pytest.mark.req("SR-19")
def test_the_console_login_shows_the_lockout_and_refuses_a_6th_attempt(tmp_path: Path) -> None:
    """Five wrong passwords typed: the dialog shows the lockout with a time, "Log in" is
    disabled and a 6th attempt with the right password is refused; a new dialog is refused by
    the account book too (the lockout is not the dialog's); once it is over, the login works."""
    clock = ManualClock(time.time())
    clinic = clinic_in(tmp_path, clock=clock)
    service_account(clinic)
    record = policy.LockoutFile(tmp_path / "config" / policy.LockoutFile.FILENAME).record

    async def attempt(pilot: Pilot[None], app: ConsoleApp, password: str, n: int) -> None:
        login = app.screen
        await type_into(pilot, "#password", password)
        await keys(pilot, "enter")
        failures = lambda: (r := record(SERVICE_USER)) is not None and r.failures == n  # noqa: E731
        await until(pilot, failures, f"failure {n} counted")
        await until(pilot, lambda: login.query_one("#password", Input).value == "", "refused")

    async def open_login(pilot: Pilot[None], app: ConsoleApp) -> None:
        await until(pilot, lambda: on(app, ConnectScreen), "the connect screen")
        await keys(pilot, "f2")
        await until(pilot, lambda: on(app, ServiceLoginDialog), "the service login")
        await until(pilot, lambda: app.screen.query("#user"), "the fields")
        await type_into(pilot, "#user", SERVICE_USER)

    async def scenario(pilot: Pilot[None], app: ConsoleApp) -> None:
        await open_login(pilot, app)
        login = app.screen
        for n in range(1, 6):
            await attempt(pilot, app, f"wrong password {n}", n)
        until_at = time.strftime("%H:%M:%S", time.localtime(clock.now + 30))
        await until(pilot, lambda: "locked for 30 s" in shown(login, "#login-error"), "lockout")
        assert f"try again at {until_at}" in shown(login, "#login-error")
        assert login.query_one("#login", Button).disabled
        await type_into(pilot, "#password", SERVICE_PASSWORD)
        await keys(pilot, "enter")  # the 6th, right, refused without asking
        assert on(app, ServiceLoginDialog) and "locked for" in shown(login, "#login-error")
        record_now = record(SERVICE_USER)
        assert record_now is not None and record_now.failures == 5
        clock.now += 10
        await click(pilot, "#cancel")
        await open_login(pilot, app)  # a new dialog: the account book refuses
        fresh = app.screen
        await type_into(pilot, "#password", SERVICE_PASSWORD)
        await keys(pilot, "enter")
        await until(pilot, lambda: "locked for 20 s" in shown(fresh, "#login-error"), "refused")
        assert "too many failed logins for 'svc.anna'" in shown(fresh, "#login-error")
        assert fresh.query_one("#login", Button).disabled
        button = fresh.query_one("#login", Button)
        await type_into(pilot, "#user", "svc.other")  # a lockout is per name
        await until(pilot, lambda: not button.disabled, "Log in enabled for another name")
        await type_into(pilot, "#user", SERVICE_USER)
        await until(pilot, lambda: button.disabled, "Log in disabled again")
        clock.now += 20
        await type_into(pilot, "#password", SERVICE_PASSWORD)
        await keys(pilot, "enter")
        await until(pilot, lambda: on(app, ServiceScreen), "the service screen")
        service_screen = app.screen
        await until(pilot, lambda: "usable" in shown(service_screen, "#profiles"), "its checks")

    try:
        drive(console(clinic), scenario)
        rows = clinic.store.query("SELECT body FROM events WHERE kind = 'service'")
    finally:
        clinic.close()
    bodies = [json.loads(body) for (body,) in rows]
    assert [b["data"]["action"] for b in bodies].count("lockout") == 1
    assert not any(SERVICE_PASSWORD in body or "wrong password" in body for (body,) in rows)
