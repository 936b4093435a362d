"""Roles and service credentials (SR-19): accounts, Argon2 hashes, the audit trail, and service
commands refusing a wrong credential."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from click.testing import CliRunner

from laserctl.auth import AccountBook, AuthError, Identity, Role
from laserctl.auth.accounts import default_hasher
from laserctl.cli.calibrate import calibrate
from laserctl.cli.profiles import profiles
from laserctl.cli.service import service
from laserctl.profiles.signing import MANIFEST, SHIPPED_DIR
from laserctl.records import RecordStore, open_store

# Tests only: a cheap Argon2 cost, injected. Production uses default_hasher() (RFC 9106).
CHEAP = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
SECRET = "correct horse battery staple"
WRONG = "incorrect horse battery"


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LASERCTL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    for name in ("LASERCTL_SERVICE_USER", "LASERCTL_SERVICE_PASSWORD", "LASERCTL_NEW_PASSWORD"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def store(env: Path) -> Iterator[RecordStore]:
    s = open_store(env / "laserctl.db")
    yield s
    s.close()


@pytest.fixture
def book(env: Path, store: RecordStore) -> AccountBook:
    b = AccountBook(env / "config", hasher=CHEAP, log=store)
    b.setup("alice", SECRET)
    return b


def service_events(store: RecordStore) -> list[dict[str, object]]:
    rows = store.query("SELECT body FROM events ORDER BY id")
    events = [json.loads(body) for (body,) in rows]
    return [e for e in events if e["kind"] == "service"]


def all_bytes(*roots: Path) -> bytes:
    return b"".join(p.read_bytes() for root in roots for p in root.rglob("*") if p.is_file())


def password_file(env: Path, text: str) -> str:
    path = env / f"pw-{abs(hash(text))}"
    path.write_text(text + "\n", encoding="utf-8")
    return str(path)


# ---- accounts -----------------------------------------------------------------------------------
@pytest.mark.req("SR-19")
def test_first_run_setup_creates_one_service_account_and_is_logged(
    book: AccountBook, store: RecordStore
) -> None:
    [account] = book.accounts()
    assert (account.name, account.role, account.created_by) == ("alice", Role.SERVICE, "alice")
    assert account.key_id in book.keyring.entries()
    with pytest.raises(AuthError, match="already set up"):
        book.setup("mallory", SECRET)
    [event] = service_events(store)
    assert event["who"] == "alice" and "first-run setup" in str(event["message"])
    assert event["at"]


@pytest.mark.req("SR-19")
def test_credentials_are_stored_only_as_argon2id_hashes_and_never_logged(
    book: AccountBook, store: RecordStore, env: Path
) -> None:
    with pytest.raises(AuthError):
        book.authenticate("alice", WRONG)
    stored = json.loads((env / "config" / "accounts.json").read_text())
    assert stored["accounts"]["alice"]["hash"].startswith("$argon2id$")
    everything = all_bytes(env)
    for secret in (SECRET, WRONG):
        assert secret.encode() not in everything
        assert secret not in json.dumps(service_events(store))


@pytest.mark.req("SR-19")
def test_a_wrong_credential_is_refused_and_the_attempt_logged(
    book: AccountBook, store: RecordStore
) -> None:
    assert book.authenticate("alice", SECRET) == Identity("alice", Role.SERVICE)
    with pytest.raises(AuthError, match="wrong user name or password"):
        book.authenticate("alice", WRONG)
    with pytest.raises(AuthError, match="wrong user name or password"):
        book.authenticate("nobody", SECRET)
    failed = [e for e in service_events(store) if "failed login" in str(e["message"])]
    assert [e["who"] for e in failed] == ["alice", "nobody"]


@pytest.mark.req("SR-19")
def test_an_operator_cannot_use_service_functions(book: AccountBook, store: RecordStore) -> None:
    admin = book.authenticate("alice", SECRET)
    book.add(admin, "olga", Role.OPERATOR, "operator password 1")
    operator = book.authenticate("olga", "operator password 1")
    assert not operator.is_service
    with pytest.raises(AuthError, match="needs a service login"):
        book.login_service("olga", "operator password 1", "calibrate a handpiece")
    with pytest.raises(AuthError, match="needs a service login"):
        book.add(operator, "eve", Role.SERVICE, "another password")
    with pytest.raises(AuthError):
        book.signing_key(operator, "operator password 1")
    assert [a.name for a in book.accounts()] == ["alice", "olga"]
    messages = [str(e["message"]) for e in service_events(store)]
    assert any("olga (operator) tried to calibrate" in m for m in messages)


def test_account_rules(book: AccountBook) -> None:
    admin = book.authenticate("alice", SECRET)
    with pytest.raises(AuthError, match="at least 10"):
        book.add(admin, "bob", Role.SERVICE, "short")
    with pytest.raises(AuthError, match="account name"):
        book.add(admin, "Bob Smith", Role.SERVICE, SECRET)
    with pytest.raises(AuthError, match="exists already"):
        book.add(admin, "alice", Role.SERVICE, SECRET)


def test_the_signing_key_is_encrypted_with_the_password_and_follows_a_change(
    book: AccountBook,
) -> None:
    admin = book.authenticate("alice", SECRET)
    key = book.signing_key(admin, SECRET)
    with pytest.raises(AuthError, match="wrong password"):
        book.signing_key(admin, WRONG)
    book.change_password("alice", SECRET, "a brand new password")
    with pytest.raises(AuthError):
        book.authenticate("alice", SECRET)
    again = book.signing_key(
        book.authenticate("alice", "a brand new password"), "a brand new password"
    )
    from laserctl.auth import keys

    assert keys.key_id(again.public_key()) == keys.key_id(key.public_key())


def test_production_hashing_cost_is_strong() -> None:
    hasher = default_hasher()
    assert hasher.time_cost >= 3 and hasher.memory_cost >= 64 * 1024
    assert hasher.type.name == "ID"


# ---- the command line ---------------------------------------------------------------------------
def test_cli_setup_from_a_password_file_and_users(env: Path) -> None:
    runner = CliRunner()
    pw = password_file(env, SECRET)
    made = runner.invoke(service, ["setup", "--user", "alice", "--password-file", pw])
    assert made.exit_code == 0, made.output
    again = runner.invoke(service, ["setup", "--user", "bob", "--password-file", pw])
    assert again.exit_code == 1 and "already set up" in again.output
    listed = runner.invoke(service, ["users", "--json"])
    assert json.loads(listed.output)[0]["name"] == "alice"
    assert "$argon2" not in listed.output


def test_no_command_takes_a_password_on_the_command_line(env: Path) -> None:
    result = CliRunner().invoke(
        calibrate, ["--device", "sim:fractional-1550", "--password", SECRET]
    )
    assert result.exit_code == 2 and "No such option" in result.output


@pytest.mark.req("SR-19")
def test_cli_calibration_refuses_a_wrong_credential(book: AccountBook, env: Path) -> None:
    db = env / "cli.db"
    result = CliRunner().invoke(
        calibrate,
        ["--device", "sim:fractional-1550", "--user", "alice", "--db", str(db)],
        env={"LASERCTL_SERVICE_PASSWORD": WRONG},
    )
    assert result.exit_code == 1
    assert "calibrate a handpiece refused: wrong user name or password" in result.output
    with open_store(db) as log:
        assert log.calibrations("FX-00001") == []
        assert any("failed login" in str(e["message"]) for e in service_events(log))


@pytest.mark.req("SR-19")
@pytest.mark.req("SR-14")
def test_cli_calibration_by_a_service_engineer_is_stored_and_logged_with_who(
    book: AccountBook, env: Path
) -> None:
    db, plot = env / "cli.db", env / "fit.svg"
    result = CliRunner().invoke(
        calibrate,
        [
            "--device",
            "sim:fractional-1550",
            "--db",
            str(db),
            "--plot",
            str(plot),
            "--json",
            "--sim-inject",
            "drift 10",
        ],
        env={"LASERCTL_SERVICE_USER": "alice", "LASERCTL_SERVICE_PASSWORD": SECRET},
    )
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output[result.output.index("{") :])
    assert summary["accepted"] and summary["fit"]["slope"] == pytest.approx(1.1, abs=0.03)
    assert plot.read_text().startswith("<svg")
    with open_store(db) as log:
        [record] = log.calibrations("FX-00001")
        assert record["who"] == "alice" and len(record["points"]) == 24  # type: ignore[arg-type]
        assert record["fit"] and record["created_at"] and record["expires_at"]
        stored = [e for e in service_events(log) if "calibration" in str(e["message"])]
        assert stored and stored[-1]["who"] == "alice"


@pytest.mark.req("SR-19")
def test_cli_profile_signing_refuses_a_wrong_credential_and_logs_a_right_one(
    book: AccountBook, env: Path
) -> None:
    target = env / "profiles"
    shutil.copytree(SHIPPED_DIR, target)
    path = target / "ndyag-1064-chest.toml"
    path.write_text(
        path.read_text()
        .replace("\nversion = 1", "\nversion = 2")
        .replace("max = 90.0", "max = 88.0")
    )
    before = (target / MANIFEST).read_bytes()
    runner = CliRunner()
    db = env / "cli.db"
    args = ["sign", "--dir", str(target), "--user", "alice", "--db", str(db)]
    refused = runner.invoke(profiles, args, env={"LASERCTL_SERVICE_PASSWORD": WRONG})
    assert refused.exit_code == 1 and "sign profiles refused" in refused.output
    assert (target / MANIFEST).read_bytes() == before
    signed = runner.invoke(
        profiles, [*args, "--password-file", password_file(env, SECRET), "--json"]
    )
    assert signed.exit_code == 0, signed.output
    assert json.loads(signed.output)["changed"][0]["new_version"] == 2
    valid = runner.invoke(profiles, ["validate", "--dir", str(target)])
    assert valid.exit_code == 0, valid.output  # alice's key is in this device's keyring
    with open_store(db) as log:
        events = service_events(log)
    assert "failed login for alice" in str(events[0]["message"])
    assert events[-1]["who"] == "alice" and "signed" in str(events[-1]["message"])


@pytest.mark.req("SR-19")
def test_cli_adding_a_user_needs_a_service_login(book: AccountBook, env: Path) -> None:
    runner = CliRunner()
    admin = book.authenticate("alice", SECRET)
    book.add(admin, "olga", Role.OPERATOR, "operator password 1")
    refused = runner.invoke(
        service,
        ["add-user", "eve", "--role", "service", "--user", "olga"],
        env={"LASERCTL_SERVICE_PASSWORD": "operator password 1", "LASERCTL_NEW_PASSWORD": SECRET},
    )
    assert refused.exit_code == 1 and "needs a service login" in refused.output
    added = runner.invoke(
        service,
        ["add-user", "bob", "--role", "service", "--user", "alice"],
        env={"LASERCTL_SERVICE_PASSWORD": SECRET, "LASERCTL_NEW_PASSWORD": "bob's password!"},
    )
    assert added.exit_code == 0, added.output
    assert "service account bob created by alice" in added.output
