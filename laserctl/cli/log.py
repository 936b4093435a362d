"""`laserctl log verify`, `laserctl log checkpoint` and `laserctl log export`: the shot log's
integrity, signed checkpoints of it to ship off the console, and its contents."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from . import EXIT_FAILED, EXIT_OK, EXIT_USAGE

if TYPE_CHECKING:
    from laserctl.fleet.verify import CentralCheckpoints
    from laserctl.records import RecordStore
    from laserctl.records.checkpoints import Checkpoint

DB_HELP = "Shot log database (default: laserctl.db in the user data directory)."


def open_readonly(db: str | None, command: str) -> RecordStore:
    from laserctl.records import RecordError, open_store
    from laserctl.records.store import default_path

    path = Path(db) if db else default_path()
    if not path.exists():
        fail(command, f"no shot log at {path}", EXIT_USAGE)
    try:
        return open_store(path, readonly=True)
    except RecordError as exc:
        fail(command, str(exc), EXIT_FAILED)


def fail(command: str, message: str, code: int) -> NoReturn:
    click.echo(f"laserctl {command}: {message}", err=True)
    sys.exit(code)


@click.group(
    epilog="Examples:\n\n  laserctl log verify --db clinic.db --checkpoint shipped.txt\n\n"
    "  laserctl log checkpoint --db clinic.db --out /media/usb/checkpoint.txt\n\n"
    "  laserctl log export --session S-20261123-1a2b3c4d --format csv > s.csv"
)
def log() -> None:
    """Verify the shot log's hash chains; sign a checkpoint; export a session's shots."""


def read_checkpoints(files: tuple[str, ...]) -> list[Checkpoint]:
    from laserctl.records.checkpoints import CheckpointProblem, parse

    found = []
    for name in files:
        try:
            text = Path(name).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            fail("log verify", f"cannot read checkpoint {name}: {exc}", EXIT_USAGE)
        try:
            found.append(parse(text, name))
        except CheckpointProblem as exc:
            fail("log verify", f"not a checkpoint: {exc}", EXIT_USAGE)
    return found


def from_central(url: str, store: RecordStore, console_public: str | None) -> CentralCheckpoints:
    """The central store's checkpoints of this log's console: the console named by
    --console-key, else the console key of this machine, else the log's own checkpoints."""
    from laserctl.auth import console_key, keys
    from laserctl.fleet.central import CentralError
    from laserctl.fleet.verify import central_checkpoints
    from laserctl.records.checkpoints import CheckpointProblem

    console_id = None
    try:
        if console_public:
            console_id = keys.key_id(keys.parse_public(console_public, "--console-key"))
        elif console_key.default_path().exists():
            console_id = console_key.load_or_create().console_id
    except keys.KeyProblem as exc:
        fail("log verify", str(exc), EXIT_USAGE)
    if console_id is None:
        own = store.checkpoints()
        if not own:
            fail(
                "log verify",
                "--central: which console's log is this? give --console-key (no console key "
                "here and no checkpoint in the log)",
                EXIT_USAGE,
            )
        console_id = own[0].console_id
    try:
        return central_checkpoints(url, console_id)
    except (CentralError, CheckpointProblem) as exc:
        fail("log verify", str(exc), EXIT_FAILED)


