"""ONNX Runtime session options side by side for a model on this machine's CPU.

``python -m dmd3c_ros.deploy.ort_tuning [--model YAML] [--threads 1 2] [--spinning 1 0]
[--graph-optimization all extended] [--frames 30] [--json PATH]``

Every combination of intra-op threads, spinning worker threads (ONNX Runtime's
``session.intra_op.allow_spinning``) and graph optimisation level gets its own session; the
network alone (``OnnxRuntimeBackend._run``) is timed on the KITTI sample frame (or the bench's
synthetic frame) prepared as the runtime prepares it, the sessions interleaved frame by frame in
one process so that their ratios hold on a busy machine. Prints the command, the machine and a
Markdown table (median and p90 ms, ratio to the default: all cores, spinning, "all"); the
backend's defaults are the fastest combination measured here (docs/benchmarks.md).
"""
from __future__ import annotations

import argparse
import itertools
import shlex
import sys
import time
from pathlib import Path

import numpy as np

from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.core.io import write_json
from dmd3c_ros.deploy.bench import choose_frame, machine_info
from dmd3c_ros.paths import default_model_spec
from dmd3c_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend, cpu_cores
from dmd3c_ros.runtime.spec import load_spec

PROG = "python -m dmd3c_ros.deploy.ort_tuning"
SPINNING = "session.intra_op.allow_spinning"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model spec YAML (default: the shipped student)")
    parser.add_argument("--threads", type=int, nargs="+", default=[cpu_cores(), 1])
    parser.add_argument("--spinning", type=int, nargs="+", choices=(0, 1), default=[1, 0])
    parser.add_argument("--graph-optimization", nargs="+", default=["all", "extended"],
                        choices=("basic", "extended", "all"))
    parser.add_argument("--frames", type=int, default=30, help="timed frames per session")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--data", type=Path, help="KITTI sample folder (default: the shared "
                                                  "sample when present, else a synthetic frame)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.frames < 1 or min(args.threads) < 1:
        parser.error("--frames and --threads must be >= 1")
    return args


def run(args, argv: list[str]) -> dict:
    spec = load_spec(args.model or default_model_spec())
    frame = choose_frame(args.data)
    sessions = {}
    for threads, spinning, level in itertools.product(args.threads, args.spinning,
                                                      args.graph_optimization):
        label = f"threads {threads}, spinning {'on' if spinning else 'off'}, {level}"
        sessions[label] = OnnxRuntimeBackend(spec, intra_op_threads=threads,
                                             graph_optimization=level,
                                             session_config={SPINNING: str(spinning)})
    # The network input of the frame, prepared once as the node prepares it.
    sparse = project_to_depth(frame.points, frame.camera, frame.lidar_to_camera)
    feeds, _ = next(iter(sessions.values())).io.prepare([frame.rgb], [sparse])
    times = {label: [] for label in sessions}
    labels = list(sessions)
    for index in range(args.warmup + args.frames):
        shift = index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            start = time.perf_counter()
            sessions[label]._run(feeds)
            if index >= args.warmup:
                times[label].append((time.perf_counter() - start) * 1000.0)  # s to ms
    rows = {label: {"median_ms": float(np.median(t)), "p90_ms": float(np.percentile(t, 90))}
            for label, t in times.items()}
    default = f"threads {cpu_cores()}, spinning on, all"
    return {"command": " ".join([PROG] + [shlex.quote(a) for a in argv]),
            "machine": machine_info(), "model": str(spec.path), "input_size": spec.input_size,
            "frame": frame.source, "sparse_pixels": int(np.count_nonzero(sparse)),
            "frames": args.frames,
            "default": default, "sessions": rows}


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [f"`{result['command']}`", "",
             f"{machine['cpu']}, {machine['cores_usable']} cores usable, onnxruntime "
             f"{machine['onnxruntime']}; model {Path(result['model']).name} at "
             f"{result['input_size'][0]}x{result['input_size'][1]}, {result['frames']} frames "
             "per session, sessions interleaved", "",
             "| session | median ms | p90 ms | vs default |", "|---|---:|---:|---:|"]
    base = result["sessions"].get(result["default"], {}).get("median_ms")
    for label, row in sorted(result["sessions"].items(), key=lambda kv: kv[1]["median_ms"]):
        ratio = f"{row['median_ms'] / base:.2f}x" if base else "-"
        lines.append(f"| {label} | {row['median_ms']:.1f} | {row['p90_ms']:.1f} | {ratio} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    result = run(args, argv)
    if args.json:
        write_json(args.json, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
