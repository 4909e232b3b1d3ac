"""Lab tests: real network namespaces (root only).

Every test here is marked `lab` and skipped, with the reason, where this
machine cannot create namespaces. `lab_prefix` gives a test its own
namespace prefix and fails the test if anything under it is left behind.
"""

from __future__ import annotations

import secrets
import subprocess
from pathlib import Path

import pytest

from tcpstress.lab import check_lab_capability, cleanup, list_namespaces

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.lab)


@pytest.fixture(scope="session")
def lab_capability() -> str | None:
    return check_lab_capability()


@pytest.fixture(autouse=True)
def _require_lab(lab_capability):
    if lab_capability is not None:
        pytest.skip(lab_capability)


@pytest.fixture
def run_id() -> str:
    return "t" + secrets.token_hex(5)


@pytest.fixture
def lab_prefix(run_id):
    """The namespace prefix of this test's labs; leaks fail the test."""
    prefix = f"tcpstress-{run_id}-"
    yield prefix
    leaked = list_namespaces(prefix)
    cleanup(prefix, include_live_runs=True)
    for name in list_namespaces(prefix):  # not named like a Lab: cleanup() leaves those
        subprocess.run(["ip", "netns", "del", name], check=False)
    assert not leaked, f"namespaces left behind: {leaked}"


def _netns_list() -> set[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout
    return {line.split()[0] for line in out.splitlines() if line.strip()}


def _in_netns(namespace: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", namespace, *argv], capture_output=True, text=True, check=True, timeout=30
    ).stdout


@pytest.fixture
def netns_list():
    """Witness: the namespace names `ip netns list` shows."""
    return _netns_list


@pytest.fixture
def in_netns():
    """Witness: run a command inside a namespace with iproute2, not with tcpstress."""
    return _in_netns
