"""The scenarios and sysctl profiles that ship with tcpstress, inside the package.

They live in tcpstress/scenarios/ (package data), so every kind of install
finds them the same way: a source checkout, an editable install and a wheel
installed with pip. The checkout's top-level scenarios/ is a symbolic link to
that folder, for the paths the README and the examples use.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

PROFILES_FILE = "profiles.toml"


class ShippedFilesMissing(LookupError):
    """The package's scenarios folder is not there (a broken install); str() is one line."""


def scenarios_dir() -> Path:
    """The folder of shipped scenario files (and profiles.toml)."""
    folder = resources.files("tcpstress") / "scenarios"
    # A zipped package would give a Traversable that is not a Path: the scenarios are read
    # as files by name (tomllib, the report's source line), so only a folder on disk will do.
    if not isinstance(folder, Path) or not folder.is_dir():
        raise ShippedFilesMissing(f"the shipped scenarios are missing: no folder {folder} in the installed package")
    return folder


def scenario_names() -> list[str]:
    """The shipped scenarios' names (file names without .toml), sorted."""
    return sorted(p.stem for p in scenarios_dir().glob("*.toml") if p.name != PROFILES_FILE)


def profiles_path() -> Path:
    """The shipped sysctl profiles (scenarios/profiles.toml)."""
    path = scenarios_dir() / PROFILES_FILE
    if not path.is_file():
        raise ShippedFilesMissing(f"the shipped profiles are missing: no file {path}")
    return path


def scenario_argument(text: str) -> str | Path:
    """A scenario argument as given, or the shipped scenario it names.

    A path that exists is always the user's file. Otherwise a bare name
    ("keepalive_vs_churn", with or without .toml, no folder) of a shipped
    scenario means that file, so `tcpstress compare time_wait_exhaustion`
    works from any folder and from a pip install without the checkout.
    """
    given = Path(text)
    if given.exists() or given.name != text:
        return text
    try:
        shipped = scenarios_dir() / (text if text.endswith(".toml") else f"{text}.toml")
    except ShippedFilesMissing:
        return text
    return shipped if shipped.is_file() and shipped.name != PROFILES_FILE else text
