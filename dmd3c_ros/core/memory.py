"""Keep freed memory in the process instead of handing it back to the kernel after every frame.

Every frame allocates and frees the same few-megabyte arrays (the classical step's temporaries,
the network's inputs and outputs, the restored depth). glibc's malloc serves blocks that size
with fresh ``mmap`` pages, or trims its heap when they are freed, so each frame pays the page
faults of zeroing them again. Raising ``M_MMAP_THRESHOLD`` (to 32 MiB, above any one array of a
frame up to about 4 megapixels) and ``M_TRIM_THRESHOLD`` (256 MiB) together keeps them in the
heap for the next frame: on 2 cores the KITTI frame's network pre-step took about 10 ms instead
of 13.5-19.6 ms, and in a quiet half hour the completion node's in-node p50 was 48-53 ms against
61-76 ms without (``docs/benchmarks.md``, "Keeping freed memory"), for a few megabytes more
resident memory. Either setting alone is slower than neither.

The nodes and the ``dmd3c`` commands that run a backend apply it once at start
(``core.process``). It changes nothing where the environment already sets glibc's
``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_`` (the user's choice), with
``DMD3C_KEEP_FREED_MEMORY=0``, or without glibc.
"""
from __future__ import annotations

import ctypes
import platform

from dmd3c_ros.core.machine import environment_keeps

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3   # glibc's mallopt parameters (malloc.h)
MMAP_THRESHOLD = 32 << 20    # bytes: blocks below it come from the heap, not fresh mmap pages
TRIM_THRESHOLD = 256 << 20   # bytes of freed heap kept at its top before trimming
OPT_OUT = "DMD3C_KEEP_FREED_MEMORY"
_GLIBC_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> str:
    """Apply the settings of the module docstring; returns what was done, as one line for a
    log."""
    kept = environment_keeps("malloc", OPT_OUT, _GLIBC_VARIABLES)
    if kept:
        return kept
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return "malloc left as it is (not glibc)"
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError) as error:
        return f"malloc left as it is (no mallopt: {error})"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    # Both or neither: the mmap threshold alone lets the heap trim every frame, the trim
    # threshold alone stops glibc raising the mmap threshold by itself.
    if mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) != 1:
        return "malloc left as it is (mallopt refused M_MMAP_THRESHOLD)"
    if mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
        return "malloc: M_MMAP_THRESHOLD set, mallopt refused M_TRIM_THRESHOLD"
    return (f"malloc keeps freed memory (M_MMAP_THRESHOLD {MMAP_THRESHOLD >> 20} MiB, "
            f"M_TRIM_THRESHOLD {TRIM_THRESHOLD >> 20} MiB; {OPT_OUT}=0 turns it off)")


__all__ = ["OPT_OUT", "keep_freed_memory"]
