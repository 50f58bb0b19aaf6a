"""Per-frame image work split into bands done side by side, one per usable core.

An operation whose every output pixel depends only on input pixels within ``margin`` rows (or
columns) can be computed band by band: each band reads ``margin`` rows / columns of its
neighbours' context and writes only its own. The classical completion runs in column strips
(:mod:`core.classical`), the residual student's feature maps in row bands (:mod:`core.features`).
The bands run on one process-wide pool of threads (OpenCV and numpy release the GIL in their
loops); the calling thread does the first band itself.
"""
from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from dmd3c_ros.core.machine import cpu_cores

MAX_THREADS = 4

_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def band_count(threads: int | None, length: int, min_band: int) -> int:
    """How many bands: ``threads`` (None: one per usable core, at most MAX_THREADS), fewer
    where ``length`` (rows or columns) would make a band narrower than ``min_band``.

    Raises:
        ValueError: ``threads`` < 1.
    """
    if threads is not None and int(threads) < 1:
        raise ValueError(f"threads must be >= 1, got {threads}")
    wanted = int(threads) if threads else min(cpu_cores(), MAX_THREADS)
    return max(1, min(wanted, length // max(1, min_band)))


def run_bands(length: int, count: int, margin: int, work: Callable[[int, int, int, int], None],
              *, align: int = 1) -> None:
    """Calls ``work(lo, hi, start, stop)`` for ``count`` bands of ``range(length)`` side by side:
    the band owns ``[start, stop)`` and reads ``[lo, hi)``, its own with ``margin`` of context
    on each side (clipped to the image), ``lo`` rounded down to a multiple of ``align``.
    Returns when every band is done; the first exception raised by a band is raised here."""
    edges = [length * i // count for i in range(count + 1)]

    def band(i: int) -> None:
        start, stop = edges[i], edges[i + 1]
        lo = max(0, (start - margin) // align * align)
        work(lo, min(length, stop + margin), start, stop)

    if count == 1:
        band(0)
        return
    pending = [_shared_pool().submit(band, i) for i in range(1, count)]
    error = None
    try:
        band(0)
    except Exception as raised:  # still wait for the others: they write into the caller's arrays
        error = raised
    for job in pending:
        try:
            job.result()
        except Exception as raised:
            error = error or raised
    if error is not None:
        raise error


def _shared_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(MAX_THREADS - 1, thread_name_prefix="dmd3c-bands")
        return _pool


def _forget_pool() -> None:
    """In a forked child: the parent's worker threads do not exist there (a pool believing it
    still has them would never run a job), so the child makes its own when it needs one."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool)


__all__ = ["MAX_THREADS", "band_count", "run_bands"]
