"""`laserctl log verify` and `laserctl log export`: the shot log's integrity and its contents."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from . import EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from laserctl.records import RecordStore

DB_HELP = "Shot log database (default: laserctl.db in the user data directory)."


def open_readonly(db: str | None, command: str) -> RecordStore:
    from laserctl.records import RecordError, open_store
    from laserctl.records.store import default_path

    path = Path(db) if db else default_path()
    if not path.exists():
        fail(command, f"no shot log at {path}", EXIT_USAGE)
    try:
        return open_store(path, readonly=True)
    except RecordError as exc:
        fail(command, str(exc), EXIT_FAILED)


def fail(command: str, message: str, code: int) -> NoReturn:
    click.echo(f"laserctl {command}: {message}", err=True)
    sys.exit(code)


@click.group(
    epilog="Examples:\n\n  laserctl log verify --db clinic.db\n\n"
    "  laserctl log export --session S-20261123-1a2b3c4d --format csv > s.csv"
)
def log() -> None:
    """Verify the shot log's hash chains; export a session's shots."""


@log.command(
    epilog="Exit codes: 0 every chain is intact; 1 a record was modified, deleted, inserted or "
    "reordered (each is named), or the database cannot be read; 2 no database at that path."
)
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="TABLE:ROW:SHA256",
    help="An anchor printed earlier (by verify or a report): check it still holds.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(db: str | None, anchors: tuple[str, ...], as_json: bool) -> None:
    """Check every record's hash chain, the chain heads and the schema (SR-12)."""
    from laserctl.records import RecordError

    store = open_readonly(db, "log verify")
    try:
        report = store.verify(anchors)
    except RecordError as exc:
        fail("log verify", str(exc), EXIT_FAILED)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(report.to_json(), sort_keys=True))
    else:
        total = sum(report.records.values())
        counts = ", ".join(f"{n} {t}" for t, n in report.records.items() if n)
        if report.ok:
            click.echo(f"intact: {total} records ({counts}) in {report.seconds:.2f} s")
        else:
            click.echo(
                f"NOT INTACT: {len(report.problems)} problem(s) in {report.path} "
                f"({total} records checked)"
            )
            for problem in report.problems:
                click.echo(f"  {problem}")
        for anchor in report.anchors:
            click.echo(f"anchor {anchor}")
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@log.command(
    epilog="Examples:\n\n  laserctl log export --session S-20261123-1a2b3c4d --format json "
    "--out s.json"
)
@click.option("--session", "session_id", required=True, help="Session ID.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--out", default=None, help="Write to this file instead of standard output.")
@click.option("--db", default=None, help=DB_HELP)
def export(session_id: str, fmt: str, out: str | None, db: str | None) -> None:
    """A session's shots (CSV: one row a shot) or its shots and events (JSON)."""
    from laserctl.records import RecordError
    from laserctl.records.export import session_data, to_csv, to_json

    store = open_readonly(db, "log export")
    try:
        data = session_data(store, session_id)
    except RecordError as exc:
        fail("log export", str(exc), EXIT_FAILED)
    finally:
        store.close()
    text = to_csv(data) if fmt == "csv" else to_json(data) + "\n"
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
