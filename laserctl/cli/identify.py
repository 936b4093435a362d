"""`laserctl identify`: connect, check the protocol version, print who the handpiece is."""

from __future__ import annotations

import json
import sys

import click

from . import EXIT_DEVICE


@click.command(
    epilog="Examples:\n\n  laserctl identify --device sim:ndyag-1064\n\n"
    "  laserctl identify --device /dev/ttyUSB0 --json"
)
@click.option("--device", "url", required=True, help="Device URL (see laserctl --help).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
@click.option("--timeout", default=2.0, show_default=True, help="Seconds to wait for HELLO_INFO.")
def identify(url: str, as_json: bool, timeout: float) -> None:
    """Connect to a handpiece and print its type, serial, firmware, protocol and capabilities."""
    from drivers.host import CommandError, HandpieceConnection

    connection = HandpieceConnection(url, reconnect=False, hello_timeout=timeout)
    try:
        info = connection.open()
    except CommandError as exc:
        click.echo(f"laserctl identify: {exc}", err=True)
        sys.exit(EXIT_DEVICE)
    finally:
        connection.close()
    data = info.to_json()
    if as_json:
        click.echo(json.dumps(data, sort_keys=True))
        return
    click.echo(
        f"handpiece  {data['handpiece']} ({info.wavelength_nm} nm)"
        + ("  [SIMULATED]" if info.simulated else "")
    )
    click.echo(f"serial     {info.serial}")
    click.echo(f"firmware   {info.firmware}")
    click.echo(f"protocol   {info.protocol}")
    click.echo(f"interlocks {', '.join(data['interlocks'])}")
    click.echo("capabilities")
    for name, window in data["capabilities"].items():
        click.echo(f"  {name:<15} {window['min']:g} .. {window['max']:g}")
