"""ONNX Runtime session options side by side for a model on this machine's CPU.

``python -m dmd3c_ros.deploy.ort_tuning [--model YAML] [--threads 1 2] [--spinning run off]
[--graph-optimization all extended] [--frames 30] [--gap 0.05] [--json PATH]``

Every combination of intra-op threads, spinning worker threads (``OnnxRuntimeBackend``'s
``spinning``: while a run lasts, always or never) and graph optimisation level gets its own
session, timed on the KITTI sample frame (or the bench's synthetic frame) two ways: the network
alone (``OnnxRuntimeBackend._run`` on the prepared input) and the whole frame as the node runs
it (``infer``: the pre-step, the network, mapping the output back), the sessions interleaved
frame by frame in one process so that their ratios hold on a busy machine, with
``--gap`` seconds of idle before each timed call (a node's frames come apart, and workers left
spinning after one session's run would otherwise slow the next session's call). Prints
the command, the machine and a Markdown table (median and p90 ms, ratio to the backend's
default: all cores, spinning while a run lasts, "all"), sorted by the whole frame: the figure a
node sees (docs/benchmarks.md).
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
from dmd3c_ros.core.process import prepare_process
from dmd3c_ros.deploy.bench import choose_frame, machine_info
from dmd3c_ros.paths import default_model_spec
from dmd3c_ros.core.machine import cpu_cores
from dmd3c_ros.runtime.onnxruntime_backend import SPINNING_MODES, OnnxRuntimeBackend
from dmd3c_ros.runtime.spec import load_spec

PROG = "python -m dmd3c_ros.deploy.ort_tuning"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog=PROG, description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", help="model spec YAML (default: the shipped student)")
    parser.add_argument("--threads", type=int, nargs="+", default=[cpu_cores(), 1])
    parser.add_argument("--spinning", nargs="+", choices=sorted(SPINNING_MODES),
                        default=["always", "run", "off"])
    parser.add_argument("--graph-optimization", nargs="+", default=["all", "extended"],
                        choices=("basic", "extended", "all"))
    parser.add_argument("--frames", type=int, default=30, help="timed frames per session")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--gap", type=float, default=0.05,
                        help="seconds of idle before each timed call (default 0.05)")
    parser.add_argument("--data", type=Path, help="KITTI sample folder (default: the shared "
                                                  "sample when present, else a synthetic frame)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.frames < 1 or min(args.threads) < 1:
        parser.error("--frames and --threads must be >= 1")
    if args.gap < 0:
        parser.error("--gap must be >= 0")
    return args


def run(args, argv: list[str]) -> dict:
    spec = load_spec(args.model or default_model_spec())
    frame = choose_frame(args.data)
    sessions = {}
    for threads, spinning, level in itertools.product(args.threads, args.spinning,
                                                      args.graph_optimization):
        label = f"threads {threads}, spinning {spinning}, {level}"
        sessions[label] = OnnxRuntimeBackend(spec, intra_op_threads=threads,
                                             graph_optimization=level, spinning=spinning)
    # The network input of the frame, prepared once as the node prepares it.
    sparse = project_to_depth(frame.points, frame.camera, frame.lidar_to_camera)
    feeds, _ = next(iter(sessions.values())).io.prepare([frame.rgb], [sparse])
    ways = {"network": lambda backend: backend._run(feeds),
            "frame": lambda backend: backend.infer(frame.rgb, sparse)}
    times = {(label, way): [] for label in sessions for way in ways}
    labels = list(sessions)
    for index in range(args.warmup + args.frames):
        shift = index % len(labels)
        for label in labels[shift:] + labels[:shift]:
            for way, call in ways.items():
                time.sleep(args.gap)
                start = time.perf_counter()
                call(sessions[label])
                if index >= args.warmup:
                    times[label, way].append((time.perf_counter() - start) * 1000.0)  # ms
    rows = {label: {f"{way}_{stat}": value for way in ways
                    for stat, value in (("median_ms", float(np.median(times[label, way]))),
                                        ("p90_ms", float(np.percentile(times[label, way], 90))))}
            for label in sessions}
    default = f"threads {cpu_cores()}, spinning run, all"
    return {"command": " ".join([PROG] + [shlex.quote(a) for a in argv]),
            "machine": machine_info(), "model": str(spec.path), "input_size": spec.input_size,
            "frame": frame.source, "sparse_pixels": int(np.count_nonzero(sparse)),
            "frames": args.frames, "gap_s": args.gap,
            "default": default, "sessions": rows}


def markdown(result: dict) -> str:
    machine = result["machine"]
    lines = [f"`{result['command']}`", "",
             f"{machine['cpu']}, {machine['cores_usable']} cores usable, onnxruntime "
             f"{machine['onnxruntime']}; model {Path(result['model']).name} at "
             f"{result['input_size'][0]}x{result['input_size'][1]}, {result['frames']} frames "
             f"per session, sessions interleaved, {result['gap_s']:g} s idle before each call; "
             "network = the network alone; "
             "frame = the whole frame (pre-step, network, output mapped back)", "",
             "| session | frame median / p90 ms | frame vs default | network median / p90 ms "
             "| network vs default |", "|---|---:|---:|---:|---:|"]
    base = result["sessions"].get(result["default"], {})
    for label, row in sorted(result["sessions"].items(),
                             key=lambda kv: kv[1]["frame_median_ms"]):
        cells = [label]
        for way in ("frame", "network"):
            median = row[f"{way}_median_ms"]
            cells.append(f"{median:.1f} / {row[f'{way}_p90_ms']:.1f}")
            reference = base.get(f"{way}_median_ms")
            cells.append(f"{median / reference:.2f}x" if reference else "-")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    prepare_process()  # as the node's process is set up (core.process)
    result = run(args, argv)
    if args.json:
        write_json(args.json, result)
    print(markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
