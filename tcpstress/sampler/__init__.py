"""Connection-state sampler: what the kernel holds, every interval.

    procfs.py   pure parsers of /proc/net text (no I/O)
    netlink.py  sock_diag state counts (count_states, StateCounter)
    nsenter.py  open sockets and fds inside another network namespace
    sampler.py  the Sampler thread, NamespaceRef, `tcpstress sample`

Import the submodules directly; this package imports nothing so that the pure
parsers stay cheap to load.
"""
