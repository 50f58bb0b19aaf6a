"""What machine a figure was measured on (benchmarks, the variants table), what this process may
use, and where the environment has the say over a process setting (``core.process``)."""
from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else platform.processor()."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def cpu_cores() -> int:
    """CPU cores this process may use (the affinity mask, e.g. a container's quota)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def environment_keeps(what: str, opt_out: str, variables, *, plural: bool = False
                      ) -> str | None:
    """The log line when the environment keeps ``what`` as it is: ``opt_out`` set to 0, or one
    of ``variables`` (the library's own settings, the user's choice) set; None otherwise."""
    if os.environ.get(opt_out, "1") == "0":
        return f"{what} left as {'they are' if plural else 'it is'} ({opt_out}=0)"
    named = [name for name in variables if name in os.environ]
    if named:
        return f"{what} left to the environment ({', '.join(named)})"
    return None


__all__ = ["cpu_cores", "cpu_model", "environment_keeps"]
