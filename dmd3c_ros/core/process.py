"""What the nodes and the runtime ``dmd3c`` commands set in their process once, at start.

- malloc keeps freed memory (``core.memory``);
- BLAS runs on one thread (``core.blas``).

Both change how fast a frame goes, never what it gives. Training applies neither.
"""
from __future__ import annotations

from dmd3c_ros.core.blas import single_thread_blas
from dmd3c_ros.core.memory import keep_freed_memory

_done: dict[str, str] | None = None


def prepare_process() -> dict[str, str]:
    """Apply both settings once per process; returns {"malloc": line, "blas": line}, what each
    did, for a log (the same on later calls)."""
    global _done
    if _done is None:
        _done = {"malloc": keep_freed_memory(), "blas": single_thread_blas()}
    return dict(_done)


def applied() -> dict[str, str] | None:
    """What :func:`prepare_process` returned in this process, or None before any call (reports
    ask this: describing the process must not change it)."""
    return None if _done is None else dict(_done)


__all__ = ["applied", "prepare_process"]
