"""`laserctl service`: first-run setup, accounts and the service login other commands use.

Credentials are read, in this order, from --password-file (first line), the environment
(LASERCTL_SERVICE_PASSWORD, for CI and scripts) or a hidden prompt; never from a plain
command-line option, which would show in the process list and the shell history (SR-19).
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from . import EXIT_FAILED, EXIT_OK

if TYPE_CHECKING:
    from laserctl.auth import AccountBook, Identity
    from laserctl.records import RecordStore

ENV_USER = "LASERCTL_SERVICE_USER"
ENV_PASSWORD = "LASERCTL_SERVICE_PASSWORD"
ENV_NEW_PASSWORD = "LASERCTL_NEW_PASSWORD"

F = TypeVar("F", bound=Callable[..., Any])


def fail(message: str, code: int = EXIT_FAILED) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def login_options(func: F) -> F:
    """--user, --password-file, --db: what a service command needs to log in and be logged."""
    func = click.option(
        "--db",
        "db_path",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="Event log (laserctl.db); default: the user data directory.",
    )(func)
    func = click.option(
        "--password-file",
        type=click.Path(dir_okay=False, exists=True, path_type=Path),
        default=None,
        help=f"Read the password from this file's first line (else ${ENV_PASSWORD}, else a "
        "prompt).",
    )(func)
    return click.option(
        "--user", default=None, help=f"Service account (else ${ENV_USER}, else a prompt)."
    )(func)


def read_password(password_file: Path | None, *, env: str = ENV_PASSWORD, prompt: str) -> str:
    if password_file is not None:
        lines = password_file.read_text(encoding="utf-8").splitlines()
        return lines[0] if lines else ""
    from_env = os.environ.get(env)
    if from_env:
        return from_env
    return str(click.prompt(prompt, hide_input=True))


def read_user(user: str | None) -> str:
    return user or os.environ.get(ENV_USER) or str(click.prompt("Service user"))


def open_log(db_path: Path | None) -> RecordStore:
    from laserctl.records import RecordError, open_store

    try:
        return open_store(db_path)
    except RecordError as exc:
        fail(str(exc))


def service_login(
    user: str | None, password_file: Path | None, store: RecordStore, action: str
) -> tuple[AccountBook, Identity, str]:
    """Log a service engineer in for `action`, or exit 1 (the failure is logged). A name
    locked out after failed logins is refused unchecked, the message saying until when
    (laserctl.auth.lockout)."""
    from laserctl.auth import AccountBook, AuthError

    book = AccountBook(log=store)
    if not book.is_set_up():
        fail("no service account on this device yet: run `laserctl service setup` first")
    name = read_user(user)
    password = read_password(password_file, prompt=f"Password for {name}")
    try:
        identity = book.login_service(name, password, action)
    except AuthError as exc:
        fail(f"{action} refused: {exc}")
    return book, identity, password


@click.group()
def service() -> None:
    """Service accounts and first-run setup (SR-19).

    Service functions (calibration, profile signing, limit changes, course overrides) need a
    service engineer's login; each is logged with who and when.
    """


@service.command()
@click.option("--user", default=None, help=f"Name of the first service account (${ENV_USER}).")
@click.option(
    "--password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help=f"Read the new password from this file (else ${ENV_PASSWORD}, else a prompt).",
)
@click.option("--db", "db_path", type=click.Path(dir_okay=False, path_type=Path), default=None)
def setup(user: str | None, password_file: Path | None, db_path: Path | None) -> None:
    """First run: create the first service account and its profile-signing key.

    Refused once a service account exists. The password is hashed with Argon2id; the signing
    key's private half is encrypted with it, its public half joins this device's keyring.
    """
    from laserctl.auth import AccountBook, AuthError, config_dir

    store = open_log(db_path)
    try:
        book = AccountBook(log=store)
        name = read_user(user)
        if password_file is None and not os.environ.get(ENV_PASSWORD):
            password = str(
                click.prompt(f"New password for {name}", hide_input=True, confirmation_prompt=True)
            )
        else:
            password = read_password(password_file, prompt="")
        try:
            account = book.setup(name, password)
        except AuthError as exc:
            fail(str(exc))
        click.echo(
            f"service account {account.name} created in {config_dir()}; signing key "
            f"{account.key_id} added to the keyring"
        )
    finally:
        store.close()


@service.command("add-user")
@click.argument("name")
@click.option(
    "--role", type=click.Choice(["operator", "service"]), default="operator", show_default=True
)
@click.option(
    "--new-password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help=f"The new account's password (else ${ENV_NEW_PASSWORD}, else a prompt).",
)
@login_options
def add_user(
    name: str,
    role: str,
    new_password_file: Path | None,
    user: str | None,
    password_file: Path | None,
    db_path: Path | None,
) -> None:
    """Add an operator or service account (needs a service login)."""
    from laserctl.auth import AuthError, Role

    store = open_log(db_path)
    try:
        book, identity, _ = service_login(user, password_file, store, "add an account")
        new_password = read_password(
            new_password_file, env=ENV_NEW_PASSWORD, prompt=f"New password for {name}"
        )
        try:
            account = book.add(identity, name, Role(role), new_password)
        except AuthError as exc:
            fail(str(exc))
        key = f", signing key {account.key_id}" if account.key_id else ""
        click.echo(f"{account.role} account {account.name} created by {identity.name}{key}")
    finally:
        store.close()


@service.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def users(as_json: bool) -> None:
    """List accounts (names, roles, keys; never a hash)."""
    from laserctl.auth import AccountBook, AuthError

    try:
        accounts = AccountBook().accounts()
    except AuthError as exc:
        fail(str(exc))
    rows = [
        {
            "name": a.name,
            "role": str(a.role),
            "created_at": a.created_at,
            "created_by": a.created_by,
            "key_id": a.key_id,
        }
        for a in accounts
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        click.echo("no accounts: run `laserctl service setup`")
    for row in rows:
        click.echo(f"{row['name']:<20} {row['role']:<9} key {row['key_id'] or '-'}")
    sys.exit(EXIT_OK)


@service.command()
@login_options
@click.option(
    "--new-password-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help=f"The new password (else ${ENV_NEW_PASSWORD}, else a prompt).",
)
def passwd(
    user: str | None,
    password_file: Path | None,
    db_path: Path | None,
    new_password_file: Path | None,
) -> None:
    """Change your password (and re-encrypt your signing key with it)."""
    from laserctl.auth import AccountBook, AuthError

    store = open_log(db_path)
    try:
        name = read_user(user)
        old = read_password(password_file, prompt=f"Current password for {name}")
        new = read_password(new_password_file, env=ENV_NEW_PASSWORD, prompt="New password")
        try:
            AccountBook(log=store).change_password(name, old, new)
        except AuthError as exc:
            fail(str(exc))
        click.echo(f"password of {name} changed")
    finally:
        store.close()
