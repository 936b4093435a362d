"""Login lockout (SR-19): repeated failed logins lock the name tried, for longer each time, so
a scripted guesser is slowed to a stated rate. The account book applies it on every password
check (laserctl.auth.accounts); docs/service-guide.md states the policy and the rate.

Policy: the 5th failed login in a row of a name locks it for 30 s; each further failure after
a lockout doubles it (60, 120, ... s) up to MAX_LOCK_S = 1 h. A successful login clears it.
Names that are not accounts are counted and locked the same way, so a lockout reveals nothing
about which accounts exist. While a name is locked an attempt is refused before any password
check. A guesser retrying the moment it is allowed gets 34 password checks in its first 24 h
and 24 a day after that (`checks_allowed`).

The policy is pure (`admit`); LockoutFile keeps it per name in login-lockout.json beside
accounts.json, so a restart does not clear it. An attempt is counted as failed before its
password is checked and cleared if the password was right: two processes (the console and a
CLI command, or a guesser's parallel runs) cannot both use one attempt during the seconds of an
Argon2 check, and a process killed mid-check has still spent the attempt. Each
read-count-write runs under an exclusive lock (flock) and the file is replaced atomically.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .paths import read_table, write_private

THRESHOLD = 5  # failed logins in a row before the first lockout
FIRST_LOCK_S = 30.0
MAX_LOCK_S = 3600.0
# A name's count is forgotten a day after its last failure (the file stays bounded). Waiting a
# day to start again with 5 quick guesses gets fewer than carrying on at one an hour.
FORGET_AFTER_S = 86400.0
MAX_KEY = 64  # account names have at most 32 characters; longer names tried are cut to this


class LockoutFileError(Exception):
    """The lockout file cannot be read or makes no sense; says which and where."""


def lock_seconds(failures: int) -> float:
    """The lockout that this many failed logins in a row start: 0 below THRESHOLD, then 30 s
    doubling to MAX_LOCK_S."""
    if failures < THRESHOLD:
        return 0.0
    return min(FIRST_LOCK_S * 2.0 ** min(failures - THRESHOLD, 32), MAX_LOCK_S)


def checks_allowed(seconds: float) -> int:
    """How many password checks a guesser that retries the moment it may gets in `seconds`
    from its first attempt (each check taking no time): the bound the tests hold the real
    login to. 24 h: 5 at once, 6 more in the next 32 min (30 + 60 + ... + 960 s), then one
    every hour from 3810 s on: 34."""
    at, failures = 0.0, 0
    while at <= seconds:
        failures += 1
        at += lock_seconds(failures)
    return failures


def describe(until: float, now: float) -> str:
    """'locked for 25 s, try again at 14:03:07' (local time)."""
    left = max(1, math.ceil(until - now))
    return f"locked for {left} s, try again at {time.strftime('%H:%M:%S', time.localtime(until))}"


@dataclass(frozen=True, slots=True)
class NameRecord:
    """One name's failed logins."""

    failures: int  # in a row, the attempt being checked included
    last_failure: float  # clock seconds
    locked_until: float  # 0.0: not locked
    refusal_logged: bool  # an attempt refused during this lockout has been logged


@dataclass(frozen=True, slots=True)
class Locked:
    """Refused: the name is locked out; no password is checked."""

    until: float
    first_refusal: bool  # the first attempt refused in this lockout (logged; later ones not)


@dataclass(frozen=True, slots=True)
class Counted:
    """Admitted to a password check, already counted as failed."""

    failures: int  # in a row, this one included
    lock_s: float  # the lockout this attempt starts if its password is wrong; 0: none
    until: float  # the end of that lockout; 0.0: none


def admit(record: NameRecord | None, now: float) -> tuple[Locked | Counted, NameRecord]:
    """What happens to an attempt on a name with this record, and the name's record after it
    (the attempt counted as failed until its password turns out right)."""
    if record is not None and forgotten(record, now):
        record = None
    if record is not None and now < record.locked_until:
        # never longer than the lockout itself, should the clock have been set back
        until = min(record.locked_until, now + lock_seconds(record.failures))
        after = dataclasses.replace(record, locked_until=until, refusal_logged=True)
        return Locked(until, not record.refusal_logged), after
    failures = (record.failures if record is not None else 0) + 1
    lock = lock_seconds(failures)
    until = now + lock if lock else 0.0
    return Counted(failures, lock, until), NameRecord(failures, now, until, False)


def forgotten(record: NameRecord, now: float) -> bool:
    return now - record.last_failure >= FORGET_AFTER_S and now >= record.locked_until


def key(name: str) -> str:
    return name[:MAX_KEY]


class LockoutFile:
    """The lockout records of every name tried, in the config directory."""

    FILENAME = "login-lockout.json"

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock_path = path.with_name(path.name + ".lock")

    def admit(self, name: str, now: float) -> Locked | Counted:
        """admit() for this name, its record updated on disk before the return."""
        with self._exclusive():
            records = self._load()
            before = records.get(key(name))
            decision, after = admit(before, now)
            if after != before:
                records[key(name)] = after
                self._save(records, now)
        return decision

    def clear(self, name: str, now: float) -> int:
        """A successful login: forget the name's failures; how many there were before this
        attempt."""
        with self._exclusive():
            records = self._load()
            record = records.pop(key(name), None)
            if record is None:
                return 0
            self._save(records, now)
        return record.failures - 1  # this attempt was counted before its check

    def record(self, name: str) -> NameRecord | None:
        with self._exclusive():
            return self._load().get(key(name))

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self._lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the lock

    def _load(self) -> dict[str, NameRecord]:
        names = read_table(self.path, "names", "lockout file", LockoutFileError)
        records = {}
        for name, entry in names.items():
            try:
                failures = _number(entry, "failures")
                if failures != int(failures) or failures < 1:
                    raise ValueError(f"failures: not a count: {failures!r}")
                records[name] = NameRecord(
                    failures=int(failures),
                    last_failure=_number(entry, "last_failure"),
                    locked_until=_number(entry, "locked_until"),
                    refusal_logged=bool(entry["refusal_logged"]),
                )
            except (KeyError, TypeError, ValueError) as exc:
                raise LockoutFileError(f"{self.path}: name {name!r}: {exc}") from None
        return records

    def _save(self, records: dict[str, NameRecord], now: float) -> None:
        kept = {n: r for n, r in sorted(records.items()) if not forgotten(r, now)}
        body = {"format": 1, "names": {n: dataclasses.asdict(r) for n, r in kept.items()}}
        write_private(self.path, (json.dumps(body, indent=2) + "\n").encode("utf-8"))


def _number(entry: object, field: str) -> float:
    if not isinstance(entry, dict):
        raise TypeError("not a table")
    value = entry[field]
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{field}: not a number: {value!r}")
    return float(value)
