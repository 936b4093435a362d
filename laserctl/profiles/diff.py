"""What differs between two profiles, field by field (for review before signing)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .model import Profile

IGNORED = frozenset({"path"})
MISSING = None


@dataclass(frozen=True, slots=True)
class Change:
    field: str  # dotted path, e.g. variants.alba.params.energy_mj.max
    old: Any  # None when the field is new
    new: Any  # None when the field is gone

    def to_json(self) -> dict[str, Any]:
        return {"field": self.field, "old": self.old, "new": self.new}


def _flatten(value: Any, prefix: str, out: dict[str, Any]) -> None:
    if isinstance(value, Mapping):
        for key, item in value.items():
            if key in IGNORED and not prefix:
                continue
            _flatten(item, f"{prefix}.{key}" if prefix else str(key), out)
    else:
        out[prefix] = value


def diff(old: Profile, new: Profile) -> list[Change]:
    a: dict[str, Any] = {}
    b: dict[str, Any] = {}
    _flatten(old.to_json(), "", a)
    _flatten(new.to_json(), "", b)
    return [
        Change(key, a.get(key, MISSING), b.get(key, MISSING))
        for key in sorted(a.keys() | b.keys())
        if a.get(key, MISSING) != b.get(key, MISSING)
    ]
