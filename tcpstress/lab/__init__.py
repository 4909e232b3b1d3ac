"""The lab: throwaway client and server network namespaces with sysctl profiles.

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); `check_lab_capability()` says
whether this machine can, and what still works when it cannot.

The names below load on first use: tcpstress.scenario imports the lab's
address range (tcpstress.lab.addresses), and every worker process imports
scenario, so importing this package must not pull in the knowledge table,
pyroute2 helpers and profiles (about 70 ms) that only lab runs need.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tcpstress.lab.addresses import LAB_NETWORK
    from tcpstress.lab.netns import (
        Lab,
        LabError,
        check_lab_capability,
        cleanup,
        list_namespaces,
        pids_in_netns,
        run_in_netns,
    )
    from tcpstress.lab.profiles import (
        Profile,
        get_profile,
        load_profiles,
        parse_profiles,
        shipped_profiles,
        shipped_profiles_path,
    )
    from tcpstress.lab.sysctl import (
        ProfileError,
        apply_profile,
        apply_sysctls,
        lab_knob_paths,
        read_sysctls,
        validate_profile,
        validate_setting,
    )

_HOME = {
    "LAB_NETWORK": "addresses",
    **dict.fromkeys(("Lab", "LabError", "check_lab_capability", "cleanup", "list_namespaces", "pids_in_netns",
                     "run_in_netns"), "netns"),
    **dict.fromkeys(("Profile", "get_profile", "load_profiles", "parse_profiles", "shipped_profiles",
                     "shipped_profiles_path"), "profiles"),
    **dict.fromkeys(("ProfileError", "apply_profile", "apply_sysctls", "lab_knob_paths", "read_sysctls",
                     "validate_profile", "validate_setting"), "sysctl"),
}

__all__ = [
    "LAB_NETWORK",
    "Lab",
    "LabError",
    "Profile",
    "ProfileError",
    "apply_profile",
    "apply_sysctls",
    "check_lab_capability",
    "cleanup",
    "get_profile",
    "lab_knob_paths",
    "list_namespaces",
    "load_profiles",
    "parse_profiles",
    "pids_in_netns",
    "read_sysctls",
    "run_in_netns",
    "shipped_profiles",
    "shipped_profiles_path",
    "validate_profile",
    "validate_setting",
]


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module 'tcpstress.lab' has no attribute {name!r}")
    return getattr(importlib.import_module(f"tcpstress.lab.{home}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOME))
