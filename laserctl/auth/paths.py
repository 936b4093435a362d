"""Where the device keeps its service configuration: accounts, signing keys, trusted keys.

LASERCTL_CONFIG_DIR overrides the platform's user config directory (platformdirs honours
XDG_CONFIG_HOME too); tests point it at a temporary directory.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

ENV_CONFIG_DIR = "LASERCTL_CONFIG_DIR"


def config_dir() -> Path:
    override = os.environ.get(ENV_CONFIG_DIR)
    if override:
        return Path(override)
    import platformdirs

    return Path(platformdirs.user_config_path("laserctl", appauthor=False))


def write_private(path: Path, data: bytes) -> None:
    """Write a file only its owner can read, atomically (a crash leaves the old one)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)


def read_table(path: Path, table: str, what: str, error: type[Exception]) -> dict[str, Any]:
    """The `table` object of a JSON file written with write_private; {} when there is no file.
    A file that cannot be read or holds no such table raises `error` naming the path."""
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise error(f"{path}: unreadable {what}: {exc}") from None
    found = raw.get(table) if isinstance(raw, dict) else None
    if not isinstance(found, dict):
        raise error(f"{path}: no {table} table")
    return found
