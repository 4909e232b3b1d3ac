"""Tests that run docker-compose.yml under a real container engine (podman).

Every test here is marked `containers`; `-m "not containers"` leaves them out.
"""

from __future__ import annotations

from pathlib import Path

import pytest

_HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(config, items):
    for item in items:
        if _HERE in Path(str(item.fspath)).resolve().parents:
            item.add_marker(pytest.mark.containers)
