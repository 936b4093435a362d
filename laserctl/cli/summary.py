"""The summary `laserctl session` prints at the end, for a person (--json prints the same
report as one JSON object)."""

from __future__ import annotations

from typing import Any

import click


def print_summary(report: dict[str, Any]) -> None:
    hp = report.get("handpiece") or {}
    sim = " (simulated)" if hp.get("simulated") else ""
    if report.get("training"):
        click.echo("TRAINING      simulated handpiece, uncalibrated, no patient, nothing logged")
    click.echo(f"plan          {report['plan_id']}")
    profile = report.get("profile")
    if profile:
        click.echo(
            f"profile       {profile.get('profile_id')} version {profile.get('profile_version')}"
            f" SHA-256 {str(profile.get('profile_sha256', ''))[:16]}..., operator values "
            f"{profile.get('operator_values') or 'none'}"
        )
    click.echo(f"handpiece     {hp.get('handpiece', '?')} {hp.get('serial', '?')}{sim}")
    cal = report.get("calibration")
    if cal and cal.get("id") is not None:
        lo, hi = cal["calibrated_range"]
        click.echo(
            f"calibration   {cal['id']} by {cal['who']}: {cal['dose_param']} range "
            f"{lo:.3f}..{hi:.3f}"
        )
    elif cal and not cal.get("valid"):
        click.echo(f"calibration   NONE: {cal.get('problem')}")
    decision = report.get("course_decision")
    if decision:
        from laserctl.records.course_check import decision_line

        click.echo(f"course        {decision_line(decision)}")
    click.echo(f"final state   {report['final_state']}")
    click.echo(
        f"shots         fired {report['shots_fired']} (device count), seen {report['shots_seen']}"
    )
    click.echo(
        f"dose          {report['pulses_used']} pulses, {report['fluence_used_j_cm2']:.1f} J/cm2"
    )
    click.echo(f"faults        {len(report['faults'])}")
    for fault in report["faults"]:
        click.echo(f"  - in {fault['state']}: {fault['cause']}")
    click.echo(f"refusals      {len(report['refusals'])}")
    for refusal in report["refusals"]:
        click.echo(f"  - line {refusal['line']} {refusal['command']}: {refusal['reason']}")
    if report["warnings"]:
        click.echo(f"warnings      {len(report['warnings'])}")
        for warning in report["warnings"][:10]:
            click.echo(f"  - {warning}")
    for error in report["errors"]:
        click.echo(f"error         line {error['line']} {error['step']}: {error['error']}")
    if report["latched_causes"]:
        click.echo("latched       " + "; ".join(report["latched_causes"]))
