"""The console's identity key: made once, kept 0600, the same key on every later load; a
corrupt file is refused naming the file, never silently replaced."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from laserctl.auth import console_key, keys


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("LASERCTL_CONFIG_DIR", str(tmp_path / "config"))
    return tmp_path / "config"


def test_the_key_is_made_on_first_use_and_the_same_one_comes_back(config: Path) -> None:
    first = console_key.load_or_create()
    path = config / "console-key.pem"
    assert path.exists()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    again = console_key.load_or_create()
    assert again.console_id == first.console_id
    assert again.public_text() == first.public_text()
    assert [p.name for p in config.iterdir()] == ["console-key.pem"]  # no leftovers


def test_the_console_id_is_the_key_id_and_signatures_verify(config: Path) -> None:
    key = console_key.load_or_create()
    public = keys.parse_public(key.public_text(), "test")
    assert key.console_id == keys.key_id(public)
    assert len(key.console_id) == 16 and int(key.console_id, 16) >= 0
    assert key.public_text().startswith("ed25519 ")
    signature = key.sign(b"a checkpoint body\n")
    public.verify(signature, b"a checkpoint body\n")  # raises if wrong
    from cryptography.exceptions import InvalidSignature

    with pytest.raises(InvalidSignature):
        public.verify(signature, b"another body\n")


def test_an_explicit_path_is_used_and_two_consoles_differ(tmp_path: Path) -> None:
    a = console_key.load_or_create(tmp_path / "a" / "key.pem")
    b = console_key.load_or_create(tmp_path / "b" / "key.pem")
    assert (tmp_path / "a" / "key.pem").exists() and (tmp_path / "b" / "key.pem").exists()
    assert a.console_id != b.console_id


@pytest.mark.parametrize(
    "content",
    [b"", b"not a key at all\n", b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"],
)
def test_a_corrupt_key_is_refused_naming_the_file_and_left_alone(
    config: Path, content: bytes
) -> None:
    path = config / "console-key.pem"
    config.mkdir(parents=True)
    path.write_bytes(content)
    with pytest.raises(keys.KeyProblem) as caught:
        console_key.load_or_create()
    assert str(path) in str(caught.value)
    assert "corrupt" in str(caught.value)
    assert path.read_bytes() == content  # evidence kept, not overwritten by a new key


def test_an_encrypted_or_non_ed25519_key_is_refused(config: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    config.mkdir(parents=True)
    path = config / "console-key.pem"
    keys.save_private(keys.generate(), path, "a password")
    with pytest.raises(keys.KeyProblem, match=r"console-key\.pem"):
        console_key.load_or_create()
    other = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    path.write_bytes(other)
    with pytest.raises(keys.KeyProblem, match="not an Ed25519 key"):
        console_key.load_or_create()


def test_an_unwritable_config_dir_is_a_key_problem(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(keys.KeyProblem, match="cannot create the console key"):
        console_key.load_or_create(blocker / "console-key.pem")
