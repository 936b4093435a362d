"""`laserctl fleet decisions`: what every console decided about the course rules, as the
central store holds it (issue 14, SR-18): each session start the rules were asked for, with
the central store's answer, the decision (allowed, refused, overridden), and for an override
who and why, and whether it was made offline. Registered in `laserctl fleet` (cli/fleet.py)."""

from __future__ import annotations

import datetime as dt
import json
import sys

import click

from . import EXIT_FAILED, EXIT_OK


@click.command(
    epilog="Examples:\n\n  laserctl fleet decisions --to postgresql://laserctl@central/chain\n\n"
    "  laserctl fleet decisions --to postgresql://laserctl@central/chain --patient P-0042 "
    "--json\n\n"
    "A console's decisions reach the central store with its next `laserctl fleet push`; one "
    "made offline appears once the console is back online and has pushed.\n\n"
    "Exit codes: 0 shown (none is no error); 1 the central store could not be read; 2 usage."
)
@click.option(
    "--to",
    "url",
    envvar="LASERCTL_FLEET_URL",
    required=True,
    help="The central store: postgresql://user@host/db (else $LASERCTL_FLEET_URL).",
)
@click.option("--patient", default=None, help="Only this patient's (pseudonymous ID).")
@click.option("--offline", "offline_only", is_flag=True, help="Only decisions made while offline.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def decisions(url: str, patient: str | None, offline_only: bool, as_json: bool) -> None:
    """The course decisions of every console, oldest first."""
    from laserctl.fleet.courses import CentralCourses
    from laserctl.records import RecordError
    from laserctl.records.course_check import CentralUnreachable, decision_line
    from laserctl.records.patients import check_patient_id

    if patient is not None:
        try:
            check_patient_id(patient)
        except RecordError as exc:
            raise click.BadParameter(str(exc), param_hint="--patient") from None
    store = CentralCourses(url)
    try:
        found = store.decisions(patient)
    except CentralUnreachable as exc:
        click.echo(f"laserctl fleet decisions: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    if offline_only:
        found = [d for d in found if d.data.get("offline")]
    if as_json:
        out = {"central": store.where, "decisions": [d.to_json() for d in found]}
        click.echo(json.dumps(out, sort_keys=True))
        sys.exit(EXIT_OK)
    if not found:
        click.echo(f"no course decisions in {store.where}")
    for d in found:
        when = dt.datetime.fromtimestamp(d.at, dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
        click.echo(f"{when}  console {d.console}  {decision_line(d.data)}")
        for rule in d.data.get("rules") or ():
            click.echo(f"    - {rule}")
    sys.exit(EXIT_OK)
