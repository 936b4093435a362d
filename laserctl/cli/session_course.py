"""What the course rules ask of `laserctl session` (SR-18, SR-19): the central store to ask
before a session begins (--fleet), an override with its service login and written reason
(--override-reason), and what was decided (the course_decision event), for the summary."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import EXIT_USAGE

if TYPE_CHECKING:
    from laserctl.records import CourseOverride, RecordStore
    from laserctl.records.course_check import CourseAuthority


@dataclass(frozen=True, slots=True)
class CourseSettings:
    """--fleet and --override-reason with its service login."""

    fleet_url: str | None
    override_reason: str | None
    user: str | None
    password_file: Path | None

    def authority(self) -> CourseAuthority | None:
        from laserctl.fleet.courses import CentralCourses

        return CentralCourses(self.fleet_url) if self.fleet_url else None

    def override(self, store: RecordStore) -> CourseOverride | None:
        """A service login (SR-19; the attempt is logged) and the written reason (SR-18)."""
        from laserctl.records import CourseOverride

        from .service import service_login

        if self.override_reason is None:
            return None
        try:
            CourseOverride("check", self.override_reason)
        except ValueError as exc:
            click.echo(f"laserctl session: --override-reason: {exc}", err=True)
            sys.exit(EXIT_USAGE)
        _, identity, _ = service_login(
            self.user, self.password_file, store, "override the course rules"
        )
        return CourseOverride(identity.name, self.override_reason)


def course_decision(store: Any, session_id: str) -> dict[str, Any] | None:
    """What the course rules decided with --fleet (the course_decision event's data)."""
    from laserctl.records.course_check import DECISION_EVENT

    rows = store.query(
        "SELECT body FROM events WHERE kind = ? AND session_ref = ?",
        (DECISION_EVENT, store.session(session_id).ref),
    )
    return dict(json.loads(rows[-1][0])["data"]) if rows else None
