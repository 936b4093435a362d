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
def show(patient: str, db: str | None, as_json: bool) -> None:
    """Sessions, dates, shots and dose per area, and when the next session may start."""
    from laserctl.records import RecordError

    store = open_readonly(db, "course show")
    try:
        summary = store.course_summary(patient)
    except RecordError as exc:
        fail("course show", str(exc), EXIT_FAILED)
    finally:
        store.close()
    if as_json:
        click.echo(json.dumps(summary, sort_keys=True))
        return
    _print(summary)


def _print(summary: dict[str, Any]) -> None:
    from laserctl.records.courses import summary_lines

    for line in summary_lines(summary):
        click.echo(line)
