"""`laserctl fleet push` and `laserctl fleet status`: the clinic chain's central store
(docs/fleet.md)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from . import EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .fleet_decisions import decisions
from .log import DB_HELP, fail

TO_HELP = "The central store: postgresql://user@host/db (else $LASERCTL_FLEET_URL)."
KEY_HELP = "The console's key (default: console-key.pem in the config directory)."


@click.group(
    epilog="Examples:\n\n  laserctl fleet push --to postgresql://laserctl@central/chain "
    "--db clinic.db\n\n  laserctl fleet status --to postgresql://laserctl@central/chain "
    "--db clinic.db --json"
)
def fleet() -> None:
    """Ship this console's shot log to the chain's central store; what it holds."""


def _key(path: Path | None, command: str) -> Any:
    from laserctl.auth.console_key import load_or_create
    from laserctl.auth.keys import KeyProblem

    try:
        return load_or_create(path)
    except KeyProblem as exc:
        fail(command, str(exc), EXIT_FAILED)


@fleet.command(
    epilog="Exit codes: 0 everything was shipped; 1 refused by the central store (a fork, a "
    "forged or truncated log, a different key: named), or it could not be reached (push again "
    "to resume: nothing is lost); 2 usage."
)
@click.option("--to", "url", envvar="LASERCTL_FLEET_URL", required=True, help=TO_HELP)
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--batch",
    default=1000,
    show_default=True,
    type=click.IntRange(1, 100_000),
    help="Rows per transaction.",
)
@click.option("--key", "key_path", type=click.Path(path_type=Path), default=None, help=KEY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def push(url: str, db: str | None, batch: int, key_path: Path | None, as_json: bool) -> None:
    """Ship every record the central store has not acknowledged, in batches; resumable."""
    from laserctl.fleet.central import CentralError
    from laserctl.fleet.outbox import LocalLogProblem
    from laserctl.fleet.push import push as do_push
    from laserctl.records import RecordError
    from laserctl.records.db import default_path

    path = Path(db) if db else default_path()
    if not path.exists():
        fail("fleet push", f"no shot log at {path}", EXIT_USAGE)
    key = _key(key_path, "fleet push")
    try:
        report = do_push(path, url, key=key, batch=batch)
    except (CentralError, LocalLogProblem, RecordError) as exc:
        fail("fleet push", str(exc), EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(report.to_json(), sort_keys=True))
    else:
        new = sum(report.shipped.values())
        parts = ", ".join(f"{n} {t}" for t, n in report.shipped.items()) or "nothing new"
        click.echo(
            f"shipped {new} rows ({parts}) and {report.checkpoints} checkpoint(s) of console "
            f"{report.console_id} to {report.central} in {report.batches} batch(es)"
        )
        resent = sum(report.resent.values())
        if resent:
            click.echo(f"  {resent} rows were already there (an earlier push was cut): skipped")
    sys.exit(EXIT_OK)


@fleet.command(
    epilog="Exit codes: 0 shown; 1 the central store cannot be read, or a console's last "
    "checkpoint no longer holds; 2 usage."
)
@click.option("--to", "url", envvar="LASERCTL_FLEET_URL", required=True, help=TO_HELP)
@click.option("--db", default=None, help="This console's shot log: count what is pending.")
@click.option("--key", "key_path", type=click.Path(path_type=Path), default=None, help=KEY_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def status(url: str, db: str | None, key_path: Path | None, as_json: bool) -> None:
    """Per console: rows shipped, pending (with --db), last verified checkpoint, refusals."""
    from laserctl.fleet import central
    from laserctl.fleet.status import status as do_status
    from laserctl.fleet.status import text_lines
    from laserctl.records import RecordError

    console_id = None
    if db is not None:
        if not Path(db).exists():
            fail("fleet status", f"no shot log at {db}", EXIT_USAGE)
        console_id = _key(key_path, "fleet status").console_id
    try:
        with central.connect(url) as store:
            report = do_status(store, db=db, console_id=console_id)
    except (central.CentralError, RecordError) as exc:
        fail("fleet status", str(exc), EXIT_FAILED)
    except Exception as exc:  # psycopg errors while reading
        fail("fleet status", f"central store {central.redact(url)}: {exc}", EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(report, sort_keys=True))
    else:
        for line in text_lines(report):
            click.echo(line)
    broken = any(c["verified"]["ok"] is False for c in report["consoles"])
    sys.exit(EXIT_FAILED if broken else EXIT_OK)


fleet.add_command(decisions)  # the course decisions every console shipped (fleet_decisions.py)
