"""The runner's pinned mmap threshold, witnessed by glibc's own accounting (mallinfo2)."""

from __future__ import annotations

import ctypes
import subprocess
import sys

import pytest

from tests.conftest import ROOT

PROBE = """
import ctypes, sys
class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]
libc = ctypes.CDLL(None)
libc.mallinfo2.restype = MallInfo2
if sys.argv[1] == "pinned":
    from tcpstress.allocator import pin_mmap_threshold
    assert pin_mmap_threshold()
from tcpstress import results
big = bytes(1 << 20)  # a larger block than a histogram's, freed: glibc raises its threshold past it
del big
mapped = []
for _ in range(3):
    before = libc.mallinfo2().hblkhd
    histogram = results.new_histogram()
    mapped.append(libc.mallinfo2().hblkhd - before)
    del histogram
print(" ".join(map(str, mapped)))
"""


def _has_mallinfo2() -> bool:
    try:
        return hasattr(ctypes.CDLL(None), "mallinfo2")
    except OSError:
        return False


@pytest.mark.skipif(not _has_mallinfo2(), reason="glibc >= 2.33 only (mallinfo2)")
@pytest.mark.parametrize("mode", ["pinned", "default"])
def test_histogram_arrays_are_mapped_each_time_only_when_pinned(mode):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], cwd=ROOT, capture_output=True, text=True,
                         timeout=60, check=True).stdout.split()
    mapped = [int(v) for v in out]
    if mode == "pinned":
        # Every histogram's count array is its own mapping (returned to the kernel when freed).
        assert all(m >= 100_000 for m in mapped), mapped
    else:
        # glibc's default: after the 1 MB block, the same arrays come from the heap.
        assert mapped == [0, 0, 0], mapped
