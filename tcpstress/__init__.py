"""tcpstress: a TCP load generator that also watches what the kernel holds."""

__version__ = "0.1.0"
