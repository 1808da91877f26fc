"""Large message buffers go back to the system after use.

glibc serves big allocations with mmap, which free() returns to the kernel at
once, but it raises that threshold each time such a block is freed (up to 32
MiB): after the first burst of 10 MB messages, later ones come from the heap,
and a heap's freed memory mostly stays with the process. Fixing the threshold
keeps every message-sized buffer an mmap of its own, so a burst's memory is
returned when the burst is over instead of staying as the new resident size.
"""

from __future__ import annotations

import ctypes
import ctypes.util

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
# Buffers above this are mmapped and returned on free (glibc's own default start).
MMAP_THRESHOLD = 128 * 1024


def return_large_buffers() -> bool:
    """Fix glibc's mmap threshold; False where the C library is not glibc."""
    name = ctypes.util.find_library("c")
    if not name:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    fixed = bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1)
    # Give back the top of the heap too, once 32 MiB of it are free.
    mallopt(_M_TRIM_THRESHOLD, 32 * 1024 * 1024)
    return fixed
