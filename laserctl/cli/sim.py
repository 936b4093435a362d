"""`laserctl sim`: the simulated handpiece in its own process, on a pty or a TCP port."""

from __future__ import annotations

import signal
import sys
import time
from types import FrameType

import click


@click.command(
    epilog="Examples:\n\n  laserctl sim --handpiece fractional-1550 --listen pty\n\n"
    "  laserctl sim --handpiece ndyag-1064 --listen tcp:7000 --throttle 115200"
)
@click.option(
    "--handpiece",
    type=click.Choice(["fractional-1550", "ndyag-1064"]),
    default="fractional-1550",
    show_default=True,
)
@click.option(
    "--listen", default="pty", show_default=True, help="pty, or tcp:PORT (127.0.0.1; 0 = any free)."
)
@click.option(
    "--seed", default=1, show_default=True, help="Seed of the noise and the serial number."
)
@click.option("--serial", "serial_no", default=None, help="Serial number to report.")
@click.option(
    "--throttle",
    type=int,
    default=None,
    metavar="BAUD",
    help="Pace both directions as a UART at BAUD (8N1) would; a pty ignores baud rates.",
)
def sim(
    handpiece: str, listen: str, seed: int, serial_no: str | None, throttle: int | None
) -> None:
    """Serve a simulated handpiece until interrupted.

    The first line printed is `pty: /dev/pts/N` or `url: socket://127.0.0.1:PORT`.
    """
    from drivers.sim.firmware import SimulatedHandpiece
    from drivers.sim.server import PtyServer, TcpServer

    model = SimulatedHandpiece(handpiece, seed=seed, serial=serial_no, now=time.monotonic())
    server: PtyServer | TcpServer
    if listen == "pty":
        server = PtyServer(model, baud=throttle)
        click.echo(f"pty: {server.path}")
    elif listen.startswith("tcp:"):
        try:
            port = int(listen[4:])
        except ValueError:
            raise click.BadParameter(
                f"{listen!r}: expected tcp:PORT", param_hint="--listen"
            ) from None
        server = TcpServer(model, port=port, baud=throttle)
        click.echo(f"url: {server.url}")
    else:
        raise click.BadParameter(f"{listen!r}: expected pty or tcp:PORT", param_hint="--listen")
    sys.stdout.flush()

    def stop(signum: int, frame: FrameType | None) -> None:
        server.stop.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.close()
        click.echo(f"laserctl sim: {server.clock.describe()}", err=True)
