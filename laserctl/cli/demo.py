"""`laserctl demo`: what `make run` shows until the operator console exists.

Starts (or connects to) a handpiece, identifies it, runs the self test, sets conservative
parameters, and streams status and shots; on a simulated handpiece it also arms a short burst
and presses the simulated footswitch, so the whole chain (grant, emission indicator, shot
records, SHOT_ACK) is visible. On real hardware it never arms.
"""

from __future__ import annotations

import queue
import sys
import time

import click

from . import EXIT_DEVICE, EXIT_FAILED

# Conservative demonstration settings, well inside both the published windows and the
# handpieces' capabilities (docs/protocol.md lists the parameters and units).
DEMO_PARAMS = {
    "fractional-1550": {
        "energy_mj": 12.0,
        "density_pct": 10.0,
        "depth_um": 600.0,
        "passes": 2.0,
        "rep_rate_hz": 5.0,
    },
    "ndyag-1064": {"fluence_j_cm2": 40.0, "pulse_ms": 15.0, "spot_mm": 5.0, "rep_rate_hz": 2.0},
}


@click.command(epilog="Example:\n\n  laserctl demo --device sim:ndyag-1064 --seconds 5")
@click.option(
    "--device",
    "url",
    default="sim:fractional-1550",
    show_default=True,
    help="Device URL (see laserctl --help).",
)
@click.option("--seconds", default=6.0, show_default=True, help="How long to stream status.")
@click.option(
    "--pulses",
    default=5,
    show_default=True,
    help="Pulses to fire on a simulated handpiece (0: none).",
)
def demo(url: str, seconds: float, pulses: int) -> None:
    """Identify a handpiece, set parameters and stream its status and shots."""
    from drivers.host import CommandError, HandpieceConnection, Notification
    from drivers.protocol import (
        Arm,
        DeviceEvent,
        DeviceInfo,
        DeviceState,
        Disarm,
        Fault,
        FaultCode,
        Param,
        SelfTest,
        SelfTestResult,
        SetParams,
        Shot,
        ShotAck,
        SimControl,
        StatusChanged,
    )

    events: queue.Queue[Notification] = queue.Queue()
    connection = HandpieceConnection(url, on_event=events.put, reconnect=False)
    try:
        info: DeviceInfo = connection.open()
    except CommandError as exc:
        click.echo(f"laserctl demo: {exc}", err=True)
        sys.exit(EXIT_DEVICE)
    try:
        sim_note = "  [SIMULATED HANDPIECE]" if info.simulated else ""
        click.echo(
            f"connected  {info.handpiece.slug} {info.wavelength_nm} nm, serial "
            f"{info.serial}, firmware {info.firmware}, protocol {info.protocol}{sim_note}"
        )
        result = connection.call(SelfTest())
        assert isinstance(result, SelfTestResult)
        click.echo("self test  " + ("passed" if result.passed else f"FAILED {result.items}"))
        if not result.passed:
            sys.exit(EXIT_FAILED)
        params = DEMO_PARAMS[info.handpiece.slug]
        values = tuple((int(Param[k.upper()]), round(v * 1000)) for k, v in params.items())
        connection.call(SetParams(values))
        click.echo("parameters " + ", ".join(f"{k}={v:g}" for k, v in params.items()))
        if info.simulated and pulses > 0:
            connection.call(Arm(pulses, 1000))
            click.echo(f"armed      grant {pulses} pulses, ready delay 1.0 s")
            connection.call(SimControl("press"))
            click.echo("footswitch pressed (simulated)")
        deadline = time.monotonic() + seconds
        shots = 0
        while time.monotonic() < deadline:
            try:
                note = events.get(timeout=0.1)
            except queue.Empty:
                continue
            if not isinstance(note, DeviceEvent):
                continue
            event = note.event
            if isinstance(event, Shot):
                shots += 1
                deviation = event.measured_milli / event.set_milli * 100 - 100
                click.echo(
                    f"shot {event.shot_no:>5}  set {event.set_milli / 1000:g}  measured "
                    f"{event.measured_milli / 1000:.2f} ({deviation:+.1f} %)  "
                    f"pulse {event.pulse_us} us"
                )
                connection.send(ShotAck(event.shot_no))
            elif isinstance(event, StatusChanged):
                body = event.body
                open_ = [i.name.lower() for i in info.interlocks if not body.is_closed(i)]
                click.echo(
                    f"status     {DeviceState(body.state).name:<10} emission "
                    f"{'ON ' if body.emission else 'off'} grant {body.grant_remaining:>3} "
                    f"temp {body.temp_mc / 1000:.1f} C  open: {', '.join(open_) or 'none'}"
                )
            elif isinstance(event, Fault):
                click.echo(
                    f"fault      {FaultCode(event.code).name}"
                    + (" (latched)" if event.latched else "")
                )
        if info.simulated and pulses > 0:
            connection.call(SimControl("release"))
        connection.call(Disarm())
        click.echo(f"done       {shots} shots seen; disarmed")
    except CommandError as exc:
        click.echo(f"laserctl demo: {exc}", err=True)
        sys.exit(EXIT_FAILED)
    finally:
        connection.close()
