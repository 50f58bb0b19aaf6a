"""core.memory: the malloc settings the nodes and the runtime commands apply at start."""
from __future__ import annotations

import platform

import pytest

from dmd3c_ros.core import memory


def test_left_alone_when_opted_out_or_set_by_the_environment(monkeypatch):
    monkeypatch.setenv(memory.OPT_OUT, "0")
    assert memory.keep_freed_memory() == f"malloc left as it is ({memory.OPT_OUT}=0)"
    monkeypatch.delenv(memory.OPT_OUT)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "1000000")
    assert memory.keep_freed_memory() == "malloc left to the environment (MALLOC_TRIM_THRESHOLD_)"


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                    reason="mallopt is glibc's")
def test_glibc_takes_both_settings(monkeypatch):
    for name in (memory.OPT_OUT, "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    line = memory.keep_freed_memory()
    assert line.startswith("malloc keeps freed memory"), line
    assert "32 MiB" in line and "256 MiB" in line
