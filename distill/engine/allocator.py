"""Memory a training process frees stays with it: glibc's allocator otherwise hands large freed
blocks back to the system and maps fresh pages for the next step's activations, which are then
faulted in page by page. Measured on resnet56 -> resnet20 (CPU, batch 64): a stage took 2.2x the
minor page faults of a plain loop doing the same work and ran 20% fewer steps a second; with
freed memory kept, both run at the same speed. ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` or ``GLIBC_TUNABLES`` in the environment take precedence."""
from __future__ import annotations

import ctypes
import os
import sys

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # glibc's mallopt parameters
MMAP_THRESHOLD = 32 << 20  # glibc's largest: blocks up to 32 MiB come from the heap
TRIM_THRESHOLD = 1 << 30  # free heap memory kept up to 1 GiB


def keep_freed_memory(libc=None) -> bool:
    """Set glibc's thresholds (Linux with glibc, unless the environment sets them); True when
    set."""
    if not sys.platform.startswith("linux") or any(
            key in os.environ for key in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_",
                                          "GLIBC_TUNABLES")):
        return False
    try:
        libc = libc or ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, ...)
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
