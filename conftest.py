"""What every test under this tree shares, tests/ and hil_tests/ alike."""

from __future__ import annotations

from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _private_config_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test gets a config directory of its own (a test wanting a particular one sets
    LASERCTL_CONFIG_DIR itself): the console key made at a session end's checkpoint must
    never land in the real user config directory, nor be shared between tests."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("LASERCTL_CONFIG_DIR", str(tmp_path_factory.mktemp("config")))
        yield
