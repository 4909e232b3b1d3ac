"""A wheel installed with pip, away from the checkout, finds the shipped scenarios and profiles.

The wheel is built from a clean copy of the checkout and installed (without its dependencies)
into a fresh virtual environment; the dependencies come from the test's own
environment through a .pth file, which adds folders to sys.path after the
new environment's own site-packages, so `tcpstress` is the wheel's copy.
Every command runs in an empty temporary folder: nothing can come from a
scenarios/ next to it.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

import tcpstress
from tests.conftest import ROOT
from tests.integration.test_compose import _copy_build_context

DEPENDENCIES = ("trio", "click", "hdrh", "psutil", "matplotlib", "pyroute2", "dns", "cryptography")

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the command line of the new environment's tcpstress, an empty working folder)."""
    base = tmp_path_factory.mktemp("wheel")
    # From a clean copy (no build/ or egg-info left by earlier builds, which setuptools would reuse).
    source = base / "source"
    _copy_build_context(source)
    wheels = base / "wheels"
    # No build isolation: the test machine may have no index to fetch setuptools from.
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                            "--disable-pip-version-check", "-q", "-w", str(wheels), str(source)],
                           capture_output=True, text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("tcpstress-*.whl")
    env_dir = base / "env"
    venv.EnvBuilder(with_pip=False).create(env_dir)
    python = env_dir / "bin" / "python"
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    folders = {str(Path(importlib.import_module(name).__file__).resolve().parents[1]) for name in DEPENDENCIES}
    (site / "test-dependencies.pth").write_text("".join(f"{folder}\n" for folder in sorted(folders)))
    # This environment's pip installs into the new one (--prefix): the new one has no pip of its own.
    # --ignore-installed: without it pip uninstalls the tcpstress this test runs from.
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--ignore-installed",
                              "--disable-pip-version-check", "-q", "--prefix", str(env_dir), str(wheel)],
                             capture_output=True, text=True, timeout=300, check=False)
    assert install.returncode == 0, install.stderr
    work = base / "elsewhere"
    work.mkdir()
    # `python -m tcpstress`: the console script pip wrote has the installing interpreter's shebang.
    return [python, "-m", "tcpstress"], work


def run(argv, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=120, cwd=cwd, env=env,
                          check=False)


def test_the_installed_package_is_the_wheel_not_the_checkout(installed):
    (python, _, _), work = installed
    where = run([python, "-c", "import tcpstress.shipped as s; print(s.__file__); print(s.scenarios_dir())"], work)
    assert where.returncode == 0, where.stderr
    module, folder = where.stdout.split()
    env_dir = python.parents[1]
    assert Path(module).is_relative_to(env_dir) and Path(folder).is_relative_to(env_dir)
    shipped = sorted(p.name for p in Path(folder).glob("*.toml"))
    assert shipped == sorted(p.name for p in (ROOT / "tcpstress" / "scenarios").glob("*.toml"))


def test_profiles_come_from_the_installed_package(installed):
    tcpstress, work = installed
    listed = run([*tcpstress, "profiles"], work)
    assert listed.returncode == 0, listed.stderr
    assert "narrow_ports" in listed.stdout and "wide_ports" in listed.stdout


def test_a_shipped_scenario_by_name_from_an_empty_folder(installed):
    tcpstress, work = installed
    assert not (work / "keepalive_vs_churn").exists()
    # Refused before any load: the scenario was found and read, its variants listed.
    proc = run([*tcpstress, "compare", "keepalive_vs_churn", "--variants", "nope"], work)
    assert proc.returncode == 2
    assert "no variant 'nope'; variants are: keepalive, churn" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr
    helped = run([*tcpstress, "compare", "--help"], work)
    assert helped.returncode == 0 and "SCENARIO_FILE" in helped.stdout


def test_installing_the_wheel_left_the_test_environment_alone(installed):
    # The same interpreter, elsewhere: it still imports the tcpstress it imported before.
    here = run([sys.executable, "-c", "import tcpstress; print(tcpstress.__file__)"], installed[1])
    assert here.returncode == 0, here.stderr
    assert Path(here.stdout.strip()).resolve() == Path(tcpstress.__file__).resolve()
