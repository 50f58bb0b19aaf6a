"""The student variants side by side: parameters, GFLOPs and ONNX Runtime CPU latency.

``python -m dmd3c_ros.training.variants [--size 352 1216] [--threads 2] [--repeat 30]
[--variants tiny small]`` prints the command line, the machine (CPU count and model, library
versions) and one Markdown table row per variant of ``student.VARIANTS``. Each variant is built
with random weights (seed 0; latency does not depend on the weights), exported to a temporary ONNX
file by ``export.export_onnx`` (the same export as ``dmd3c export``), run 3 times to warm up and
then timed ``--repeat`` times, batch 1, on a LiDAR-like input (about 5 % of the pixels with a
value) in a CPU session with ``--threads`` intra-op threads.
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from dmd3c_ros.core.machine import cpu_cores, cpu_model
from dmd3c_ros.training.export import export_onnx
from dmd3c_ros.training.parity import ort_session, sample_inputs
from dmd3c_ros.training.student import VARIANTS, build_student, count_parameters, gflops

WARMUP = 3
HEADER = ("| variant | parameters | GFLOPs | ORT CPU median [ms] | ORT CPU p90 [ms] |\n"
          "|---|---:|---:|---:|---:|")


def measure(variant: str, size: tuple[int, int], *, threads: int, repeat: int,
            workdir: Path) -> dict:
    """Parameters, GFLOPs and ORT CPU latency (median, p90 in ms) of one randomly initialised
    variant at ``size`` (height, width)."""
    torch.manual_seed(0)
    model = build_student(variant).eval()
    figures = {"variant": variant, "parameters": count_parameters(model),
               "gflops": gflops(model, *size)}
    path = export_onnx(model, workdir / f"{variant}.onnx", size)
    session = ort_session(path, threads=threads)
    rgb, sparse = sample_inputs(size, lidar=True, seed=0)
    feeds = {"rgb": rgb, "sparse": sparse}
    for _ in range(WARMUP):
        session.run(None, feeds)
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        session.run(None, feeds)
        times.append((time.perf_counter() - start) * 1000.0)  # s to ms
    figures["median_ms"] = float(np.median(times))
    figures["p90_ms"] = float(np.percentile(times, 90))
    return figures


def row(f: dict) -> str:
    return (f"| {f['variant']} | {f['parameters']:,} | {f['gflops']:.3g} | "
            f"{f['median_ms']:.1f} | {f['p90_ms']:.1f} |")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmd3c_ros.training.variants",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, nargs=2, default=(352, 1216), metavar=("H", "W"),
                        help="network input height and width, multiples of 32")
    parser.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads")
    parser.add_argument("--repeat", type=int, default=30, help="timed runs per variant")
    parser.add_argument("--variants", nargs="+", choices=sorted(VARIANTS),
                        default=list(VARIANTS), help="variants to measure (default: all)")
    args = parser.parse_args(argv)
    if args.repeat < 1 or args.threads < 1:
        parser.error("--repeat and --threads must be at least 1")
    import onnxruntime
    words = sys.argv[1:] if argv is None else list(argv)
    size = tuple(args.size)
    command = " ".join(["python -m dmd3c_ros.training.variants"] + [shlex.quote(w) for w in words])
    print(f"Command: `{command}`")
    print(f"Machine: {os.cpu_count()} CPUs ({cpu_cores()} usable)"
          + f", {cpu_model()}; onnxruntime {onnxruntime.__version__}, torch {torch.__version__}")
    print(f"Input {size[0]}x{size[1]}, batch 1, LiDAR-like sparse input; {args.threads} intra-op "
          f"threads; median and p90 of {args.repeat} runs after {WARMUP} warm-up runs.")
    print()
    print(HEADER)
    with tempfile.TemporaryDirectory(prefix="dmd3c_variants_") as tmp:
        for variant in args.variants:
            print(row(measure(variant, size, threads=args.threads, repeat=args.repeat,
                              workdir=Path(tmp))), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
