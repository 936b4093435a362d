"""`laserctl devices`: serial ports and USB handpieces, each with the device URL to use."""

from __future__ import annotations

import json
from typing import Any

import click


@click.command(
    epilog="Examples:\n\n  laserctl devices\n\n  LASERCTL_USB_BACKEND=sim laserctl devices --json"
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def devices(as_json: bool) -> None:
    """List serial ports and USB handpieces with the device URL of each.

    USB needs libusb-1.0 (Debian: libusb-1.0-0) unless LASERCTL_USB_BACKEND=sim, which lists
    the simulated handpieces instead. A USB problem is reported, not fatal: serial ports are
    still listed.
    """
    from serial.tools import list_ports

    from drivers.transport import TransportError
    from drivers.transport.usb_link import list_handpieces, select_backend

    ports = [
        {"url": port.device, "description": port.description, "hwid": port.hwid}
        for port in sorted(list_ports.comports(), key=lambda p: p.device)
    ]
    usb: dict[str, Any] = {"backend": None, "error": None, "handpieces": []}
    try:
        backend = select_backend()
        usb["backend"] = backend.name
        usb["handpieces"] = [
            {
                "url": found.url,
                "vendor_id": f"{found.vendor_id:04x}",
                "product_id": f"{found.product_id:04x}",
                "serial": found.serial,
                "manufacturer": found.manufacturer,
                "product": found.product,
                "bus": found.bus,
                "address": found.address,
                "note": found.note,
            }
            for found in list_handpieces(backend)
        ]
        detail = backend.detail
    except TransportError as exc:
        usb["error"] = str(exc)
        detail = "unavailable"
    if as_json:
        click.echo(json.dumps({"serial_ports": ports, "usb": usb}, sort_keys=True))
        return
    click.echo("Serial ports")
    for port in ports:
        click.echo(f"  {port['url']:<28} {port['description']}")
    if not ports:
        click.echo("  (none)")
    click.echo(f"USB handpieces [{detail}]")
    for hp in usb["handpieces"]:
        where = f"bus {hp['bus']} address {hp['address']}"
        click.echo(f"  {hp['url']:<28} {hp['product'] or '?'}, {where}" + _note(hp["note"]))
    if usb["error"]:
        click.echo(f"  {usb['error']}")
    elif not usb["handpieces"]:
        click.echo("  (none)")


def _note(note: str) -> str:
    return f" ({note})" if note else ""
