"""The lab's addresses: the only ones besides loopback that tcpstress's lab tools send to.

198.18.0.0/15 is the RFC 2544 benchmarking range. Variant `index` of a
comparison gets 198.18.<index>.0/24 (server .1, clients .2 upwards); the SYN
flood's spoofed sources come from 198.19.0.0/16 by default, routed into a
black hole inside the lab. Every safety check (scenario validation, the
flooder, the faults) uses this one definition.
"""

from __future__ import annotations

import ipaddress

LAB_NETWORK = ipaddress.IPv4Network("198.18.0.0/15")
DEFAULT_SPOOF_CIDR = "198.19.0.0/16"


def variant_subnet(index: int) -> ipaddress.IPv4Network:
    """198.18.<index>.0/24: one variant's client and server namespaces (index 0..255)."""
    return ipaddress.IPv4Network(f"198.18.{index}.0/24")
