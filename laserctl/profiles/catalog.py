"""Loading a profile directory: schema (schema.py), then integrity (signing.py), for every file.

`load_catalog()` never stops at the first problem: it returns every valid, correctly signed
profile and an Issue for each problem of each file, so `laserctl profiles validate` can show
them all. `Catalog.get(id)` refuses a profile that has any issue, with the issues in the message
(SR-13): a profile changed outside the service workflow cannot be used.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from drivers.protocol import DeviceInfo

from .model import Profile
from .schema import Issue, validate_document
from .signing import (
    MANIFEST,
    SHIPPED_DIR,
    Entry,
    IntegrityError,
    Manifest,
    file_sha256,
    read_manifest,
    trusted_keys,
    verify_manifest,
)

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

ENV_PROFILE_DIR = "LASERCTL_PROFILE_DIR"
TAMPERED = "changed outside the service workflow"


class ProfileError(Exception):
    """A profile that cannot be used; `issues` lists every reason."""

    def __init__(self, message: str, issues: list[Issue] | None = None) -> None:
        super().__init__(message)
        self.issues = issues or []


def default_dir() -> Path:
    override = os.environ.get(ENV_PROFILE_DIR)
    return Path(override) if override else SHIPPED_DIR


def read_file(
    path: Path, *, device: DeviceInfo | None = None
) -> tuple[Profile | None, list[Issue]]:
    """Schema check of one file (no integrity check): the profile, or every issue found."""
    origin = str(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        return None, [Issue(origin, "", None, f"cannot read: {exc.strerror or exc}")]
    try:
        data: dict[str, Any] = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        return None, [Issue(origin, "", None, f"not valid TOML: {exc}")]
    profile, issues = validate_document(data, origin, device=device)
    if profile is not None and profile.id != path.stem:
        issues.append(Issue(origin, "id", profile.id, f"must match the file name {path.stem!r}"))
        profile = None
    if profile is not None:
        import hashlib

        profile = replace(profile, sha256=hashlib.sha256(raw).hexdigest(), path=origin)
    return profile, issues


@dataclass
class Catalog:
    directory: Path
    profiles: dict[str, Profile] = field(default_factory=dict)  # valid and signed
    issues: list[Issue] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)  # file name -> id (or stem)
    manifest: Manifest | None = None
    manifest_problem: str = ""

    @property
    def ok(self) -> bool:
        return not self.issues

    def issues_of(self, profile_id: str) -> list[Issue]:
        names = {name for name, pid in self.files.items() if pid == profile_id}
        return [
            i for i in self.issues if Path(i.file).name in names or Path(i.file).name == MANIFEST
        ]

    def get(self, profile_id: str) -> Profile:
        profile = self.profiles.get(profile_id)
        if profile is not None:
            return profile
        issues = self.issues_of(profile_id)
        if not issues and profile_id not in self.files.values():
            known = ", ".join(sorted(self.profiles)) or "none"
            raise ProfileError(f"no profile {profile_id!r} in {self.directory} (known: {known})")
        lines = "\n  ".join(str(i) for i in issues)
        raise ProfileError(f"profile {profile_id!r} refused:\n  {lines}", issues)

    def entries(self) -> dict[str, Entry]:
        """What a signature over the directory as it is now would cover (schema-valid files)."""
        out = {}
        for name, pid in self.files.items():
            path = self.directory / name
            profile, _ = read_file(path)
            if profile is not None:
                out[name] = Entry(pid, profile.version, profile.sha256)
        return out


def load_catalog(
    directory: Path | None = None,
    *,
    trusted: Mapping[str, Ed25519PublicKey] | None = None,
    device: DeviceInfo | None = None,
) -> Catalog:
    """Every profile of the directory, checked against the schema, the handpiece capability
    (nominal, and the connected handpiece's when given) and the signed manifest."""
    directory = directory or default_dir()
    catalog = Catalog(directory)
    if not directory.is_dir():
        catalog.issues.append(Issue(str(directory), "", None, "no such profile directory"))
        return catalog
    manifest_path = str(directory / MANIFEST)
    try:
        manifest = read_manifest(directory)
        verify_manifest(manifest, trusted if trusted is not None else trusted_keys(), manifest_path)
        catalog.manifest = manifest
    except IntegrityError as exc:
        catalog.manifest_problem = str(exc).removeprefix(manifest_path + ": ")
        catalog.issues.append(Issue(manifest_path, "", None, catalog.manifest_problem))
    paths = sorted(directory.glob("*.toml"))
    for path in paths:
        profile, issues = read_file(path, device=device)
        catalog.files[path.name] = profile.id if profile else path.stem
        catalog.issues.extend(issues)
        integrity = _integrity(path, catalog)
        if integrity:
            catalog.issues.append(Issue(str(path), "", None, integrity))
        if profile is not None and not integrity and not issues:
            if profile.id in catalog.profiles:
                catalog.issues.append(Issue(str(path), "id", profile.id, "duplicate profile id"))
            else:
                catalog.profiles[profile.id] = profile
    if catalog.manifest is not None:
        for name in sorted(set(catalog.manifest.entries) - {p.name for p in paths}):
            catalog.issues.append(
                Issue(str(directory / name), "", None, "signed in the manifest but missing")
            )
    return catalog


def _integrity(path: Path, catalog: Catalog) -> str:
    if catalog.manifest is None:
        return f"not verified: {catalog.manifest_problem}"
    entry = catalog.manifest.entries.get(path.name)
    if entry is None:
        return f"{TAMPERED}: not in the signed manifest (a service engineer must sign it)"
    digest = file_sha256(path)
    if digest != entry.sha256:
        return (
            f"{TAMPERED}: SHA-256 {digest[:12]}... differs from the signed "
            f"{entry.sha256[:12]}... (version {entry.version}, signed by "
            f"{catalog.manifest.signer} on {catalog.manifest.signed_at}); refused until a "
            "service engineer reviews and signs it (laserctl profiles sign)"
        )
    return ""
