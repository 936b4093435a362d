"""The service workflow for changing profiles: check everything, then sign (SR-13, SR-19).

A directory is signed only when every profile in it passes the schema, and every file whose
content changed since the previous manifest carries a higher `version`: a reviewer can always
tell two different contents apart by their version, and a shot record's (id, version) names
one content.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .catalog import ProfileError, read_file
from .schema import Issue
from .signing import Entry, IntegrityError, Manifest, read_manifest, sign

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey


@dataclass
class SignResult:
    manifest: Manifest
    changed: list[dict[str, Any]] = field(default_factory=list)  # file, id, versions, hashes
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "key_id": self.manifest.key_id,
            "signer": self.manifest.signer,
            "signed_at": self.manifest.signed_at,
            "profiles": len(self.manifest.entries),
            "changed": self.changed,
            "added": self.added,
            "removed": self.removed,
        }


def sign_directory(directory: Path, key: Ed25519PrivateKey, signer: str) -> SignResult:
    """Check every profile of `directory` and sign them all; ProfileError lists every reason
    when it refuses (nothing is written then)."""
    issues: list[Issue] = []
    entries: dict[str, Entry] = {}
    for path in sorted(directory.glob("*.toml")):
        profile, problems = read_file(path)
        issues.extend(problems)
        if profile is not None:
            entries[path.name] = Entry(profile.id, profile.version, profile.sha256)
    try:
        previous: dict[str, Entry] = dict(read_manifest(directory).entries)
    except IntegrityError:
        previous = {}
    changed: list[dict[str, Any]] = []
    for name, entry in sorted(entries.items()):
        old = previous.get(name)
        if old is None or old.sha256 == entry.sha256:
            continue
        if entry.version <= old.version:
            issues.append(
                Issue(
                    str(directory / name),
                    "version",
                    entry.version,
                    f"the content changed since version {old.version} was signed: raise the "
                    "version",
                )
            )
        changed.append(
            {
                "file": name,
                "id": entry.id,
                "old_version": old.version,
                "new_version": entry.version,
                "old_sha256": old.sha256,
                "new_sha256": entry.sha256,
            }
        )
    if issues:
        lines = "\n  ".join(str(i) for i in issues)
        raise ProfileError(f"not signed, {len(issues)} problem(s):\n  {lines}", issues)
    manifest = sign(directory, entries, key, signer)
    return SignResult(
        manifest,
        changed,
        added=sorted(set(entries) - set(previous)),
        removed=sorted(set(previous) - set(entries)),
    )
