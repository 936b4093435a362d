"""Accounts and roles (SR-19): operators and service engineers.

Passwords are hashed with Argon2id (argon2-cffi; its defaults follow RFC 9106's low-memory
profile: 3 passes, 64 MiB, 4 lanes) and never stored or logged in plain text. Every service
engineer also has an Ed25519 signing key for profiles, created with the account; its private
half is encrypted with the engineer's password and its public half goes into the device's
keyring. Every service action (account created, password changed, failed login, lockout) is
logged with who and when through the event log given (laserctl.records: kind "service").

Every password check goes through the login lockout (laserctl.auth.lockout): the 5th failed
login in a row of a name locks it for 30 s, doubling with each further failure up to 1 h. A
name that is no account is checked against a decoy hash, so it costs and answers exactly as a
wrong password does, and is locked out the same way.

Files, in the config directory (laserctl.auth.paths): accounts.json, login-lockout.json,
keys/<name>.pem, trusted-keys.json.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from laserctl.eventlog import EventLog

from . import keys, lockout
from .paths import config_dir, read_table, write_private

if TYPE_CHECKING:
    from argon2 import PasswordHasher
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

MIN_PASSWORD = 10
NAME = re.compile(r"^[a-z][a-z0-9_.-]{1,31}$")
_DECOYS: dict[tuple[object, ...], str] = {}  # by hashing cost: see AccountBook._decoy_hash


class Role(StrEnum):
    OPERATOR = "operator"
    SERVICE = "service"


class AuthError(Exception):
    """Wrong credentials, a missing role, or an account problem; says which, never the password."""


class LockedOut(AuthError):
    """Refused by the login lockout, or a wrong password that has just started one: `reason`,
    then for how long and until when (`until`, clock seconds)."""

    def __init__(self, reason: str, name: str, until: float, now: float) -> None:
        super().__init__(f"{reason}: {lockout.describe(until, now)}")
        self.reason = reason
        self.name = name
        self.until = until


@dataclass(frozen=True, slots=True)
class Account:
    name: str
    role: Role
    created_at: float
    created_by: str
    key_id: str | None


@dataclass(frozen=True, slots=True)
class Identity:
    """Someone who has just proven who they are."""

    name: str
    role: Role

    @property
    def is_service(self) -> bool:
        return self.role is Role.SERVICE


def default_hasher() -> PasswordHasher:
    from argon2 import PasswordHasher

    return PasswordHasher()  # production cost: argon2-cffi's RFC 9106 defaults


def check_password_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise AuthError(f"a password needs at least {MIN_PASSWORD} characters")


class AccountBook:
    FILENAME = "accounts.json"

    def __init__(
        self,
        directory: Path | None = None,
        *,
        hasher: PasswordHasher | None = None,
        log: EventLog | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory if directory is not None else config_dir()
        self.path = self.directory / self.FILENAME
        self._hasher = hasher
        self.log = log
        self.clock = clock
        self.keyring = keys.Keyring(self.directory / keys.Keyring.FILENAME)
        self.lockout = lockout.LockoutFile(self.directory / lockout.LockoutFile.FILENAME)

    @property
    def hasher(self) -> PasswordHasher:
        if self._hasher is None:
            self._hasher = default_hasher()
        return self._hasher

    # ---- storage --------------------------------------------------------------------------------
    def _load(self) -> dict[str, dict[str, Any]]:
        return read_table(self.path, "accounts", "account file", AuthError)

    def _save(self, accounts: dict[str, dict[str, Any]]) -> None:
        body = {"format": 1, "accounts": dict(sorted(accounts.items()))}
        write_private(self.path, (json.dumps(body, indent=2) + "\n").encode("utf-8"))

    def key_path(self, name: str) -> Path:
        return self.directory / "keys" / f"{name}.pem"

    def _audit(self, message: str, who: str | None, **data: object) -> None:
        if self.log is not None:
            self.log.log_event("service", message, who=who, data=dict(data))

    # ---- queries --------------------------------------------------------------------------------
    def is_set_up(self) -> bool:
        return any(a.get("role") == Role.SERVICE for a in self._load().values())

    def accounts(self) -> list[Account]:
        return [
            Account(
                name,
                Role(entry["role"]),
                float(entry["created_at"]),
                str(entry["created_by"]),
                entry.get("key_id"),
            )
            for name, entry in sorted(self._load().items())
        ]

    # ---- changes --------------------------------------------------------------------------------
    def setup(self, name: str, password: str) -> Account:
        """First run: the first service account. Refused once one exists."""
        if self.is_set_up():
            raise AuthError(
                f"{self.path}: already set up; a service engineer adds accounts with "
                "`laserctl service add-user`"
            )
        return self._create(name, Role.SERVICE, password, created_by=name, first=True)

    def add(self, by: Identity, name: str, role: Role, password: str) -> Account:
        """A new account, created by a service engineer who has just logged in."""
        require_service(by, "add an account")
        return self._create(name, role, password, created_by=by.name, first=False)

    def _create(
        self, name: str, role: Role, password: str, *, created_by: str, first: bool
    ) -> Account:
        if not NAME.match(name):
            raise AuthError(
                f"account name {name!r}: use 2-32 lower-case letters, digits, '_', '.', '-'"
            )
        check_password_strength(password)
        accounts = self._load()
        if name in accounts:
            raise AuthError(f"account {name!r} exists already")
        kid = None
        if role is Role.SERVICE:
            signing = keys.generate()
            keys.save_private(signing, self.key_path(name), password)
            kid = self.keyring.add(signing.public_key(), owner=name, added_by=created_by)
        now = self.clock()
        accounts[name] = {
            "role": str(role),
            "hash": self.hasher.hash(password),
            "created_at": now,
            "created_by": created_by,
            "key_id": kid,
        }
        self._save(accounts)
        what = "first-run setup: service account" if first else f"{role} account"
        self._audit(
            f"{what} {name} created",
            created_by,
            action="account",
            account=name,
            role=str(role),
            key_id=kid,
        )
        return Account(name, role, now, created_by, kid)

    def authenticate(self, name: str, password: str) -> Identity:
        """The identity behind these credentials, or AuthError (logged, without the password);
        LockedOut, without checking the password, while the name is locked out."""
        from argon2.exceptions import InvalidHashError, VerificationError

        entry = self._load().get(name)
        now = self.clock()
        try:
            admission = self.lockout.admit(name, now)
        except lockout.LockoutFileError as exc:
            raise AuthError(f"{exc}; a service engineer must inspect or remove it") from None
        if isinstance(admission, lockout.Locked):
            if admission.first_refusal:  # later ones are not: a script must not flood the log
                self._audit(
                    f"login refused: {name!r} is locked out "
                    f"({lockout.describe(admission.until, now)}); further refusals in this "
                    "lockout are not logged",
                    name,
                    action="login",
                    ok=False,
                    locked_until=admission.until,
                )
            raise LockedOut(f"too many failed logins for {name!r}", name, admission.until, now)
        try:
            stored = str(entry["hash"]) if entry is not None else self._decoy_hash()
            self.hasher.verify(stored, password)
            right = entry is not None
        except (VerificationError, InvalidHashError):
            right = False
        if right and entry is not None:
            before = self.lockout.clear(name, now)
            if before:
                self._audit(
                    f"{name} logged in: the count of {before} failed attempts before is cleared",
                    name,
                    action="login",
                    ok=True,
                    cleared=before,
                )
            return Identity(name, Role(entry["role"]))
        failures = admission.failures
        what = (
            f"failed login for {name}"
            if entry is not None
            else f"failed login: no account {name!r}"
        )
        self._audit(
            f"{what} ({failures} in a row)", name, action="login", ok=False, failures=failures
        )
        wrong = f"wrong user name or password for {name!r}"
        if not admission.lock_s:
            raise AuthError(wrong)
        self._audit(
            f"lockout: {name!r} locked for {admission.lock_s:.0f} s after {failures} failed "
            "logins in a row",
            name,
            action="lockout",
            failures=failures,
            lockout_s=admission.lock_s,
            locked_until=admission.until,
        )
        raise LockedOut(f"{wrong}; {failures} failed in a row", name, admission.until, now)

    def _decoy_hash(self) -> str:
        """A hash no password matches, made with the hasher's cost: what a name that is no
        account is checked against (the same work, the same answer as a wrong password).
        Made once per process and cost (the console makes an AccountBook per login)."""
        h = self.hasher
        cost = (h.type, h.time_cost, h.memory_cost, h.parallelism, h.hash_len, h.salt_len)
        if cost not in _DECOYS:
            _DECOYS[cost] = h.hash(secrets.token_urlsafe(24))
        return _DECOYS[cost]

    def login_service(self, name: str, password: str, action: str) -> Identity:
        """authenticate() and require the service role for `action`."""
        identity = self.authenticate(name, password)
        if not identity.is_service:
            self._audit(
                f"refused: {name} ({identity.role}) tried to {action}",
                name,
                action="login",
                ok=False,
            )
        require_service(identity, action)
        return identity

    def change_password(self, name: str, old: str, new: str) -> None:
        identity = self.authenticate(name, old)
        check_password_strength(new)
        accounts = self._load()
        if identity.is_service:
            key = keys.load_private(self.key_path(name), old)
            keys.save_private(key, self.key_path(name), new)
        accounts[name]["hash"] = self.hasher.hash(new)
        self._save(accounts)
        self._audit(f"password of {name} changed", name, action="password", account=name)

    def signing_key(self, identity: Identity, password: str) -> Ed25519PrivateKey:
        """The engineer's private signing key (decrypted with the password just checked)."""
        require_service(identity, "sign profiles")
        try:
            return keys.load_private(self.key_path(identity.name), password)
        except keys.KeyProblem as exc:
            raise AuthError(str(exc)) from None


def require_service(identity: Identity, action: str) -> None:
    if not identity.is_service:
        raise AuthError(f"{identity.name} is an {identity.role}: to {action} needs a service login")
