"""A validated treatment profile: one handpiece, one area, a variant per stage of striae.

These frozen dataclasses are what the rest of laserctl uses; schema.py is the only place that
builds them, from a file it has checked completely (SR-13).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from drivers.protocol import HandpieceType, Param


@dataclass(frozen=True, slots=True)
class Window:
    """The allowed range of one parameter and its default, in the unit of its name."""

    min: float
    max: float
    default: float
    source: str = ""

    def to_json(self) -> dict[str, Any]:
        return {"min": self.min, "max": self.max, "default": self.default, "source": self.source}


@dataclass(frozen=True, slots=True)
class DarkSkin:
    """The Fitzpatrick IV-VI adjustment of a variant: replacement windows, never higher."""

    windows: Mapping[Param, Window]
    source: str

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "params": {p.field_name: w.to_json() for p, w in self.windows.items()},
        }


@dataclass(frozen=True, slots=True)
class Variant:
    name: str  # rubra | alba
    description: str
    source: str
    windows: Mapping[Param, Window]
    max_pulses: int  # per area and session (SR-08)
    max_fluence_j_cm2: float  # cumulative per cm2, per area and session (SR-08)
    dark_skin: DarkSkin

    def windows_for(self, dark_skin: bool) -> dict[Param, Window]:
        if not dark_skin:
            return dict(self.windows)
        return {**self.windows, **self.dark_skin.windows}

    def to_json(self) -> dict[str, Any]:
        return {
            "description": self.description,
            "source": self.source,
            "max_pulses": self.max_pulses,
            "max_fluence_j_cm2": self.max_fluence_j_cm2,
            "params": {p.field_name: w.to_json() for p, w in self.windows.items()},
            "dark_skin": self.dark_skin.to_json(),
        }


@dataclass(frozen=True, slots=True)
class Profile:
    id: str
    version: int
    handpiece: HandpieceType
    area: str
    title: str
    source: str
    variants: Mapping[str, Variant]
    sha256: str = ""  # of the file's bytes, as signed in the manifest
    path: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "version": self.version,
            "handpiece": self.handpiece.slug,
            "area": self.area,
            "title": self.title,
            "source": self.source,
            "sha256": self.sha256,
            "path": self.path,
            "variants": {name: v.to_json() for name, v in self.variants.items()},
        }
