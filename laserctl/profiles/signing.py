"""The signed manifest of a profile directory (SR-13).

manifest.json lists every profile file of the directory with its id, version and the SHA-256 of
its bytes, and carries one Ed25519 signature over the canonical JSON of that list (sorted keys,
no spaces, UTF-8), made by the key named in `key_id`. A profile is used only when its bytes hash
to what a trusted signature covers: an edit, an added file or a replaced manifest that no
trusted key signed is refused at load.

Trusted keys: the release key whose public half ships as release-key.pub in the installed
profiles directory (never the directory being loaded, which may be a copy), plus the device's
keyring of service engineers' keys (laserctl.auth.keys.Keyring).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..auth import keys as keymod
from ..auth.paths import config_dir

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import (
        Ed25519PrivateKey,
        Ed25519PublicKey,
    )

MANIFEST = "manifest.json"
RELEASE_KEY = "release-key.pub"
SHIPPED_DIR = Path(__file__).resolve().parent.parent.parent / "profiles"


class IntegrityError(Exception):
    """A manifest that is missing, malformed, or not signed by a trusted key."""


@dataclass(frozen=True, slots=True)
class Entry:
    id: str
    version: int
    sha256: str


@dataclass(frozen=True, slots=True)
class Manifest:
    entries: Mapping[str, Entry]  # file name -> what was signed
    key_id: str
    signer: str
    signed_at: str
    signature: str  # base64

    def payload(self) -> dict[str, Any]:
        return _payload(self.entries, self.key_id, self.signer, self.signed_at)

    def to_json(self) -> dict[str, Any]:
        return {**self.payload(), "signature": self.signature}


def _payload(
    entries: Mapping[str, Entry], key_id: str, signer: str, signed_at: str
) -> dict[str, Any]:
    return {
        "format": 1,
        "key_id": key_id,
        "signer": signer,
        "signed_at": signed_at,
        "profiles": {
            name: {"id": e.id, "version": e.version, "sha256": e.sha256}
            for name, e in sorted(entries.items())
        },
    }


def canonical(payload: Mapping[str, Any]) -> bytes:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_manifest(directory: Path) -> Manifest:
    path = directory / MANIFEST
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
        entries = {
            str(name): Entry(str(e["id"]), int(e["version"]), str(e["sha256"]))
            for name, e in dict(raw["profiles"]).items()
        }
        if raw.get("format") != 1:
            raise ValueError(f"format {raw.get('format')!r}, expected 1")
        return Manifest(
            entries,
            str(raw["key_id"]),
            str(raw["signer"]),
            str(raw["signed_at"]),
            str(raw["signature"]),
        )
    except FileNotFoundError:
        raise IntegrityError(
            f"{path}: no signed manifest: the profiles were never signed"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise IntegrityError(f"{path}: malformed manifest: {exc}") from None


def verify_manifest(
    manifest: Manifest, trusted: Mapping[str, Ed25519PublicKey], origin: str
) -> None:
    """Raise IntegrityError unless a trusted key made the manifest's signature."""
    from cryptography.exceptions import InvalidSignature

    key = trusted.get(manifest.key_id)
    if key is None:
        raise IntegrityError(
            f"{origin}: signed by key {manifest.key_id} ({manifest.signer}), which this device "
            "does not trust"
        )
    try:
        key.verify(base64.b64decode(manifest.signature), canonical(manifest.payload()))
    except (InvalidSignature, ValueError):
        raise IntegrityError(
            f"{origin}: the signature does not match its content: the manifest was changed "
            "outside the service workflow"
        ) from None


def trusted_keys(
    shipped_dir: Path | None = None, keyring_dir: Path | None = None
) -> dict[str, Ed25519PublicKey]:
    """The release key that ships with the product, plus the device keyring's keys. A key file
    that cannot be read raises IntegrityError: nothing is trusted then (fail safe)."""
    out: dict[str, Ed25519PublicKey] = {}
    release = (shipped_dir or SHIPPED_DIR) / RELEASE_KEY
    try:
        if release.exists():
            key = keymod.parse_public(release.read_text(encoding="utf-8"), str(release))
            out[keymod.key_id(key)] = key
        ring = keymod.Keyring((keyring_dir or config_dir()) / keymod.Keyring.FILENAME)
        out.update(ring.keys())
    except (keymod.KeyProblem, OSError) as exc:
        raise IntegrityError(f"trusted keys unreadable: {exc}") from None
    return out


def sign(
    directory: Path,
    entries: Mapping[str, Entry],
    key: Ed25519PrivateKey,
    signer: str,
    *,
    now: dt.datetime | None = None,
) -> Manifest:
    """Sign `entries` and write the manifest into `directory`."""
    kid = keymod.key_id(key.public_key())
    signed_at = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    payload = _payload(entries, kid, signer, signed_at)
    signature = base64.b64encode(key.sign(canonical(payload))).decode("ascii")
    manifest = Manifest(dict(entries), kid, signer, signed_at, signature)
    tmp = directory / (MANIFEST + ".tmp")
    tmp.write_text(json.dumps(manifest.to_json(), indent=2, sort_keys=True) + "\n", "utf-8")
    tmp.replace(directory / MANIFEST)
    return manifest
