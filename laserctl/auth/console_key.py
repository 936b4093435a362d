"""The console's own identity: an Ed25519 key made on first use and kept in the config dir.

It signs the shot log's checkpoints (laserctl/records/checkpoints.py) and names the console
to the central store (its console id is the key id, auth.keys.key_id). Unlike an engineer's
key it is not encrypted: the console signs unattended at every session end, so the file is
protected by its mode (0600) only. See docs/shot-log.md for what that does and does not buy.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import keys
from .paths import config_dir, write_private

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

FILENAME = "console-key.pem"


@dataclass(frozen=True)
class ConsoleKey:
    console_id: str  # key id: first 16 hex of SHA-256(raw public key)
    private: Ed25519PrivateKey

    def public_text(self) -> str:
        """`ed25519 <base64 raw key>`, as in the keyring and release-key.pub."""
        return keys.public_text(self.private.public_key())

    def sign(self, data: bytes) -> bytes:
        return self.private.sign(data)


def default_path() -> Path:
    return config_dir() / FILENAME


def load_or_create(path: Path | None = None) -> ConsoleKey:
    """The console key at `path` (default: config_dir()/console-key.pem), made if missing.

    Two processes making it at once end up with the same key: the new key is written aside
    and linked into place only if nothing is there yet, then whatever is there is read.
    """
    path = path if path is not None else default_path()
    if not path.exists():
        _create(path)
    return _load(path)


def _create(path: Path) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = keys.generate().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fresh = path.with_name(f"{path.name}.{os.getpid()}.new")
    try:
        write_private(fresh, pem)
        # another process made it first: theirs is the console's key
        with contextlib.suppress(FileExistsError):
            os.link(fresh, path)
    except OSError as exc:
        raise keys.KeyProblem(
            f"{path}: cannot create the console key: {exc.strerror or exc}"
        ) from None
    finally:
        with contextlib.suppress(OSError):
            fresh.unlink(missing_ok=True)


def _load(path: Path) -> ConsoleKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise keys.KeyProblem(
            f"{path}: cannot read the console key: {exc.strerror or exc}"
        ) from None
    try:
        private = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise keys.KeyProblem(
            f"{path}: not an unencrypted PEM private key ({exc}); the console key is "
            "corrupt: restore it from a backup, or move it away to make a new one (its "
            "checkpoints then no longer verify as this console's)"
        ) from None
    if not isinstance(private, Ed25519PrivateKey):
        raise keys.KeyProblem(f"{path}: the console key is not an Ed25519 key")
    return ConsoleKey(keys.key_id(private.public_key()), private)
