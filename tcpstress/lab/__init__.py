"""The lab: throwaway client and server network namespaces with sysctl profiles.

Needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN); `check_lab_capability()` says
whether this machine can, and what still works when it cannot.
"""

from tcpstress.lab.netns import (
    LAB_NETWORK,
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
    apply_sysctls,
    lab_knob_paths,
    read_sysctls,
    validate_profile,
    validate_setting,
)

__all__ = [
    "LAB_NETWORK",
    "Lab",
    "LabError",
    "Profile",
    "ProfileError",
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
