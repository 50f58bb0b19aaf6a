"""core.memory: the malloc settings the nodes and the runtime commands apply at start (left
alone by the environment: test_process.py)."""
from __future__ import annotations

import platform

import pytest

from dmd3c_ros.core import memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_glibc_takes_both_settings(monkeypatch):
    for name in (memory.OPT_OUT, "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    line = memory.keep_freed_memory()
    assert line.startswith("malloc keeps freed memory"), line
    assert "32 MiB" in line and "256 MiB" in line
