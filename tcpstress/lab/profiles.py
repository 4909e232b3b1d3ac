"""Sysctl profiles: named sets of knob values for the client and server namespaces.

A profile file is TOML:

    [profiles.narrow_ports]
    description = "1,000 client ports and no TIME_WAIT reuse"
    client = { ip_local_port_range = "40000 40999", tcp_tw_reuse = 0 }
    server = { tcp_syncookies = 1 }

Every value is validated against the knowledge table when the file is loaded,
so a typo fails before any namespace exists. A knob a profile leaves out keeps
the kernel default of a fresh namespace (not the host's value).

The shipped profiles live in tcpstress/scenarios/profiles.toml, package
data found with importlib.resources (tcpstress/shipped.py) in a checkout and
in an installed wheel alike.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcpstress.lab.sysctl import ProfileError, validate_setting

_ALLOWED_KEYS = ("description", "client", "server")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


@dataclass(frozen=True)
class Profile:
    """Validated values: full sysctl name -> kernel text form, per side."""

    name: str
    description: str = ""
    client: Mapping[str, str] = field(default_factory=dict)
    server: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], source: str = "<profile>") -> Profile:
        """Build and validate one profile; errors name `source`, the profile and the key."""
        where = f"{source}: profile {name!r}"
        if not _NAME.fullmatch(name):
            raise ProfileError(f"{where}: bad name, use letters, digits, '_', '.', '-'")
        if not isinstance(data, Mapping):
            raise ProfileError(f"{where}: must be a table with description, client and server")
        for key in data:
            if key not in _ALLOWED_KEYS:
                raise ProfileError(f"{where}: unknown key {key!r}; allowed: {', '.join(_ALLOWED_KEYS)}")
        description = data.get("description", "")
        if not isinstance(description, str):
            raise ProfileError(f"{where}: description must be a string")
        sides = {side: _validate_side(data.get(side, {}), f"{where}, {side}") for side in ("client", "server")}
        return cls(name=name, description=description.strip(), **sides)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "client": dict(self.client),
            "server": dict(self.server),
        }


def _validate_side(settings: object, where: str) -> dict[str, str]:
    if not isinstance(settings, Mapping):
        raise ProfileError(f"{where}: must be a table of knob = value")
    validated: dict[str, str] = {}
    for key, value in settings.items():
        # A key is shown as written unless it holds a line break or another unprintable
        # character (TOML allows any in a quoted key): the message stays one line.
        shown = key if isinstance(key, str) and key.isprintable() else repr(key)
        try:
            path, text = validate_setting(key, value)
        except ProfileError as error:
            raise ProfileError(f"{where}.{shown}: {error}") from None
        if path in validated:
            raise ProfileError(f"{where}.{shown}: {path} is set twice")
        validated[path] = text
    return validated


def parse_profiles(data: Mapping[str, Any], source: str = "<profiles>") -> dict[str, Profile]:
    """Profiles from already-parsed TOML data ({"profiles": {name: {...}}})."""
    unknown = [key for key in data if key != "profiles"]
    if unknown:
        raise ProfileError(f"{source}: unknown top-level key {unknown[0]!r}; expected [profiles.NAME] tables")
    tables = data.get("profiles")
    if not isinstance(tables, Mapping) or not tables:
        raise ProfileError(f"{source}: no [profiles.NAME] tables")
    return {name: Profile.from_dict(name, table, source) for name, table in tables.items()}


def load_profiles(path: str | Path) -> dict[str, Profile]:
    """Every profile of a TOML file, validated, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ProfileError(f"{path}: cannot read profiles: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ProfileError(f"{path}: not UTF-8 text") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ProfileError(f"{path}: not valid TOML: {error}") from None
    return parse_profiles(data, str(path))


def shipped_profiles_path() -> Path:
    """tcpstress/scenarios/profiles.toml inside the package (tcpstress/shipped.py)."""
    from tcpstress import shipped

    try:
        return shipped.profiles_path()
    except shipped.ShippedFilesMissing as e:
        raise ProfileError(str(e)) from None


def shipped_profiles() -> dict[str, Profile]:
    return load_profiles(shipped_profiles_path())


def get_profile(name: str, profiles: Mapping[str, Profile] | None = None) -> Profile:
    """One profile by name (from the shipped ones by default), with a suggestion."""
    profiles = shipped_profiles() if profiles is None else profiles
    if name in profiles:
        return profiles[name]
    close = difflib.get_close_matches(name, list(profiles), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    raise ProfileError(f"unknown profile {name!r}{hint}; known: {', '.join(profiles)}")
