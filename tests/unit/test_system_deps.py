"""The Makefile's package list (scripts/system-deps.sh) covers every command the tests look up."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def listed_commands() -> set[str]:
    text = (ROOT / "scripts" / "system-deps.sh").read_text()
    needed = re.search(r'NEEDED="([^"]*)"', text).group(1)
    return {pair.split(":")[0] for pair in needed.split()}


def test_every_command_the_tests_look_up_is_installed_by_make_test():
    looked_up = set()
    for path in (ROOT / "tests").rglob("*.py"):
        looked_up |= set(re.findall(r"""shutil\.which\(["']([\w.-]+)["']\)""", path.read_text()))
    # Commands a test installs for itself (container engines), and the installer itself.
    self_installed = {"podman", "podman-compose", "debootstrap", "apt-get"}
    missing = looked_up - listed_commands() - self_installed
    assert not missing, f"tests look up {sorted(missing)}, which scripts/system-deps.sh does not install"


def test_make_test_and_demo_run_the_package_step():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("test", "demo"):
        line = next(row for row in makefile.splitlines() if row.startswith(f"{target}:"))
        assert "system-deps" in line, f"make {target} does not install the Debian packages"


def test_test_file_basenames_are_unique():
    """pytest imports test files by basename (no packages here): two alike stop the whole collection."""
    names = [p.name for p in (ROOT / "tests").rglob("test_*.py")]
    assert len(names) == len(set(names)), sorted({n for n in names if names.count(n) > 1})
