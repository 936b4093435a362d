"""A private, throwaway PostgreSQL 15 for tests and benchmarks (stdlib only).

`scripts/pg-test-server` is the command; tests/pg.py and bench/fleet.py import this module.

The server comes from Debian's packages (/usr/lib/postgresql/15/bin; `postgresql-15` is
installed with apt-get when missing and we are root, as on a clean CI machine). It lives in a
fresh temporary directory: initdb + pg_ctl, no fsync (test data is thrown away), listening on a
private unix socket in that directory and on 127.0.0.1 at a free port, trust authentication for
the `postgres` role (nobody else can reach the socket: the directory is mode 0700).

initdb refuses to run as root, so as root the server runs as the `postgres` user (runuser) and
the directory belongs to it. A watchdog process stops the server and removes the directory when
the process that asked for it dies, however it dies (SIGKILL included): no stray server is left.
At start, directories of earlier servers whose owner is gone are cleaned up too.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

DEBIAN_BIN = Path("/usr/lib/postgresql/15/bin")
BIN = Path(os.environ.get("LASERCTL_PG_BIN", str(DEBIAN_BIN)))
PREFIX = "laserctl-pg-"
OWNER_FILE = "owner.pid"


class PgStartFailed(RuntimeError):
    """The private PostgreSQL could not be installed, initialised or started."""


@dataclass(frozen=True)
class PgServer:
    root: Path  # the temporary directory: data/, socket, log, owner.pid
    port: int

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def log(self) -> Path:
        return self.root / "server.log"

    def url(self, dbname: str = "postgres", tcp: bool = False) -> str:
        if tcp:
            return f"postgresql://postgres@127.0.0.1:{self.port}/{dbname}"
        return f"postgresql://postgres@/{dbname}?host={self.root}&port={self.port}"


def _as_server_user(cmd: list[str]) -> list[str]:
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *cmd]
    return cmd


def ensure_installed() -> None:
    """Install Debian's postgresql-15 when its binaries are missing (root only)."""
    if (BIN / "initdb").exists() and (BIN / "pg_ctl").exists():
        return
    if BIN != DEBIAN_BIN or os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PgStartFailed(
            f"PostgreSQL 15 is not installed ({BIN}/initdb missing) and is not installed "
            "automatically here (that needs root, apt-get and the Debian path): "
            "apt-get install postgresql-15"
        )
    # no questions: keep the createcluster.conf written below (dpkg and ucf alike)
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive", UCF_FORCE_CONFFOLD="1")
    # The package would otherwise create and start a system-wide cluster we do not want.
    conf = Path("/etc/postgresql-common/createcluster.conf")
    conf.parent.mkdir(parents=True, exist_ok=True)
    if not conf.exists():
        conf.write_text("create_main_cluster = false\n", encoding="utf-8")
    for cmd in (
        ["apt-get", "update", "-q"],
        [
            "apt-get",
            "install",
            "-y",
            "-q",
            "--no-install-recommends",
            "-o",
            "Dpkg::Options::=--force-confdef",
            "-o",
            "Dpkg::Options::=--force-confold",
            "postgresql-15",
        ],
    ):
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise PgStartFailed(f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}")
    if not (BIN / "initdb").exists():
        raise PgStartFailed(f"postgresql-15 installed but {BIN}/initdb is still missing")


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _run(cmd: list[str], what: str) -> None:
    done = subprocess.run(_as_server_user(cmd), capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise PgStartFailed(f"{what} failed ({' '.join(cmd)}):\n{done.stdout}\n{done.stderr}")


def stop(root: Path) -> None:
    """Stop the server in `root` (immediate: the data is throwaway) and remove the directory."""
    if (root / "data" / "postmaster.pid").exists():
        subprocess.run(
            _as_server_user(
                [str(BIN / "pg_ctl"), "stop", "-D", str(root / "data"), "-m", "immediate", "-w"]
            ),
            capture_output=True,
            check=False,
        )
    shutil.rmtree(root, ignore_errors=True)


def clean_stale() -> None:
    """Stop servers left by earlier runs whose owner process is gone (the pid check)."""
    for root in Path(tempfile.gettempdir()).glob(PREFIX + "*"):
        try:
            owner = int((root / OWNER_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if not _alive(owner):
            stop(root)


def _watchdog(root: Path, owner: int) -> None:
    """Start a detached process that stops the server once `owner` has died."""
    subprocess.Popen(
        [sys.executable, str(Path(__file__).resolve()), "watch", str(root), str(owner)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # a Ctrl-C or a killed process group spares it
    )


def watch(root: Path, owner: int) -> None:
    while _alive(owner) and root.exists():
        time.sleep(0.5)
    if root.exists():
        stop(root)


def start(owner: int | None = None, attempts: int = 3) -> PgServer:
    """Start a fresh private server; it is stopped when `owner` (default: this process) dies."""
    ensure_installed()
    clean_stale()
    owner = os.getpid() if owner is None else owner
    root = Path(tempfile.mkdtemp(prefix=PREFIX))
    root.chmod(0o700)
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        os.chown(root, pw.pw_uid, pw.pw_gid)
    (root / OWNER_FILE).write_text(str(owner), encoding="utf-8")
    try:
        _run(
            [
                str(BIN / "initdb"),
                "-D",
                str(root / "data"),
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ],
            "initdb",
        )
        _watchdog(root, owner)
        last = ""
        for _ in range(attempts):  # a free port can be taken between our probe and the bind
            port = _free_port()
            opts = (
                f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off "
                "-c synchronous_commit=off -c full_page_writes=off -c max_connections=100"
            )
            done = subprocess.run(
                _as_server_user(
                    [
                        str(BIN / "pg_ctl"),
                        "start",
                        "-D",
                        str(root / "data"),
                        "-w",
                        "-t",
                        "60",
                        "-l",
                        str(root / "server.log"),
                        "-o",
                        opts,
                    ]
                ),
                capture_output=True,
                text=True,
                check=False,
            )
            if done.returncode == 0:
                return PgServer(root=root, port=port)
            last = done.stdout + done.stderr
            with contextlib.suppress(OSError):
                last += (root / "server.log").read_text(encoding="utf-8")[-2000:]
        raise PgStartFailed(f"pg_ctl start failed {attempts} times:\n{last}")
    except BaseException:
        stop(root)
        raise


@contextlib.contextmanager
def running() -> Iterator[PgServer]:
    server = start()
    try:
        yield server
    finally:
        stop(server.root)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/pg-test-server", description=__doc__.split("\n")[0]
    )
    sub = parser.add_subparsers(dest="cmd", required=True)
    p_start = sub.add_parser("start", help="start a server; print its URL and directory")
    p_start.add_argument(
        "--owner", type=int, help="stop it when this pid dies (default: the caller's shell)"
    )
    p_stop = sub.add_parser("stop", help="stop the server in DIR and remove DIR")
    p_stop.add_argument("dir", type=Path)
    p_watch = sub.add_parser("watch", help=argparse.SUPPRESS)
    p_watch.add_argument("dir", type=Path)
    p_watch.add_argument("owner", type=int)
    p_run = sub.add_parser("run", help="run a command with LASERCTL_TEST_PG_URL set, then stop")
    p_run.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    try:
        if args.cmd == "start":
            server = start(owner=args.owner or os.getppid())
            print(f"LASERCTL_TEST_PG_URL={server.url()}")
            print(f"LASERCTL_TEST_PG_DIR={server.root}")
            return 0
        if args.cmd == "stop":
            stop(args.dir)
            return 0
        if args.cmd == "watch":
            watch(args.dir, args.owner)
            return 0
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        command = command or [os.environ.get("SHELL", "sh")]
        with running() as server:
            env = dict(os.environ, LASERCTL_TEST_PG_URL=server.url())
            proc = subprocess.Popen(command, env=env)
            try:
                return proc.wait()
            except KeyboardInterrupt:
                proc.send_signal(signal.SIGINT)
                return proc.wait()
    except PgStartFailed as e:
        print(f"pg-test-server: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
