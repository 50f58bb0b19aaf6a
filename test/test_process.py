"""core.process and core.blas: what the nodes and the runtime commands set at start."""
from __future__ import annotations

import pytest

from dmd3c_ros.core import blas, process


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


def test_blas_left_alone_when_opted_out_or_set_by_the_environment(monkeypatch):
    monkeypatch.setenv(blas.OPT_OUT, "0")
    assert blas.single_thread_blas() == f"BLAS threads left as they are ({blas.OPT_OUT}=0)"
    monkeypatch.delenv(blas.OPT_OUT)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert blas.single_thread_blas() == "BLAS threads left to the environment (OMP_NUM_THREADS)"


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
