"""Ed25519 signing keys: each service engineer's (private key encrypted with their password)
and the device's keyring of trusted public keys.

A key is named by its key id: the first 16 hex digits of the SHA-256 of the raw public key.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .paths import write_private

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )


class KeyProblem(Exception):
    """A key that cannot be read, decrypted or trusted; the message says which and why."""


def generate() -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    return Ed25519PrivateKey.generate()


def raw_public(key: Ed25519PublicKey) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def key_id(key: Ed25519PublicKey) -> str:
    return hashlib.sha256(raw_public(key)).hexdigest()[:16]


def public_text(key: Ed25519PublicKey) -> str:
    """One line: `ed25519 <base64 raw key>`, the format of release-key.pub and the keyring."""
    return "ed25519 " + base64.b64encode(raw_public(key)).decode("ascii")


def parse_public(text: str, origin: str) -> Ed25519PublicKey:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    parts = text.split()
    if len(parts) != 2 or parts[0] != "ed25519":
        raise KeyProblem(f"{origin}: expected 'ed25519 <base64 key>'")
    try:
        raw = base64.b64decode(parts[1], validate=True)
        return Ed25519PublicKey.from_public_bytes(raw)
    except ValueError as exc:
        raise KeyProblem(f"{origin}: not an Ed25519 public key: {exc}") from None


def save_private(key: Ed25519PrivateKey, path: Path, password: str) -> None:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(password.encode("utf-8")),
    )
    write_private(path, pem)


def load_private(path: Path, password: str) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = path.read_bytes()
    except OSError as exc:
        raise KeyProblem(f"{path}: cannot read the signing key: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=password.encode("utf-8"))
    except (ValueError, TypeError):
        raise KeyProblem(f"{path}: wrong password, or not a signing key") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyProblem(f"{path}: not an Ed25519 key")
    return key


@dataclass(frozen=True, slots=True)
class TrustedKey:
    key_id: str
    owner: str
    public_key: str  # `ed25519 <base64>`
    added_at: float
    added_by: str

    def key(self) -> Ed25519PublicKey:
        return parse_public(self.public_key, f"trusted key {self.key_id}")


class Keyring:
    """The public keys this device accepts profile signatures from (besides the release key
    that ships with the profiles). Only the service workflow adds to it."""

    FILENAME = "trusted-keys.json"

    def __init__(self, path: Path) -> None:
        self.path = path

    def entries(self) -> dict[str, TrustedKey]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise KeyProblem(f"{self.path}: unreadable keyring: {exc}") from None
        out = {}
        try:
            for kid, entry in dict(raw.get("keys", {})).items():
                out[kid] = TrustedKey(
                    kid,
                    str(entry["owner"]),
                    str(entry["public_key"]),
                    float(entry["added_at"]),
                    str(entry["added_by"]),
                )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise KeyProblem(f"{self.path}: malformed keyring entry: {exc}") from None
        return out

    def keys(self) -> dict[str, Ed25519PublicKey]:
        return {kid: entry.key() for kid, entry in self.entries().items()}

    def add(self, key: Ed25519PublicKey, owner: str, added_by: str) -> str:
        kid = key_id(key)
        entries = self.entries()
        entries[kid] = TrustedKey(kid, owner, public_text(key), time.time(), added_by)
        body: dict[str, Any] = {
            "format": 1,
            "keys": {
                k: {
                    "owner": e.owner,
                    "public_key": e.public_key,
                    "added_at": e.added_at,
                    "added_by": e.added_by,
                }
                for k, e in sorted(entries.items())
            },
        }
        write_private(self.path, (json.dumps(body, indent=2) + "\n").encode("utf-8"))
        return kid
