"""core.process, core.blas and core.memory: what the nodes and the runtime commands set at
start (core.memory's glibc test: test_memory.py)."""
from __future__ import annotations

import pytest

from dmd3c_ros.core import blas, memory, process


def test_applied_once_per_process(monkeypatch):
    monkeypatch.setattr(process, "_done", None)
    calls = []
    monkeypatch.setattr(process, "keep_freed_memory", lambda: calls.append("m") or "malloc line")
    monkeypatch.setattr(process, "single_thread_blas", lambda: calls.append("b") or "blas line")
    assert process.applied() is None
    first = process.prepare_process()
    assert first == process.prepare_process() == {"malloc": "malloc line", "blas": "blas line"}
    assert calls == ["m", "b"]
    first["blas"] = "changed by a caller"
    assert process.applied() == {"malloc": "malloc line", "blas": "blas line"}


@pytest.mark.parametrize("apply, opt_out, opted_out, variable, value, kept", [
    (memory.keep_freed_memory, memory.OPT_OUT, f"malloc left as it is ({memory.OPT_OUT}=0)",
     "MALLOC_TRIM_THRESHOLD_", "1000000",
     "malloc left to the environment (MALLOC_TRIM_THRESHOLD_)"),
    (blas.single_thread_blas, blas.OPT_OUT, f"BLAS threads left as they are ({blas.OPT_OUT}=0)",
     "OMP_NUM_THREADS", "3", "BLAS threads left to the environment (OMP_NUM_THREADS)"),
], ids=["malloc", "blas"])
def test_left_alone_when_opted_out_or_set_by_the_environment(monkeypatch, apply, opt_out,
                                                             opted_out, variable, value, kept):
    monkeypatch.setenv(opt_out, "0")
    assert apply() == opted_out
    monkeypatch.delenv(opt_out)
    monkeypatch.setenv(variable, value)
    assert apply() == kept


def test_blas_limited_to_one_thread(monkeypatch):
    controller = pytest.importorskip("threadpoolctl").ThreadpoolController()
    if not controller.select(user_api="blas").info():
        pytest.skip("no BLAS library loaded in this process")
    for name in (blas.OPT_OUT,) + blas._THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    before = controller.select(user_api="blas").limit(limits=None)  # to restore afterwards
    try:
        line = blas.single_thread_blas()
        assert line.startswith("BLAS limited to one thread"), line
        threads = [entry["num_threads"] for entry in
                   controller.select(user_api="blas").info()]
        assert threads and set(threads) == {1}
    finally:
        before.restore_original_limits()
