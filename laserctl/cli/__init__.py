"""The laserctl command line.

Subcommands live in their own modules and are imported only when run, so `laserctl --help`
stays fast (no structlog, textual or pydantic on that path).

Exit codes (docs/cli.md): 0 success; 1 the operation ran and failed (a refusal, a fault, a
verification failure); 2 usage error; 3 the device could not be reached or identified.
"""

from __future__ import annotations

import importlib

import click

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_DEVICE = 3

# name -> (module, attribute, one-line help). Modules load lazily.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "calibrate": (
        "laserctl.cli.calibrate",
        "calibrate",
        "Service: calibrate a handpiece's output; --verify for the daily user check.",
    ),
    "console": (
        "laserctl.cli.console",
        "console",
        "The operator console (Textual): connect, patient, treatment, report, service.",
    ),
    "course": (
        "laserctl.cli.course",
        "course",
        "Show a patient's treatment courses and when the next session may start.",
    ),
    "demo": (
        "laserctl.cli.demo",
        "demo",
        "Demonstration on a handpiece: identify, set, stream status.",
    ),
    "devices": (
        "laserctl.cli.devices",
        "devices",
        "List serial ports and USB handpieces with their device URLs.",
    ),
    "fleet": (
        "laserctl.cli.fleet",
        "fleet",
        "Ship this console's shot log to the chain's central store; what it holds.",
    ),
    "identify": (
        "laserctl.cli.identify",
        "identify",
        "Connect to a handpiece and print who it is.",
    ),
    "log": (
        "laserctl.cli.log",
        "log",
        "Verify the shot log's hash chains; sign a checkpoint; export a session's shots.",
    ),
    "profiles": (
        "laserctl.cli.profiles",
        "profiles",
        "Treatment profiles: list, show, validate, diff, sign.",
    ),
    "report": (
        "laserctl.cli.report",
        "report",
        "Write a session's self-contained HTML report.",
    ),
    "service": (
        "laserctl.cli.service",
        "service",
        "Service accounts: first-run setup, users, signing keys.",
    ),
    "session": (
        "laserctl.cli.session",
        "session",
        "Run a scripted session (arm, fire, faults) and print a summary.",
    ),
    "sim": ("laserctl.cli.sim", "sim", "Run the simulated handpiece on a pty or TCP port."),
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module, attr, _ = entry
        try:
            command = getattr(importlib.import_module(module), attr)
        except ModuleNotFoundError:
            return None
        assert isinstance(command, click.Command)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        # Help text from the table, so --help imports none of the subcommand modules.
        rows = [(name, COMMANDS[name][2]) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(
    cls=LazyGroup,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
    epilog="Examples:\n\n  laserctl identify --device sim:fractional-1550 --json\n\n"
    "  laserctl sim --handpiece ndyag-1064 --listen pty",
)
@click.version_option(package_name="laserctl")
def main() -> None:
    """laserctl: control bridge between a clinic console and a laser handpiece.

    Device URLs: sim:fractional-1550 or sim:ndyag-1064 (simulator in this process), a serial
    port or pty path (/dev/ttyUSB0, /dev/pts/3), socket://127.0.0.1:PORT, rfc2217://...,
    usb:, usb:VID:PID, usb:VID:PID:SERIAL.
    """
