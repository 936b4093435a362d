"""Profile integrity (SR-13): the signed manifest, tampering, re-signing by the service workflow,
and the `laserctl profiles` commands."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from click.testing import CliRunner

from laserctl.auth import keys
from laserctl.cli.profiles import profiles
from laserctl.profiles import ProfileError, load_catalog, plan_for_session, trusted_keys
from laserctl.profiles.signing import MANIFEST, SHIPPED_DIR, read_manifest
from laserctl.profiles.workflow import sign_directory

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

PROFILE = "fractional-1550-abdomen"


@pytest.fixture
def profile_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped set, and an empty device config (no service keys trusted)."""
    target = tmp_path / "profiles"
    shutil.copytree(SHIPPED_DIR, target)
    monkeypatch.setenv("LASERCTL_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("LASERCTL_PROFILE_DIR", str(target))
    return target


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text(encoding="utf-8")
    assert old in text
    path.write_text(text.replace(old, new, 1), encoding="utf-8")


def engineer_key(config: Path) -> Ed25519PrivateKey:
    key = keys.generate()
    keys.Keyring(config / keys.Keyring.FILENAME).add(key.public_key(), "alice", "alice")
    return key


@pytest.mark.req("SR-13")
def test_a_copy_of_the_shipped_set_verifies_against_the_release_key(profile_dir: Path) -> None:
    catalog = load_catalog(profile_dir)
    assert catalog.ok and len(catalog.profiles) == 8
    manifest = read_manifest(profile_dir)
    assert manifest.key_id in trusted_keys()
    assert {e.sha256 for e in manifest.entries.values()} == {
        p.sha256 for p in catalog.profiles.values()
    }


@pytest.mark.req("SR-13")
def test_a_tampered_profile_is_refused_with_a_clear_message(profile_dir: Path) -> None:
    path = profile_dir / f"{PROFILE}.toml"
    edit(path, "max = 35.0", "max = 36.0")  # still schema-valid: only the signature catches it
    catalog = load_catalog(profile_dir)
    assert PROFILE not in catalog.profiles
    assert len(catalog.profiles) == 7  # the others are still usable
    with pytest.raises(ProfileError, match="changed outside the service workflow") as caught:
        catalog.get(PROFILE)
    assert "laserctl profiles sign" in str(caught.value)
    with pytest.raises(ProfileError, match="changed outside the service workflow"):
        plan_for_session(f"{PROFILE}/alba", directory=profile_dir)


@pytest.mark.req("SR-13")
def test_a_whitespace_or_comment_change_is_tampering_too(profile_dir: Path) -> None:
    path = profile_dir / f"{PROFILE}.toml"
    path.write_bytes(path.read_bytes() + b"\n# harmless?\n")
    assert PROFILE not in load_catalog(profile_dir).profiles


@pytest.mark.req("SR-13")
def test_an_added_unsigned_profile_is_refused(profile_dir: Path) -> None:
    (profile_dir / f"{PROFILE}.toml").rename(profile_dir / "spare.toml")
    shutil.copy(SHIPPED_DIR / f"{PROFILE}.toml", profile_dir / f"{PROFILE}.toml")
    extra = profile_dir / "ndyag-1064-face.toml"
    extra.write_text((SHIPPED_DIR / "ndyag-1064-chest.toml").read_text(), encoding="utf-8")
    catalog = load_catalog(profile_dir)
    reasons = [i.reason for i in catalog.issues if Path(i.file).name == extra.name]
    assert any("not in the signed manifest" in r for r in reasons)


@pytest.mark.req("SR-13")
def test_a_forged_manifest_is_refused(profile_dir: Path) -> None:
    path = profile_dir / f"{PROFILE}.toml"
    edit(path, "max = 35.0", "max = 36.0")
    manifest = json.loads((profile_dir / MANIFEST).read_text())
    from hashlib import sha256

    manifest["profiles"][path.name]["sha256"] = sha256(path.read_bytes()).hexdigest()
    (profile_dir / MANIFEST).write_text(json.dumps(manifest))
    catalog = load_catalog(profile_dir)
    assert catalog.profiles == {}  # nothing is trusted under a broken signature
    assert "signature does not match" in catalog.manifest_problem


@pytest.mark.req("SR-13")
def test_a_set_signed_by_an_untrusted_key_is_refused(profile_dir: Path) -> None:
    stranger = keys.generate()  # not in the keyring, not the release key
    sign_directory(profile_dir, stranger, "mallory")
    catalog = load_catalog(profile_dir)
    assert catalog.profiles == {}
    assert "does not trust" in catalog.manifest_problem


@pytest.mark.req("SR-13")
def test_a_service_engineer_re_signs_an_edit_and_it_is_accepted(
    profile_dir: Path, tmp_path: Path
) -> None:
    key = engineer_key(tmp_path / "config")
    path = profile_dir / f"{PROFILE}.toml"
    edit(path, "max = 35.0", "max = 34.0")
    with pytest.raises(ProfileError, match="raise the version"):
        sign_directory(profile_dir, key, "alice")  # same version, different content
    edit(path, "\nversion = 1", "\nversion = 2")
    result = sign_directory(profile_dir, key, "alice")
    assert [c["id"] for c in result.changed] == [PROFILE]
    assert result.changed[0]["old_version"] == 1 and result.changed[0]["new_version"] == 2
    catalog = load_catalog(profile_dir)
    assert catalog.ok
    assert catalog.get(PROFILE).variants["alba"].windows_for(False)  # usable again
    assert read_manifest(profile_dir).signer == "alice"


@pytest.mark.req("SR-13")
def test_an_unreadable_keyring_means_nothing_is_trusted(profile_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "config").mkdir()
    (tmp_path / "config" / keys.Keyring.FILENAME).write_text('{"keys": {"x": {}}}')
    catalog = load_catalog(profile_dir)
    assert catalog.profiles == {}
    assert "trusted keys unreadable" in catalog.manifest_problem


def test_signing_refuses_a_directory_with_an_invalid_profile(
    profile_dir: Path, tmp_path: Path
) -> None:
    key = engineer_key(tmp_path / "config")
    edit(profile_dir / f"{PROFILE}.toml", "max = 35.0", "max = 90.0")
    before = (profile_dir / MANIFEST).read_bytes()
    with pytest.raises(ProfileError, match="capability") as caught:
        sign_directory(profile_dir, key, "alice")
    assert caught.value.issues[0].field == "variants.alba.params.energy_mj.max"
    assert (profile_dir / MANIFEST).read_bytes() == before


# ---- the command line ---------------------------------------------------------------------------
def test_cli_list_and_show(profile_dir: Path) -> None:
    runner = CliRunner()
    listed = runner.invoke(profiles, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    data = json.loads(listed.output)
    assert len(data["profiles"]) == 8 and all(p["ok"] for p in data["profiles"])
    shown = runner.invoke(profiles, ["show", f"{PROFILE}/rubra/iv-vi", "--json"])
    assert shown.exit_code == 0, shown.output
    plan = json.loads(shown.output)
    assert plan["plan_id"] == f"{PROFILE}/rubra/iv-vi"
    assert plan["params"]["density_pct"]["max"] == 7.0
    whole = runner.invoke(profiles, ["show", PROFILE])
    assert whole.exit_code == 0 and "iv-vi" in whole.output
    missing = runner.invoke(profiles, ["show", "nope/alba"])
    assert missing.exit_code == 1 and "no profile 'nope'" in missing.output


@pytest.mark.req("SR-13")
def test_cli_validate_exits_non_zero_on_any_invalid_file(profile_dir: Path) -> None:
    runner = CliRunner()
    ok = runner.invoke(profiles, ["validate"])
    assert ok.exit_code == 0, ok.output
    assert "8 profile(s) checked: ok" in ok.output
    edit(profile_dir / f"{PROFILE}.toml", "default = 14.0", "default = 140.0")
    bad = runner.invoke(profiles, ["validate", "--json"])
    assert bad.exit_code == 1
    report = json.loads(bad.output)
    fields = {(Path(i["file"]).name, i["field"]) for i in report["issues"]}
    assert (f"{PROFILE}.toml", "variants.rubra.params.energy_mj.default") in fields
    one = runner.invoke(profiles, ["validate", str(profile_dir / "ndyag-1064-chest.toml")])
    assert one.exit_code == 0, one.output


def test_cli_validate_against_a_connected_handpiece(profile_dir: Path) -> None:
    result = CliRunner().invoke(profiles, ["validate", "--device", "sim:ndyag-1064", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["device"]["handpiece"] == "ndyag-1064"


def test_cli_diff(profile_dir: Path, tmp_path: Path) -> None:
    edited = tmp_path / f"{PROFILE}.toml"
    shutil.copy(profile_dir / f"{PROFILE}.toml", edited)
    edit(edited, "max = 35.0", "max = 30.0")
    result = CliRunner().invoke(profiles, ["diff", PROFILE, str(edited), "--json"])
    assert result.exit_code == 0, result.output
    changes = json.loads(result.output)["changes"]
    assert {"field": "variants.alba.params.energy_mj.max", "old": 35.0, "new": 30.0} in changes


def test_cli_release_key_rotation(profile_dir: Path, tmp_path: Path) -> None:
    """The release workflow for the shipped set: a new release key signs the directory; the
    private key may not be written into the profile directory."""
    runner = CliRunner()
    env = {"LASERCTL_RELEASE_KEY_PASSPHRASE": "a long release passphrase"}
    inside = runner.invoke(
        profiles,
        ["sign", "--release-key", str(profile_dir / "k.pem"), "--new-release-key"],
        env=env,
    )
    assert inside.exit_code == 2 and "must not be stored" in inside.output
    pem = tmp_path / "release.pem"
    made = runner.invoke(
        profiles, ["sign", "--release-key", str(pem), "--new-release-key"], env=env
    )
    assert made.exit_code == 0, made.output
    new_pub = keys.parse_public((profile_dir / "release-key.pub").read_text(), "pub")
    trusted = {keys.key_id(new_pub): new_pub}
    assert load_catalog(profile_dir, trusted=trusted).ok
    again = runner.invoke(profiles, ["sign", "--release-key", str(pem)], env=env)
    assert again.exit_code == 0, again.output
    wrong = runner.invoke(
        profiles, ["sign", "--release-key", str(pem)], env={**env, **{env.popitem()[0]: "nope"}}
    )
    assert wrong.exit_code == 1 and "wrong password" in wrong.output
