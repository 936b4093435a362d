"""`laserctl console`: the operator console (Textual), docs/operator-guide.md."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from . import EXIT_OK, EXIT_USAGE

DEFAULT_DEVICE = "sim:fractional-1550"  # offered on the connect screen


@click.command(
    epilog="Examples:\n\n  laserctl console     # the simulated fractional 1550 nm handpiece\n\n"
    "  laserctl console --device /dev/ttyUSB0 --db clinic.db\n\n"
    "  laserctl console --device sim:ndyag-1064 --profile ndyag-1064-thighs/alba\n\n"
    "  laserctl console --training     # simulated handpieces, uncalibrated, nothing recorded\n\n"
    "Keys: Esc (or F1) is the EMERGENCY STOP on every screen; e eyewear, a ARM, d or Space "
    "DISARM, r reset, x end the session; in simulation f footswitch and 1-6 faults."
)
@click.option(
    "--device",
    "url",
    default=None,
    help="Connect to this device URL at once (see laserctl --help); without it the connect "
    "screen offers sim:fractional-1550 and the devices found. sim: URLs are for training.",
)
@click.option(
    "--db",
    "db_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Shot log (default: laserctl.db in the user data directory).",
)
@click.option(
    "--plan",
    "plan_path",
    default=None,
    help="A treatment plan file (TOML or JSON) instead of a signed profile.",
)
@click.option(
    "--profile",
    default=None,
    metavar="SELECTOR",
    help="Preselect a profile: <profile id>/<rubra|alba>[/iv-vi].",
)
@click.option("--operator", default=None, help="The operator's name, logged with each session.")
@click.option(
    "--training",
    is_flag=True,
    help="Training on simulated handpieces only: no calibration needed, and a throwaway "
    "shot log instead of the clinic's (nothing is recorded).",
)
@click.option(
    "--reports",
    "reports_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Where session reports go (default: reports/ next to the shot log).",
)
@click.option(
    "--fleet",
    "fleet_url",
    envvar="LASERCTL_FLEET_URL",
    default=None,
    metavar="URL",
    help="The clinic chain's central store (postgresql://...; else $LASERCTL_FLEET_URL): "
    "the course rules count the patient's sessions on every console before a session starts, "
    "and refuse while it cannot be reached unless a service override (docs/fleet.md). The "
    "shot log is pushed there in the background: at start, after every session end and every "
    "--fleet-every minutes; the header shows how the last push went.",
)
@click.option(
    "--fleet-every",
    "fleet_every",
    type=click.FloatRange(min=0.1),
    default=5.0,
    show_default=True,
    metavar="MINUTES",
    help="With --fleet: how often the background push runs besides session ends.",
)
def console(
    url: str | None,
    db_path: Path | None,
    plan_path: str | None,
    profile: str | None,
    operator: str | None,
    reports_dir: Path | None,
    training: bool,
    fleet_url: str | None,
    fleet_every: float,
) -> None:
    """The operator console: connect, patient and profile, treatment, report, service.

    The emergency stop is Esc (or F1) on every screen, and the red E-STOP button at the top.
    """
    from laserctl.plan import PlanError, load_plan

    if plan_path and profile:
        click.echo("laserctl console: --plan and --profile exclude each other", err=True)
        sys.exit(EXIT_USAGE)
    if training and fleet_url and _from_environment("fleet_url"):
        fleet_url = None  # $LASERCTL_FLEET_URL set for the clinic: training asks nobody
    if training and (db_path or reports_dir or fleet_url):
        click.echo(
            "laserctl console: --training records nothing: no --db, no --reports, no --fleet",
            err=True,
        )
        sys.exit(EXIT_USAGE)
    try:
        plan = load_plan(plan_path) if plan_path else None
    except PlanError as exc:
        click.echo(f"laserctl console: {exc}", err=True)
        sys.exit(EXIT_USAGE)

    from laserctl.console.app import ConsoleApp
    from laserctl.console.clinic import Clinic
    from laserctl.console.host import ConsoleConfig

    app = ConsoleApp(
        Clinic(db_path, reports_dir=reports_dir, training=training, fleet_url=fleet_url),
        ConsoleConfig(
            device=url or DEFAULT_DEVICE,
            plan=plan,
            profile=profile,
            operator=operator,
            connect_at_start=url is not None,
            fleet_every_s=fleet_every * 60.0,
        ),
    )
    try:
        app.run()
    finally:
        app.close_all()  # disarm and close the link whatever happened
    sys.exit(EXIT_OK if app.return_code in (None, 0) else app.return_code)


def _from_environment(name: str) -> bool:
    source = click.get_current_context().get_parameter_source(name)
    return source is click.core.ParameterSource.ENVIRONMENT
