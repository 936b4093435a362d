"""Where the device keeps its service configuration: accounts, signing keys, trusted keys.

LASERCTL_CONFIG_DIR overrides the platform's user config directory (platformdirs honours
XDG_CONFIG_HOME too); tests point it at a temporary directory.
"""

from __future__ import annotations

import os
from pathlib import Path

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
