"""Roles, service credentials and signing keys (SR-19). See docs/service-guide.md."""

from laserctl.eventlog import EventLog

from .accounts import (
    Account,
    AccountBook,
    AuthError,
    Identity,
    LockedOut,
    Role,
    require_service,
)
from .paths import config_dir

__all__ = [
    "Account",
    "AccountBook",
    "AuthError",
    "EventLog",
    "Identity",
    "LockedOut",
    "Role",
    "config_dir",
    "require_service",
]
