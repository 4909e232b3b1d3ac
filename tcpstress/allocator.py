"""How tcpstress's own processes ask the C allocator to behave (glibc only; elsewhere nothing changes)."""

from __future__ import annotations

M_MMAP_THRESHOLD = -3  # glibc's mallopt() parameter number (malloc.h)


def pin_mmap_threshold() -> bool:
    """Have glibc's malloc hand out the HdrHistograms' count arrays by mmap every time; True if set.

    Each histogram at this range and precision holds a ~180 KB array, and the runner, which
    decodes every worker's histograms and merges them, allocates and frees a dozen of them a
    second. glibc serves blocks that large by mmap at first, but each time it frees an mmap'd
    block it raises its threshold to that block's size, so once any bigger block has come and
    gone (a 1 MB buffer does it: tests/unit/test_allocator.py) the arrays come from the heap,
    which they leave full of holes: in 4-minute churn soaks the runner's RSS still grew by
    1.0 MiB a minute in the second half (49-50 MiB) while its Python objects (tracemalloc) grew
    by under 0.1; pinned, it stayed between 27 and 50 MiB, going down as well as up (31-50.5 MiB
    over 10 minutes). The workers are left as they are: their RSS levels off after the first
    minute or two without it, and with it swung between 53 and 67 MiB. Called by the command,
    not the API.
    """
    import ctypes

    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, 128 * 1024))
