"""`laserctl course show PATIENT`: a patient's treatment courses (SR-18)."""

from __future__ import annotations

import json
from typing import Any

import click

from . import EXIT_FAILED
from .log import DB_HELP, fail, open_readonly


@click.group(epilog="Examples:\n\n  laserctl course show P-0042 --db clinic.db")
def course() -> None:
    """Treatment courses: at most 5 sessions per course and area, 21 days apart (SR-18)."""


@course.command(epilog="Exit codes: 0 shown; 1 no such patient or the log cannot be read.")
@click.argument("patient")
@click.option("--db", default=None, help=DB_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option(
    "--fleet",
    "fleet_url",
    envvar="LASERCTL_FLEET_URL",
    default=None,
    metavar="URL",
    help="The central store (else $LASERCTL_FLEET_URL): the sessions of every console.",
)
def show(patient: str, db: str | None, as_json: bool, fleet_url: str | None) -> None:
    """Sessions, dates, shots and dose per area, and when the next session may start; with
    --fleet across every console of the chain (a line says what the central store added, or
    that it could not be reached)."""
    from laserctl.fleet.courses import CentralCourses, course_summary
    from laserctl.records import RecordError

    store = open_readonly(db, "course show")
    try:
        summary, note = course_summary(
            store, patient, CentralCourses(fleet_url) if fleet_url else None
        )
    except RecordError as exc:
        fail("course show", str(exc), EXIT_FAILED)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps({**summary, **({"fleet": note} if note else {})}, sort_keys=True))
        return
    _print(summary)
    if note:
        click.echo(note)


def _print(summary: dict[str, Any]) -> None:
    from laserctl.records.courses import summary_lines

    for line in summary_lines(summary):
        click.echo(line)
