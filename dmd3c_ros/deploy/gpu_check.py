"""``dmd3c gpu-check``: the TensorRT path measured on this machine's NVIDIA GPU, in one run.

``deploy/gpu_check.sh OUT`` (``make gpu-check OUT=...``) installs what it needs and calls this.
Steps, each timed and recorded whether it passes, fails or is skipped (a failure is recorded and
the next step runs):

1. ``gpu``: the GPU, its driver and the TensorRT version (``nvidia-smi``).
2. ``calibration``: synthetic KITTI-like frames made here (``dmd3c sim``), the INT8 calibration
   set and the node's replayed frame.
3. ``engines``: FP16 and INT8 engines of the single-view and surround students (batch 1 and
   6) through ``dmd3c engine``'s builder and cache (``OUT/engines``), each compared with ONNX
   Runtime on the CPU: mean / max depth difference, the max split at depth edges.
4. ``timing``: each engine alone, p50 / p95 over ``timing_runs`` runs after a warm-up.
5. ``node``: the completion node with the TensorRT FP16 engine on the replayed frame, 10 Hz for
   ``node_seconds``: in-node p50 / p95 and frames answered.
6. ``accuracy``: KITTI frame 5 (``--kitti``) through ONNX Runtime FP32, TensorRT FP16 and INT8:
   RMSE and its change.
7. ``gpu_tests``: the test suite's GPU tests (``pytest -m gpu``).

``--dry-run`` (no GPU needed) runs every step that needs none for real (the calibration set, the
ONNX Runtime reference of the parity and accuracy steps, the timing and node steps on ONNX
Runtime, the collection of the GPU tests, the report) and records the GPU steps as skipped. The
results go to ``OUT/gpu_check.json`` and ``OUT/gpu_check.md`` (:mod:`.gpu_report`).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np

from dmd3c_ros.deploy.gpu_report import write_report
from dmd3c_ros.paths import kitti_sample_dir

EXIT_NO_GPU = 2
NO_GPU = ("gpu-check: no NVIDIA GPU here (nvidia-smi lists none); "
          "--dry-run runs the steps that need none")
REPO = Path(__file__).resolve().parents[2]
MODELS = (("student", "models/student.yaml", 1), ("student_surround",
                                                  "models/student_surround.yaml", 6))
PRECISIONS = ("fp16", "int8")
SPARSE = "velodyne_raw_02.png"   # the official sparse input of a KITTI depth-completion sample


def gpu_names() -> list[str]:
    """The GPUs ``nvidia-smi -L`` lists (empty without a driver or a GPU)."""
    try:
        listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True,
                                timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.split(":", 1)[1].split("(UUID")[0].strip()
            for line in listed.stdout.splitlines() if line.startswith("GPU ") and ":" in line]


def time_runs(run: Callable[[], object], runs: int, warmup: int) -> dict:
    """p50 / p95 / min milliseconds of ``run()`` over ``runs`` calls after ``warmup``."""
    for _ in range(warmup):
        run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000.0)  # s to ms
    return {"runs": runs, "warmup": warmup, "p50_ms": float(np.percentile(times, 50)),
            "p95_ms": float(np.percentile(times, 95)), "min_ms": float(min(times))}


class GpuCheck:
    """One run of the check (see the module docstring); :meth:`run` returns the summary."""

    def __init__(self, out, *, dry_run: bool, kitti=None, calibration_frames: int = 16,
                 timing_runs: int = 200, node_seconds: float = 30.0,
                 say: Callable[[str], None] = print) -> None:
        self.out = Path(out)
        self.dry_run = dry_run
        self.kitti = Path(kitti) if kitti else kitti_sample_dir()
        self.calibration_frames, self.timing_runs = calibration_frames, timing_runs
        self.node_seconds, self.say = node_seconds, say
        self.steps: dict[str, dict] = {}
        self.engines: dict[str, dict] = {}   # "model/precision" -> dmd3c engine's result
        self.calibration = self.out / "calibration"

    def _step(self, name: str, needs_gpu: bool, body: Callable[[], dict]) -> None:
        start = time.perf_counter()
        if needs_gpu and self.dry_run:
            record = {"status": "skipped", "reason": "dry run: needs an NVIDIA GPU"}
        else:
            self.say(f"gpu-check: {name} ...")
            try:
                record = {"status": "ok", **body()}
            except Exception as error:  # recorded; the next step runs
                record = {"status": "failed", "error": f"{type(error).__name__}: {error}"}
        record["seconds"] = round(time.perf_counter() - start, 2)
        self.steps[name] = record
        self.say(f"gpu-check: {name}: {record['status']} ({record['seconds']:.1f} s)")

    def run(self) -> dict:
        start = time.perf_counter()
        self.out.mkdir(parents=True, exist_ok=True)
        self._step("gpu", True, self.gpu)
        self._step("calibration", False, self.make_calibration)
        self._step("engines", True, self.build_engines)
        self._step("timing", False, self.time_engines)
        self._step("node", False, self.run_node)
        self._step("accuracy", False, self.accuracy)
        self._step("gpu_tests", False, self.gpu_tests)
        summary = {"dry_run": self.dry_run, "seconds": round(time.perf_counter() - start, 1),
                   "command": " ".join(["dmd3c", "gpu-check", *sys.argv[2:]]) if
                   sys.argv[1:2] == ["gpu-check"] else None,
                   "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "steps": self.steps}
        write_report(self.out, summary)
        return summary

    # ------------------------------------------------------------------------------- steps
    def gpu(self) -> dict:
        query = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                                "--format=csv,noheader"], capture_output=True, text=True,
                               timeout=30, check=True).stdout.strip().splitlines()
        import tensorrt
        return {"gpus": query, "tensorrt": tensorrt.__version__}

    def make_calibration(self) -> dict:
        # dmd3c sim in its own process: deploy does not import training (DESIGN.md layers).
        command = [sys.executable, "-m", "dmd3c_ros.cli", "sim", "--frames",
                   str(self.calibration_frames), "--seed", "77", "--format", "kitti-sample",
                   "--lidar", "hdl64", "--out", str(self.calibration)]
        if not (self.calibration / f"{self.calibration_frames - 1:010d}").is_dir():
            subprocess.run(command, check=True, capture_output=True, text=True)
        return {"folder": str(self.calibration), "frames": self.calibration_frames,
                "made_by": " ".join(["dmd3c", *command[3:]])}

    def build_engines(self) -> dict:
        from dmd3c_ros.deploy.engine import build_engine
        for name, spec, batch in MODELS:
            for precision in PRECISIONS:
                result = build_engine(
                    REPO / spec, precision, engine_cache_dir=self.out / "engines",
                    max_batch=batch, calibration=self.calibration,
                    calibration_frames=self.calibration_frames,
                    progress=lambda line: self.say(f"  {line}"))
                self.engines[f"{name}/{precision}"] = result
        return {"engines": {key: {"build_seconds": r["build_seconds"], "key": r["key"],
                                  "parity": r["parity"]} for key, r in self.engines.items()}}

    def _backends(self):
        """(label, model name, batch, backend) of each engine built, or on a dry run ONNX
        Runtime on the CPU for each model in their place."""
        from dmd3c_ros.runtime.factory import create_backend
        if self.dry_run:
            for name, spec, batch in MODELS:
                yield (f"{name}/onnxruntime (dry run)", name, batch,
                       create_backend("onnxruntime", REPO / spec, max_batch=batch))
            return
        for name, spec, batch in MODELS:
            for precision in PRECISIONS:
                if f"{name}/{precision}" in self.engines:
                    yield (f"{name}/{precision}", name, batch,
                           create_backend("tensorrt", REPO / spec, precision=precision,
                                          engine_cache_dir=self.out / "engines",
                                          max_batch=batch))

    def time_engines(self) -> dict:
        from dmd3c_ros.deploy.engine import parity_frames
        runs = self.timing_runs if not self.dry_run else min(self.timing_runs, 5)
        timings = {}
        for label, _, batch, backend in self._backends():
            try:
                rgb, sparse = parity_frames(backend.spec, count=1)[0]
                feeds, _ = backend.io.prepare([rgb] * batch, [sparse] * batch)
                h, w = backend.spec.input_size
                timings[label] = {"input": f"{batch}x{w}x{h}",
                                  **time_runs(lambda: backend._run(feeds), runs,
                                              warmup=max(1, runs // 10))}
            finally:
                backend.close()
        if not timings:
            raise RuntimeError("no engine was built")
        return {"what": "the network alone (inputs prepared once), milliseconds",
                "timings": timings}

    def run_node(self) -> dict:
        from dmd3c_ros.deploy.bench import load_frame
        from dmd3c_ros.ros.bench import run_node
        frame = load_frame(self.calibration / "0000000000")
        backend, parameters = ("onnxruntime", {}) if self.dry_run else (
            "tensorrt", {"precision": "fp16", "engine_cache_dir": str(self.out / "engines")})
        block = run_node(frame, backend=backend, model=str(REPO / MODELS[0][1]),
                         seconds=self.node_seconds, parameters=parameters,
                         log_path=self.out / "node.log", say=lambda line: self.say(f"  {line}"))
        keep = ("backend", "p50_ms", "p95_ms", "frames_sent", "frames_answered",
                "answered_fraction", "node_stages_p50_ms", "resolution", "rate_hz")
        return {"frame": str(frame.source), "stream_seconds": block.get("seconds"),
                **{k: block.get(k) for k in keep}}

    def accuracy(self) -> dict:
        from dmd3c_ros.core.io import read_kitti_depth, read_rgb
        from dmd3c_ros.core.metrics import depth_metrics
        from dmd3c_ros.runtime.factory import create_backend
        if not (self.kitti / SPARSE).is_file():
            return {"status": "skipped",
                    "reason": f"no {SPARSE} in {self.kitti} (--kitti: a KITTI depth-completion "
                              "sample folder)"}
        sample = {"rgb": read_rgb(self.kitti / "image_02.png"),
                  "sparse": read_kitti_depth(self.kitti / SPARSE),
                  "gt": read_kitti_depth(self.kitti / "groundtruth_02.png")}
        spec = REPO / MODELS[0][1]
        runs = [("onnxruntime/fp32", "onnxruntime", "fp32")] + [
            (f"tensorrt/{p}", "tensorrt", p) for p in PRECISIONS if not self.dry_run]
        figures = {}
        for label, name, precision in runs:
            backend = create_backend(name, spec, precision=precision,
                                     engine_cache_dir=self.out / "engines")
            try:
                depth = backend.infer(sample["rgb"], sample["sparse"]).depth
            finally:
                backend.close()
            metrics = depth_metrics(depth, sample["gt"])
            figures[label] = {"rmse_mm": metrics["rmse_mm"], "mae_mm": metrics["mae_mm"]}
        base = figures["onnxruntime/fp32"]["rmse_mm"]
        for values in figures.values():
            values["rmse_change"] = values["rmse_mm"] / base - 1.0
        return {"frame": str(self.kitti), "figures": figures}

    def gpu_tests(self) -> dict:
        tests = REPO / "test"
        if not tests.is_dir():
            return {"status": "skipped", "reason": f"no test folder at {tests}"}
        command = [sys.executable, "-m", "pytest", "-m", "gpu", "-q", "-rs", "-p",
                   "no:cacheprovider", str(tests)] + (["--collect-only"] if self.dry_run else [])
        done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
        lines = [line for line in done.stdout.splitlines() if line.strip()]
        return {"command": " ".join(command[1:]), "exit_code": done.returncode,
                "summary": lines[-1] if lines else "", "status": "ok" if done.returncode in (
                    0, 5) else "failed"}   # 5: no test collected


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "gpu-check", help="build, check and time the TensorRT engines on this GPU (issue 19)",
        description="Build FP16 and INT8 TensorRT engines of the shipped students, compare "
                    "them with ONNX Runtime, time them, run the node on them and the GPU tests; "
                    "write OUT/gpu_check.json and OUT/gpu_check.md. Without a GPU it refuses "
                    f"(exit code {EXIT_NO_GPU}) unless --dry-run.")
    p.add_argument("out", help="folder for the results (created)")
    p.add_argument("--dry-run", action="store_true",
                   help="no GPU: run the steps that need none, record the others as skipped")
    p.add_argument("--kitti", help="KITTI frame folder of the accuracy step (default: "
                                   "../shared/data/kitti_dc/0000000005)")
    p.add_argument("--calibration-frames", type=int, default=16)
    p.add_argument("--timing-runs", type=int, default=200)
    p.add_argument("--node-seconds", type=float, default=30.0)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if not args.dry_run and not gpu_names():
        print(NO_GPU, file=sys.stderr)
        return EXIT_NO_GPU
    summary = GpuCheck(args.out, dry_run=args.dry_run, kitti=args.kitti,
                       calibration_frames=args.calibration_frames,
                       timing_runs=args.timing_runs, node_seconds=args.node_seconds).run()
    print(f"wrote {Path(args.out) / 'gpu_check.md'} and gpu_check.json "
          f"({summary['seconds']:.0f} s)")
    failed = [name for name, step in summary["steps"].items() if step["status"] == "failed"]
    return 1 if failed else 0


__all__ = ["EXIT_NO_GPU", "GpuCheck", "add_parser", "gpu_names", "run", "time_runs"]
