"""`laserctl report SESSION_ID`: a self-contained HTML report of one session."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import EXIT_FAILED
from .log import DB_HELP, fail, open_readonly


@click.command(
    epilog="Examples:\n\n  laserctl report S-20261123-1a2b3c4d\n\n"
    "  laserctl report S-20261123-1a2b3c4d --db clinic.db --out -  > report.html"
)
@click.argument("session_id")
@click.option("--out", default=None, help="Output file (default SESSION_ID.html; - for stdout).")
@click.option("--db", default=None, help=DB_HELP)
@click.option("--no-verify", is_flag=True, help="Skip the hash-chain check in the report.")
def report(session_id: str, out: str | None, db: str | None, no_verify: bool) -> None:
    """Session parameters, set against measured energy per shot, dose per area, faults and
    warnings, and the log's integrity: one HTML file with no script and nothing fetched."""
    from laserctl.records import RecordError
    from laserctl.records.report import render_report

    store = open_readonly(db, "report")
    try:
        text = render_report(store, session_id, verify=not no_verify)
    except RecordError as exc:
        fail("report", str(exc), EXIT_FAILED)
    finally:
        store.close()
    if out == "-":
        click.echo(text, nl=False)
        return
    path = Path(out or f"{session_id}.html")
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        fail("report", f"cannot write {path}: {exc.strerror or exc}", EXIT_FAILED)
    click.echo(str(path))
    sys.exit(0)