@log.command(
    epilog="Exit codes: 0 every chain is intact and holds every checkpoint; 1 a record was "
    "modified, deleted, inserted or reordered, or a checkpoint is forged, another console's or "
    "no longer held (each is named), or the database or the --central store cannot be read; 2 "
    "no database at that path, or a --checkpoint file that is not a checkpoint."
)
@click.option("--db", default=None, help=DB_HELP)
@click.option(
    "--anchor",
    "anchors",
    multiple=True,
    metavar="TABLE:ROW:SHA256",
    help="An anchor printed earlier (by verify or a report): check it still holds.",
)
@click.option(
    "--checkpoint",
    "checkpoint_files",
    multiple=True,
    metavar="FILE",
    help="A checkpoint shipped off the console earlier (laserctl log checkpoint --out): the "
    "log must still hold what it signed. Besides every checkpoint stored in the log.",
)
@click.option(
    "--console-key",
    default=None,
    metavar="'ed25519 BASE64'",
    help="The console's public key (a checkpoint's key line): every checkpoint must be signed "
    "with it. Default: the key of the first checkpoint, and all must agree.",
)
@click.option(
    "--central",
    "central_url",
    default=None,
    metavar="URL",
    help="The chain's central store (postgresql://...): the log must also hold every "
    "checkpoint this console shipped there, signed with the key pinned there (docs/fleet.md).",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")
def verify(
    db: str | None,
    anchors: tuple[str, ...],
    checkpoint_files: tuple[str, ...],
    console_key: str | None,
    central_url: str | None,
    as_json: bool,
) -> None:
    """Check every record's hash chain, the chain heads, the schema and the log against every
    signed checkpoint known (SR-12)."""
    from laserctl.records import RecordError

    extra = read_checkpoints(checkpoint_files)
    store = open_readonly(db, "log verify")
    fetched = ""
    try:
        if central_url:
            shipped = from_central(central_url, store, console_key)
            extra += shipped.checkpoints
            console_key = console_key or shipped.pinned_key
            fetched = (
                f"central store {shipped.where}: {len(shipped.checkpoints)} checkpoint(s) of "
                f"console {shipped.console_id}"
            )
        report = store.verify(anchors, extra, console_public=console_key)
    except RecordError as exc:
        fail("log verify", str(exc), EXIT_FAILED)
    finally:
        store.close()
    if as_json:
        click.echo(
            json.dumps(report.to_json() | ({"central": fetched} if fetched else {}), sort_keys=True)
        )
    else:
        if fetched:
            click.echo(fetched)
        total = sum(report.records.values())
        counts = ", ".join(f"{n} {t}" for t, n in report.records.items() if n)
        held = f", held to {report.checkpoints} checkpoint(s)" if report.checkpoints else ""
        if report.ok:
            click.echo(f"intact: {total} records ({counts}) in {report.seconds:.2f} s{held}")
        else:
            click.echo(
                f"NOT INTACT: {len(report.problems)} problem(s) in {report.path} "
                f"({total} records checked)"
            )
            for problem in report.problems:
                click.echo(f"  {problem}")
        for anchor in report.anchors:
            click.echo(f"anchor {anchor}")
    sys.exit(EXIT_OK if report.ok else EXIT_FAILED)


@log.command(
    epilog="Ship what it prints off the console (a USB stick, the clinic's records system, "
    "laserctl fleet push): `log verify --checkpoint FILE` then holds the log to it even if the "
    "console's copy is deleted. Exit codes: 0 made; 1 the log is not intact (nothing signed), "
    "the console key is unusable, or the database cannot be written; 2 no database there."
)
@click.option("--db", default=None, help=DB_HELP)
@click.option("--out", default=None, metavar="FILE", help="Also write the checkpoint to FILE.")
def checkpoint(db: str | None, out: str | None) -> None:
    """Sign a checkpoint of the log as it is now with the console's key, store it in the log
    and print it. Refused if the log does not verify: a tampered log is not signed."""
    from laserctl.auth.keys import KeyProblem
    from laserctl.records import RecordError, open_store
    from laserctl.records.store import default_path

    path = Path(db) if db else default_path()
    if not path.exists():
        fail("log checkpoint", f"no shot log at {path}", EXIT_USAGE)
    try:
        store = open_store(path)
    except RecordError as exc:
        fail("log checkpoint", str(exc), EXIT_FAILED)
    try:
        report = store.verify()
        if not report.ok:
            first = report.problems[0]
            fail(
                "log checkpoint",
                f"{path} is not intact ({len(report.problems)} problem(s), the first: {first}): "
                "nothing signed; see laserctl log verify",
                EXIT_FAILED,
            )
        made = store.checkpoint()
    except (RecordError, KeyProblem) as exc:
        fail("log checkpoint", str(exc), EXIT_FAILED)
    finally:
        store.close()
    if out:
        try:
            Path(out).write_text(made.text(), encoding="utf-8")
        except OSError as exc:
            fail(
                "log checkpoint",
                f"stored in the log, but cannot write {out}: {exc.strerror or exc}",
                EXIT_FAILED,
            )
        click.echo(f"{made.label()} stored in {path} and written to {out}", err=True)
    click.echo(made.text(), nl=False)


@log.command(
    epilog="Examples:\n\n  laserctl log export --session S-20261123-1a2b3c4d --format json "
    "--out s.json"
)
@click.option("--session", "session_id", required=True, help="Session ID.")
@click.option(
    "--format", "fmt", type=click.Choice(["csv", "json"]), default="csv", show_default=True
)
@click.option("--out", default=None, help="Write to this file instead of standard output.")
@click.option("--db", default=None, help=DB_HELP)
def export(session_id: str, fmt: str, out: str | None, db: str | None) -> None:
    """A session's shots (CSV: one row a shot) or its shots and events (JSON)."""
    from laserctl.records import RecordError
    from laserctl.records.export import session_data, to_csv, to_json

    store = open_readonly(db, "log export")
    try:
        data = session_data(store, session_id)
    except RecordError as exc:
        fail("log export", str(exc), EXIT_FAILED)
    finally:
        store.close()
    text = to_csv(data) if fmt == "csv" else to_json(data) + "\n"
    if out:
        Path(out).write_text(text, encoding="utf-8")
    else:
        click.echo(text, nl=False)
