"""``dmd3c gpu-check`` / deploy/gpu_check.sh (issue 19): the dry run without a GPU, the refusal."""
import json
import subprocess
from pathlib import Path

import pytest

from dmd3c_ros.cli import main
from dmd3c_ros.deploy import gpu_check
from dmd3c_ros.deploy.gpu_report import format_report
from dmd3c_ros.paths import default_model_spec

REPO = Path(__file__).resolve().parents[1]
HAS_GPU = bool(gpu_check.gpu_names())
needs_student = pytest.mark.skipif(default_model_spec() is None, reason="no shipped student")


@pytest.mark.skipif(HAS_GPU, reason="an NVIDIA GPU is here: the check would run, not refuse")
def test_without_a_gpu_the_check_refuses_in_one_line(tmp_path, capsys):
    assert main(["gpu-check", str(tmp_path / "out")]) == gpu_check.EXIT_NO_GPU == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no NVIDIA GPU" in err[0] and "--dry-run" in err[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.skipif(HAS_GPU, reason="an NVIDIA GPU is here: the script would run, not refuse")
def test_the_script_refuses_with_exit_code_2(tmp_path):
    done = subprocess.run([str(REPO / "deploy" / "gpu_check.sh"), str(tmp_path / "out")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=60)
    assert done.returncode == 2
    assert len(done.stderr.strip().splitlines()) == 1 and "no NVIDIA GPU" in done.stderr
    assert not (tmp_path / "out").exists()


@needs_student
def test_dry_run_runs_every_cpu_step_and_writes_the_report(tmp_path):
    pytest.importorskip("onnxruntime")
    out = tmp_path / "check"
    code = main(["gpu-check", str(out), "--dry-run", "--calibration-frames", "1",
                 "--timing-runs", "2", "--node-seconds", "1.5"])
    summary = json.loads((out / "gpu_check.json").read_text())
    steps = summary["steps"]
    assert summary["dry_run"] is True and list(steps) == [
        "gpu", "calibration", "engines", "timing", "node", "accuracy", "gpu_tests"]
    assert code == 0, {k: v.get("error") for k, v in steps.items()}
    for name in ("gpu", "engines"):  # what needs the GPU is recorded, not pretended
        assert steps[name]["status"] == "skipped" and "needs an NVIDIA GPU" in steps[name]["reason"]
    assert (out / "calibration" / "0000000000").is_dir()
    timings = steps["timing"]["timings"]
    assert set(timings) == {"student/onnxruntime (dry run)",
                            "student_surround/onnxruntime (dry run)"}
    assert timings["student_surround/onnxruntime (dry run)"]["input"].startswith("6x")
    assert all(t["runs"] == 2 and 0 < t["p50_ms"] <= t["p95_ms"] for t in timings.values())
    node = steps["node"]
    assert node["backend"] == "onnxruntime" and node["frames_answered"] > 0
    if steps["accuracy"].get("figures"):  # the KITTI frame is there
        figures = steps["accuracy"]["figures"]
        assert list(figures) == ["onnxruntime/fp32"] and figures["onnxruntime/fp32"][
            "rmse_change"] == 0.0
    assert steps["gpu_tests"]["exit_code"] == 0 and "collected" in steps["gpu_tests"]["summary"]
    report = (out / "gpu_check.md").read_text()
    assert "**dry run**" in report and "| engines | skipped |" in report
    assert "## timing" in report and "## node" in report


def test_report_of_a_gpu_run_lists_parity_timing_and_accuracy():
    parity = {"mean_abs_m": 0.004, "max_abs_m": 0.31, "max_abs_edge_m": 0.31,
              "max_abs_interior_m": 0.02, "nan_mismatch_px": 0}
    summary = {"dry_run": False, "seconds": 400.0, "date": "2026-12-06", "command": "x",
               "steps": {
                   "gpu": {"status": "ok", "seconds": 0.1, "gpus": ["NVIDIA H100, 570, 80 GiB"],
                           "tensorrt": "11.4"},
                   "engines": {"status": "ok", "seconds": 90.0, "engines": {
                       "student/fp16": {"build_seconds": 40.0, "key": "k", "parity": parity}}},
                   "timing": {"status": "ok", "seconds": 5.0, "what": "network", "timings": {
                       "student/fp16": {"input": "1x1216x352", "runs": 200, "p50_ms": 1.21,
                                        "p95_ms": 1.4}}},
                   "accuracy": {"status": "ok", "seconds": 3.0, "frame": "f", "figures": {
                       "tensorrt/int8": {"rmse_mm": 925.0, "mae_mm": 260.0,
                                         "rmse_change": 0.0057}}},
                   "gpu_tests": {"status": "failed", "seconds": 20.0, "error": "1 failed"}}}
    report = format_report(summary)
    assert "GPU: NVIDIA H100, 570, 80 GiB; TensorRT 11.4" in report
    assert "| student/fp16 | 40.00 | 0.0040 | 0.3100 | 0.3100 | 0.0200 | 0 |" in report
    assert "| student/fp16 | 1x1216x352 | 200 | 1.21 | 1.40 |" in report
    assert "| tensorrt/int8 | 925.0 | 260.0 | +0.57 % |" in report
    assert "| gpu_tests | failed | 20.0 | 1 failed |" in report


def test_time_runs_counts_and_orders():
    calls = []
    figures = gpu_check.time_runs(lambda: calls.append(1), runs=7, warmup=3)
    assert len(calls) == 10 and figures["runs"] == 7 and figures["warmup"] == 3
    assert 0 <= figures["min_ms"] <= figures["p50_ms"] <= figures["p95_ms"]
