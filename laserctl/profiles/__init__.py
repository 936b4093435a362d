"""Treatment profiles: one signed TOML file per handpiece and area (SR-07, SR-13).

    catalog = load_catalog()                           # schema + signature, every file
    plan = plan_for_session("fractional-1550-abdomen/alba", ["energy_mj=18"])

See docs/profiles.md. Imports pydantic and cryptography: keep it off `laserctl --help`'s path.
"""

from .capabilities import AREAS, DARK_SKIN, NOMINAL, VARIANTS
from .catalog import Catalog, ProfileError, default_dir, load_catalog, read_file
from .diff import Change, diff
from .model import DarkSkin, Profile, Variant, Window
from .schema import Issue, validate_document
from .selection import Selection, build_plan, parse_selector, parse_sets, plan_for_session
from .signing import IntegrityError, Manifest, trusted_keys

__all__ = [
    "AREAS",
    "DARK_SKIN",
    "NOMINAL",
    "VARIANTS",
    "Catalog",
    "Change",
    "DarkSkin",
    "IntegrityError",
    "Issue",
    "Manifest",
    "Profile",
    "ProfileError",
    "Selection",
    "Variant",
    "Window",
    "build_plan",
    "default_dir",
    "diff",
    "load_catalog",
    "parse_selector",
    "parse_sets",
    "plan_for_session",
    "read_file",
    "trusted_keys",
    "validate_document",
]
