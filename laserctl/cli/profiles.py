"""`laserctl profiles`: list, show, validate, diff and sign treatment profiles (SR-13)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from . import EXIT_DEVICE, EXIT_FAILED, EXIT_OK, EXIT_USAGE
from .service import fail, login_options, open_log, read_password, service_login

if TYPE_CHECKING:
    from laserctl.profiles import Catalog, Issue, Profile

ENV_RELEASE_PASSPHRASE = "LASERCTL_RELEASE_KEY_PASSPHRASE"

dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Profile directory (else $LASERCTL_PROFILE_DIR, else the shipped profiles/).",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


def _emit(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


@click.group()
def profiles() -> None:
    """Treatment profiles: one signed TOML file per handpiece and area.

    A profile is used as <id>/<variant>[/iv-vi], e.g. fractional-1550-abdomen/alba or
    ndyag-1064-thighs/rubra/iv-vi (Fitzpatrick IV-VI adjustment).
    """


@profiles.command("list")
@dir_option
@json_option
def list_(directory: Path | None, as_json: bool) -> None:
    """Every profile with its version, hash and whether it may be used."""
    from laserctl.profiles import load_catalog

    catalog = load_catalog(directory)
    rows: list[dict[str, Any]] = []
    for name, pid in sorted(catalog.files.items()):
        profile = catalog.profiles.get(pid)
        problems = [i for i in catalog.issues if Path(i.file).name == name]
        rows.append(
            {
                "id": pid,
                "file": name,
                "ok": profile is not None,
                "version": profile.version if profile else None,
                "handpiece": profile.handpiece.slug if profile else None,
                "area": profile.area if profile else None,
                "sha256": profile.sha256 if profile else None,
                "problems": [str(i) for i in problems],
            }
        )
    signed = catalog.manifest
    if as_json:
        _emit(
            {
                "directory": str(catalog.directory),
                "signed_by": signed.signer if signed else None,
                "key_id": signed.key_id if signed else None,
                "signed_at": signed.signed_at if signed else None,
                "manifest_problem": catalog.manifest_problem or None,
                "profiles": rows,
            }
        )
        return
    click.echo(f"{catalog.directory}")
    if signed:
        click.echo(f"signed by {signed.signer} (key {signed.key_id}) on {signed.signed_at}")
    else:
        click.echo(f"NOT VERIFIED: {catalog.manifest_problem}")
    for row in rows:
        status = "ok" if row["ok"] else f"REFUSED ({len(row['problems'])} problem(s))"
        version = f"v{row['version']}" if row["version"] else "-"
        digest = (row["sha256"] or "")[:12]
        click.echo(f"  {row['id']:<28} {version:<4} {digest:<12}  {status}")


@profiles.command()
@click.argument("selector")
@dir_option
@json_option
def show(selector: str, directory: Path | None, as_json: bool) -> None:
    """Show a profile (ID) or the plan a selection gives (ID/VARIANT[/iv-vi])."""
    from laserctl.profiles import ProfileError, build_plan, load_catalog, parse_selector

    catalog = load_catalog(directory)
    try:
        if "/" not in selector:
            profile = catalog.get(selector)
            if as_json:
                _emit(profile.to_json())
            else:
                _print_profile(profile)
            return
        selection = parse_selector(selector)
        plan = build_plan(catalog.get(selection.profile_id), selection)
    except ProfileError as exc:
        fail(str(exc))
    if as_json:
        _emit({**plan.to_json(), "source": plan.source, **dict(plan.extra)})
        return
    click.echo(f"{plan.plan_id}  ({plan.handpiece.slug}, {plan.area})")
    for param, window in plan.windows.items():
        span = f"{window.min:>7g} .. {window.max:<7g}"
        click.echo(f"  {param.field_name:<14} {span} default {window.default:g}")
    click.echo(f"  max_pulses {plan.max_pulses}, max_fluence_j_cm2 {plan.max_fluence_j_cm2:g}")
    click.echo(f"  source: {plan.source}")


def _print_profile(profile: Profile) -> None:
    click.echo(f"{profile.id} v{profile.version}: {profile.title}")
    click.echo(f"  sha256 {profile.sha256}")
    click.echo(f"  source: {profile.source}")
    for name, variant in profile.variants.items():
        click.echo(f"  [{name}] {variant.description}")
        click.echo(
            f"    max_pulses {variant.max_pulses}, max_fluence_j_cm2 {variant.max_fluence_j_cm2:g}"
        )
        for param, w in variant.windows.items():
            dark = variant.dark_skin.windows.get(param)
            adj = f"   iv-vi: {dark.min:g}..{dark.max:g} ({dark.default:g})" if dark else ""
            span = f"{w.min:>7g} .. {w.max:<7g}"
            click.echo(f"    {param.field_name:<14} {span} default {w.default:<7g}{adj}")


@profiles.command()
@click.argument("paths", nargs=-1, type=click.Path(path_type=Path))
@dir_option
@click.option("--device", "url", default=None, help="Also check against this handpiece's ranges.")
@json_option
def validate(
    paths: tuple[Path, ...], directory: Path | None, url: str | None, as_json: bool
) -> None:
    """Check profiles: schema, handpiece capability, signature. Exit 1 on any problem.

    Without PATHS every profile of the directory is checked; with PATHS those files (and their
    directory's manifest).
    """
    from laserctl.profiles import load_catalog

    device = _identify(url) if url else None
    dirs = sorted({p.parent for p in paths}) if paths else [directory]
    catalogs: list[Catalog] = [load_catalog(d, device=device) for d in dirs]
    wanted = {p.resolve() for p in paths}
    issues: list[Issue] = []
    checked: list[str] = []
    for catalog in catalogs:
        for name in sorted(catalog.files):
            path = (catalog.directory / name).resolve()
            if wanted and path not in wanted:
                continue
            checked.append(str(catalog.directory / name))
            issues.extend(i for i in catalog.issues if Path(i.file).resolve() == path)
        issues.extend(i for i in catalog.issues if Path(i.file).name == "manifest.json")
        issues.extend(
            i for i in catalog.issues if Path(i.file).resolve() == catalog.directory.resolve()
        )
    missing = [str(p) for p in paths if p.resolve() not in {Path(c).resolve() for c in checked}]
    if as_json:
        _emit(
            {
                "ok": not issues and not missing,
                "checked": checked,
                "device": device.to_json() if device else None,
                "missing": missing,
                "issues": [i.to_json() for i in issues],
            }
        )
    else:
        for issue in issues:
            click.echo(str(issue))
        for name in missing:
            click.echo(f"{name}: no such profile file")
        verdict = "ok" if not issues and not missing else f"{len(issues) + len(missing)} problem(s)"
        click.echo(f"{len(checked)} profile(s) checked: {verdict}")
    sys.exit(EXIT_FAILED if issues or missing else EXIT_OK)


def _identify(url: str) -> Any:
    from drivers.host import CommandError, HandpieceConnection

    connection = HandpieceConnection(url, reconnect=False)
    try:
        return connection.open()
    except CommandError as exc:
        fail(f"{url}: {exc}", EXIT_DEVICE)
    finally:
        connection.close()


@profiles.command()
@click.argument("old")
@click.argument("new")
@dir_option
@json_option
def diff(old: str, new: str, directory: Path | None, as_json: bool) -> None:
    """Field-by-field differences between two profiles (IDs or .toml paths).

    For review before signing: the files are schema-checked but may be unsigned.
    """
    from laserctl.profiles import diff as diff_profiles

    a, b = _load_for_diff(old, directory), _load_for_diff(new, directory)
    changes = diff_profiles(a, b)
    if as_json:
        _emit({"old": a.path, "new": b.path, "changes": [c.to_json() for c in changes]})
        return
    if not changes:
        click.echo("no differences")
    for change in changes:
        click.echo(f"{change.field}: {change.old!r} -> {change.new!r}")


def _load_for_diff(ref: str, directory: Path | None) -> Profile:
    from laserctl.profiles import default_dir, read_file

    path = Path(ref) if ref.endswith(".toml") else (directory or default_dir()) / f"{ref}.toml"
    profile, issues = read_file(path)
    if profile is None:
        fail("\n".join(str(i) for i in issues) or f"{path}: cannot read", EXIT_USAGE)
    return profile


@profiles.command()
@dir_option
@login_options
@click.option(
    "--release-key",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Sign with the release key (PEM, passphrase-protected) instead of your service key.",
)
@click.option(
    "--new-release-key",
    is_flag=True,
    help="Generate the release key at --release-key and put its public half in the directory.",
)
@click.option(
    "--passphrase-file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    default=None,
    help=f"Release key passphrase (else ${ENV_RELEASE_PASSPHRASE}, else a prompt).",
)
@json_option
def sign(
    directory: Path | None,
    user: str | None,
    password_file: Path | None,
    db_path: Path | None,
    release_key: Path | None,
    new_release_key: bool,
    passphrase_file: Path | None,
    as_json: bool,
) -> None:
    """Check every profile of the directory and sign them (service engineers, SR-13/SR-19).

    Refused when any profile fails the schema or a changed file kept its version. Signed with
    your service key (needs your login; logged); --release-key signs a release set instead.
    """
    from laserctl.profiles import ProfileError, default_dir
    from laserctl.profiles.workflow import sign_directory

    target = directory or default_dir()
    if release_key is not None:
        key, signer = _release_key(target, release_key, new_release_key, passphrase_file)
        try:
            result = sign_directory(target, key, signer)
        except ProfileError as exc:
            fail(str(exc))
        _report_signature(result.to_json(), as_json)
        return
    if new_release_key:
        fail("--new-release-key needs --release-key PATH", EXIT_USAGE)
    store = open_log(db_path)
    try:
        book, identity, password = service_login(user, password_file, store, "sign profiles")
        key = book.signing_key(identity, password)
        try:
            result = sign_directory(target, key, identity.name)
        except ProfileError as exc:
            store.log_event(
                "service",
                f"profile signing of {target} refused",
                who=identity.name,
                data={"action": "profile_sign", "ok": False, "problems": len(exc.issues)},
            )
            fail(str(exc))
        store.log_event(
            "service",
            f"profiles in {target} signed ({len(result.changed)} changed, "
            f"{len(result.added)} added, {len(result.removed)} removed)",
            who=identity.name,
            data={
                "action": "profile_sign",
                "ok": True,
                "directory": str(target),
                **result.to_json(),
            },
        )
    finally:
        store.close()
    _report_signature(result.to_json(), as_json)


def _report_signature(data: dict[str, Any], as_json: bool) -> None:
    if as_json:
        _emit(data)
        return
    click.echo(
        f"{data['profiles']} profile(s) signed by {data['signer']} (key {data['key_id']}) at "
        f"{data['signed_at']}"
    )
    for change in data["changed"]:
        click.echo(
            f"  changed {change['id']}: v{change['old_version']} -> v{change['new_version']}"
        )
    for name in data["added"]:
        click.echo(f"  added {name}")
    for name in data["removed"]:
        click.echo(f"  removed {name}")


def _release_key(
    directory: Path, path: Path, generate: bool, passphrase_file: Path | None
) -> tuple[Any, str]:
    from laserctl.auth import keys
    from laserctl.profiles.signing import RELEASE_KEY

    passphrase = read_password(
        passphrase_file, env=ENV_RELEASE_PASSPHRASE, prompt="Release key passphrase"
    )
    pub_path = directory / RELEASE_KEY
    if generate:
        if path.exists():
            fail(f"{path} exists: refusing to overwrite a release key", EXIT_USAGE)
        if directory.resolve() in path.resolve().parents:
            fail("the release private key must not be stored in the profile directory", EXIT_USAGE)
        key = keys.generate()
        keys.save_private(key, path, passphrase)
        pub_path.write_text(keys.public_text(key.public_key()) + "\n", encoding="utf-8")
        click.echo(
            f"new release key {keys.key_id(key.public_key())}: private {path}, public {pub_path}"
        )
    else:
        try:
            key = keys.load_private(path, passphrase)
        except keys.KeyProblem as exc:
            fail(str(exc))
        shipped = pub_path.read_text(encoding="utf-8").strip() if pub_path.exists() else ""
        if shipped != keys.public_text(key.public_key()):
            fail(f"{path} is not the release key whose public half is {pub_path}")
    who = os.environ.get("USER") or os.environ.get("LOGNAME")
    return key, f"release key ({who})" if who else "release key"
