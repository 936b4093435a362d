"""`laserctl calibrate`: service calibration of a handpiece (SR-14), and the daily verification."""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import EXIT_DEVICE, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .service import fail, login_options, open_log, service_login

if TYPE_CHECKING:
    from drivers.host import HandpieceConnection
    from drivers.protocol import DeviceInfo
    from laserctl.calibration import Outcome
    from laserctl.records import RecordStore


@click.command(
    epilog="Examples:\n\n  laserctl calibrate --device /dev/ttyUSB0 --user alice\n\n"
    "  laserctl calibrate --device /dev/ttyUSB0 --verify\n\n"
    "Exit codes: 0 calibrated (or verified); 1 refused, fit out of bounds or verification "
    "failed; 2 usage; 3 the device could not be reached."
)
@click.option("--device", "url", required=True, help="Device URL (see laserctl --help).")
@click.option("--verify", "verify_only", is_flag=True, help="Daily user verification only.")
@click.option("--points", default=6, show_default=True, type=click.IntRange(4, 20))
@click.option("--repeats", default=4, show_default=True, type=click.IntRange(2, 20))
@click.option(
    "--valid-days", default=30.0, show_default=True, type=click.FloatRange(1, 365), help="Expiry."
)
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where to write the SVG plot of the fit (default: calibrations/ beside the event log).",
)
@click.option(
    "--sim-inject",
    multiple=True,
    help="Simulated handpieces only: a fault-injection command first (e.g. 'drift 25').",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object at the end.")
@login_options
def calibrate(
    url: str,
    verify_only: bool,
    points: int,
    repeats: int,
    valid_days: float,
    plot_path: Path | None,
    sim_inject: tuple[str, ...],
    as_json: bool,
    user: str | None,
    password_file: Path | None,
    db_path: Path | None,
) -> None:
    """Calibrate the handpiece's output against its internal power meter (service engineers).

    Fires test pulses (they stay inside the handpiece) at several set points, fits measured
    against set, rejects a fit out of bounds, stores the calibration with who, when, points,
    fit and expiry, and writes a plot. Without a valid calibration a handpiece cannot be armed.

    With --verify (operators, daily and whenever the handpiece is changed): a few test pulses
    with calibrated set points, compared with the targets; a failure revokes the calibration.
    """
    store = open_log(db_path)
    try:
        if verify_only:
            who = user or os.environ.get("LASERCTL_OPERATOR") or getpass.getuser()
            _verify(store, url, who, sim_inject, as_json)
        else:
            _, identity, _ = service_login(user, password_file, store, "calibrate a handpiece")
            _calibrate(
                store,
                url,
                who=identity.name,
                points=points,
                repeats=repeats,
                valid_days=valid_days,
                plot_path=plot_path,
                sim_inject=sim_inject,
                as_json=as_json,
            )
    finally:
        store.close()


def _connect(url: str, sim_inject: tuple[str, ...]) -> tuple[HandpieceConnection, DeviceInfo]:
    from drivers.host import CommandError, HandpieceConnection
    from drivers.protocol import SimControl

    connection = HandpieceConnection(url, reconnect=False)
    try:
        info = connection.open()
    except CommandError as exc:
        fail(f"{url}: {exc}", EXIT_DEVICE)
    if sim_inject and not info.simulated:
        connection.close()
        fail(f"--sim-inject on a real handpiece ({info.serial}): nothing was sent", EXIT_USAGE)
    try:
        for text in sim_inject:
            connection.call(SimControl(text))
    except CommandError as exc:
        connection.close()
        fail(f"--sim-inject: {exc}", EXIT_USAGE)
    return connection, info


def _calibrate(
    store: RecordStore,
    url: str,
    *,
    who: str,
    points: int,
    repeats: int,
    valid_days: float,
    plot_path: Path | None,
    sim_inject: tuple[str, ...],
    as_json: bool,
) -> None:
    from drivers.host import CommandError
    from laserctl.calibration import CalibrationFailed, calibrate

    connection, info = _connect(url, sim_inject)
    try:
        with click.progressbar(
            length=points * repeats,
            label=f"calibrating {info.serial}",
            file=sys.stderr,
            show_pos=True,
        ) as bar:
            outcome = calibrate(
                connection,
                info,
                who,
                points=points,
                repeats=repeats,
                validity_days=valid_days,
                progress=bar.update,
            )
    except (CalibrationFailed, CommandError) as exc:
        store.log_event(
            "service",
            f"calibration of {info.serial} failed: {exc}",
            who=who,
            data={"action": "calibration", "ok": False, "serial": info.serial},
        )
        fail(f"calibration of {info.serial} failed: {exc}")
    finally:
        connection.close()
    plot = _write_plot(outcome, info, store, plot_path)
    summary: dict[str, Any] = {
        "serial": info.serial,
        "handpiece": info.handpiece.slug,
        "accepted": outcome.accepted,
        "fit": outcome.fit.to_json() if outcome.fit else None,
        "problems": outcome.problems,
        "plot": str(plot),
        "who": who,
    }
    if outcome.calibration is None:
        store.log_event(
            "service",
            f"calibration of {info.serial} rejected: {'; '.join(outcome.problems)}",
            who=who,
            data={"action": "calibration", "ok": False, **summary},
        )
        _print_summary(summary, as_json)
        sys.exit(EXIT_FAILED)
    import dataclasses

    calibration = dataclasses.replace(outcome.calibration, plot=str(plot))
    record_id = store.add_calibration(
        info.serial, info.handpiece.slug, who, calibration.to_record()
    )
    lo, hi = calibration.target_range
    summary.update(
        id=record_id,
        expires=dt.datetime.fromtimestamp(calibration.expires_at, dt.UTC).isoformat(
            timespec="seconds"
        ),
        calibrated_range=[lo, hi],
        unit=calibration.dose_param.field_name,
    )
    _print_summary(summary, as_json)
    sys.exit(EXIT_OK)


def _write_plot(
    outcome: Outcome, info: DeviceInfo, store: RecordStore, plot_path: Path | None
) -> Path:
    from laserctl.calibration import plot
    from laserctl.calibration.procedure import dose_param

    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
    path = plot_path or store.path.parent / "calibrations" / f"{info.serial}-{stamp}.svg"
    path.parent.mkdir(parents=True, exist_ok=True)
    unit = dose_param(info).field_name
    path.write_text(
        plot.svg(
            outcome.points,
            outcome.fit,
            title=f"Calibration of {info.handpiece.slug} {info.serial}, {stamp}",
            unit=unit,
            accepted=outcome.accepted,
            notes=outcome.problems,
        ),
        encoding="utf-8",
    )
    return path


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    fit = summary["fit"]
    verdict = "ACCEPTED" if summary["accepted"] else "REJECTED"
    click.echo(f"{summary['handpiece']} {summary['serial']}: calibration {verdict}")
    if fit:
        click.echo(
            f"  measured = {fit['slope']:.4f} x set {fit['offset']:+.4f}  residual "
            f"{fit['residual_pct']:.2f} %  linearity {fit['linearity_pct']:.2f} %  "
            f"({fit['pulses']} pulses at {fit['set_points']} set points)"
        )
    for problem in summary["problems"]:
        click.echo(f"  {problem}")
    if summary.get("calibrated_range"):
        lo, hi = summary["calibrated_range"]
        click.echo(f"  calibrated range {summary['unit']} {lo:.3f}..{hi:.3f}")
        click.echo(f"  stored as calibration {summary['id']}, expires {summary['expires']}")
    click.echo(f"  plot: {summary['plot']}")


def _verify(
    store: RecordStore, url: str, who: str, sim_inject: tuple[str, ...], as_json: bool
) -> None:
    import time

    from drivers.host import CommandError
    from laserctl.calibration import CalibrationFailed, CalibrationInvalid
    from laserctl.calibration.daily import VERIFY_PULSES, WHAT_TO_DO, run_daily_verification

    connection, info = _connect(url, sim_inject)
    try:
        with click.progressbar(
            length=VERIFY_PULSES, label=f"verifying {info.serial}", file=sys.stderr
        ) as bar:
            done = run_daily_verification(
                store, connection, info, who, progress=bar.update, clock=time.time
            )
    except CalibrationInvalid as exc:
        fail(str(exc))
    except (CalibrationFailed, CommandError) as exc:
        fail(f"verification of {info.serial} could not run: {exc}")
    finally:
        connection.close()
    data, result, message = done.to_json(), done.result, done.message
    if as_json:
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(message)
        for check in result.checks:
            click.echo(
                f"  target {check.target:g}: sent {check.drive:g}, measured mean "
                f"{check.mean:.3f} ({check.deviation_pct:+.2f} %)"
            )
        if not result.passed:
            click.echo(f"  {WHAT_TO_DO}")
    sys.exit(EXIT_OK if result.passed else EXIT_FAILED)
