"""``dmd3c bench``: per-stage latency of every backend, in process and through a ROS graph.

In process, each frame goes through the node's own code path, stage by stage:

    decode       rclpy deserialize_message of the serialized Image, CameraInfo and PointCloud2,
                 then image_to_rgb, camera_info_to_camera, pointcloud2_to_xyz (ros.adapters)
    projection   \\
    preprocess    |  CompletionPipeline.run's FrameResult.timings_ms (network backends; the
    inference     |  classical backend has projection and inference only)
    postprocess  /
    encode       array_to_image of depth (32FC1) and uncertainty (when the model has it),
                 camera_to_camera_info, serialize_message of each
    total        the sum of the stages measured for that frame

With batch N > 1 the N copies go through ``CompletionPipeline.run_batch`` (the surround node's
path: projection each, one batched inference) and the figures are per batch, plus
``per_frame_ms`` = total / N. Without rclpy the message stages are left out (a
note says so). Backends run back to back in one process, frames interleaved round-robin (the
first backend rotated every frame) so that their ratios are comparable on a busy machine.

``--node`` starts the completion node as its own process (``ros.graph.NodeProcess`` on a private,
machine-local graph with the shipped Fast DDS profile), streams the frame at ``--rate`` Hz with
``ros.feeder.StreamDriver`` and reads the node's own latency (image received -> depth published)
from its /diagnostics, next to the subscriber-side latency (publish -> depth received).

``--soak SECONDS`` is a long ``--node`` run that also samples, every ``--soak-interval`` seconds,
the node process's resident memory and CPU time (Linux /proc; "not measured" elsewhere), its
/diagnostics latency, and the subscriber-side latency and frame counts of the interval; the
``soak`` block sums them up as memory growth after a warm-up and p95 drift between the start and
the end of the run (``ros.bench.soak_summary`` says exactly how).

JSON (DESIGN.md; keys may be added, never renamed)::

    {"backends": {LABEL: {STAGE: {"p50_ms": .., "p95_ms": ..}}},   # first resolution, batch 1
     "node": {"backend": .., "p50_ms": .., "p95_ms": .., "dropped": .., "frames": ..},  # --node
     "soak": {"samples": [{"t_s", "rss_mib", "cpu_s", "node_p50_ms", "node_p95_ms",     # --soak
                           "sub_p50_ms", "sub_p95_ms", "sent", "answered", ..}],
              "rss_first_mib", "rss_last_mib", "rss_growth_mib", "p95_first_minute_ms",
              "p95_last_minute_ms", "p95_drift", "answered", "sent", "dropped", ..},
     "runs": [every LABEL x resolution x batch], "skipped": {LABEL: why}, "notes": [..],
     "surround": {.., "runs": [{backend, mode, stages}], "ratios": {..}},   # --nuscenes
     "machine": {..}, "command": .., "date": .., "frames": .., "warmup": .., ...}

The ROS side (message steps, the node run) is ``dmd3c_ros.ros.bench``, imported only when used:
this module needs no rclpy. The work is in ``bench_frames`` (the frames), ``bench_measure``
(the backends and the timing) and ``bench_report`` (the machine and the Markdown).
"""
from __future__ import annotations

import datetime
import sys
from pathlib import Path
from typing import Callable

from dmd3c_ros.core.config import BACKENDS, PRECISIONS
from dmd3c_ros.core.io import write_json
from dmd3c_ros.core.machine import cpu_cores

# The parts; load_frame, synthetic_frame, TENSORRT_SKIPPED and format_soak are imported from
# here by gpu_check and the tests.
from .bench_frames import (DEFAULT_DATA, BenchFrame, choose_frame, frame_at,  # noqa: F401
                           load_frame, parse_resolution, synthetic_frame)
from .bench_measure import (INT8_SPEC, TENSORRT_SKIPPED, create_entries,  # noqa: F401
                            measure, message_stages, percentiles)
from .bench_report import format_markdown, format_soak, machine_info  # noqa: F401

NODE_OPTIONS = ("node_backend", "rate", "seconds", "domain_id", "ready_timeout")
SOAK_OPTIONS = ("soak_interval",)


def run_bench(frame: BenchFrame, *, backends=(), models=(), precisions=(), resolutions=(),
              batches=(1,), frames: int = 30, warmup: int = 3, threads: int | None = None,
              nuscenes=None, say: Callable[[str], None] = print) -> dict:
    """Measure every backend at every resolution x batch (and, with ``nuscenes``, a real
    surround sweep batched against one view at a time); the result dict without ``node``,
    ``command`` and ``date`` (see the module docstring)."""
    if frames < 1 or warmup < 0:
        raise ValueError(f"--frames must be >= 1 and --warmup >= 0, got {frames} and {warmup}")
    batches = list(dict.fromkeys(int(b) for b in (batches or (1,))))
    if any(b < 1 for b in batches):
        raise ValueError(f"--batch must be >= 1, got {batches}")
    resolutions = list(dict.fromkeys(tuple(r) for r in (resolutions or (frame.size,))))
    messages, why = message_stages()
    notes = [] if why is None else [why]
    say("creating backends")
    entries, skipped = create_entries(backends, models, precisions, threads=threads, say=say)
    if not entries:
        raise ValueError("no backend could be measured: "
                         + "; ".join(f"{k}: {v}" for k, v in skipped.items()))
    runs = []
    for width, height in resolutions:
        here = frame_at(frame, width, height)
        for batch in batches:
            say(f"measuring {width}x{height} batch {batch}: {len(entries)} backends x "
                f"({warmup} warm-up + {frames} timed), round robin")
            timed = measure(entries, here, messages, batch=batch, frames=frames, warmup=warmup,
                            say=say)
            for entry in entries:
                samples = timed[entry.label]
                stages = percentiles(samples)
                runs.append({
                    "backend": entry.label, "kind": entry.backend, "precision": entry.precision,
                    "model": entry.model, "resolution": f"{width}x{height}", "batch": batch,
                    "frames": len(samples), "stages": stages,
                    "decoded_size": "{}x{}".format(*samples[-1].decoded_size),
                    "encoded_size": ("{}x{}".format(*samples[-1].encoded_size)
                                     if samples[-1].encoded_size else None),
                    "sparse_pixels": samples[-1].sparse_pixels, "mode": samples[-1].mode,
                    **entry.info})
                total = stages["total"]
                say(f"  {entry.label:<28} {width}x{height} batch {batch}: total p50 "
                    f"{total['p50_ms']:.1f} ms, p95 {total['p95_ms']:.1f} ms")
    surround = None
    if nuscenes is not None:
        from dmd3c_ros.deploy.surround_bench import measure_surround
        say(f"measuring the surround sweep of {nuscenes}: batch vs singles")
        surround = measure_surround(entries, nuscenes, frames=frames, warmup=warmup, say=say)
    for entry in entries:
        entry.pipeline.backend.close()
    first = f"{resolutions[0][0]}x{resolutions[0][1]}"
    base_batch = 1 if 1 in batches else batches[0]
    if base_batch != 1:
        notes.append(f"'backends' holds batch {base_batch} (no batch 1 was measured)")
    return {
        "backends": {r["backend"]: r["stages"] for r in runs
                     if r["resolution"] == first and r["batch"] == base_batch},
        "runs": runs, "skipped": skipped, "notes": notes,
        "order": [e.label for e in entries],
        "interleave": "backends interleaved round-robin in one process, the first one rotated "
                      "every frame",
        "frames": frames, "warmup": warmup, "threads": threads or cpu_cores(),
        "resolutions": [f"{w}x{h}" for w, h in resolutions], "batches": batches,
        "backends_run": {"resolution": first, "batch": base_batch},
        "data": frame.source,
        "frame_size": f"{frame.size[0]}x{frame.size[1]}", "lidar_points": int(len(frame.points)),
        "machine": machine_info(), **({"surround": surround} if surround else {})}


def command_line(args) -> str:
    """The bench command line, rebuilt from the parsed arguments (every effective option)."""
    words = ["dmd3c", "bench"]
    node = args.node or args.soak is not None
    for key, value in vars(args).items():
        if key in ("func", "command") or value is None or value is False or value == []:
            continue
        if key in NODE_OPTIONS and not node or key in SOAK_OPTIONS and args.soak is None:
            continue
        flag = "--" + key.replace("_", "-")
        values = value if isinstance(value, list) else [value]
        for item in values:
            if item is True:
                words.append(flag)
            else:
                words += [flag, "x".join(map(str, item)) if isinstance(item, tuple)
                          else str(item)]
    return " ".join(words)


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def run(args) -> int:
    """``dmd3c bench``: measure, write the JSON and the Markdown (stdout without --markdown)."""
    if args.rate <= 0 or args.seconds <= 0 or (args.soak is not None and args.soak <= 0) \
            or args.soak_interval <= 0:
        raise ValueError("--rate, --seconds, --soak and --soak-interval must be positive")
    frame = choose_frame(args.data, synthetic=args.synthetic, say=_say)
    result = run_bench(frame, backends=args.backend, models=args.model,
                       precisions=args.precision, resolutions=args.resolution,
                       batches=args.batch, frames=args.frames, warmup=args.warmup,
                       threads=args.threads, nuscenes=args.nuscenes, say=_say)
    result["command"] = command_line(args)
    result["date"] = datetime.datetime.now().astimezone().isoformat(timespec="seconds")
    code = 0
    if args.node or args.soak is not None:
        from dmd3c_ros.ros.graph import NodeProcessError
        width, height = (args.resolution or [frame.size])[0]
        log = Path(args.json).with_suffix(".node.log").resolve() if args.json else None
        try:
            from dmd3c_ros.ros.bench import run_node
            result["node"] = run_node(
                frame_at(frame, width, height), backend=args.node_backend,
                model=(args.model or [None])[0] if args.node_backend != "classical" else None,
                rate_hz=args.rate, seconds=args.soak if args.soak is not None else args.seconds,
                domain_id=args.domain_id, ready_timeout_s=args.ready_timeout, log_path=log,
                soak_interval_s=args.soak_interval if args.soak is not None else None, say=_say)
            if "soak" in result["node"]:
                result["soak"] = result["node"].pop("soak")
        except (NodeProcessError, TimeoutError, ImportError) as error:  # ImportError: no rclpy
            _say(f"dmd3c bench: node: error: {error}")
            result["notes"].append(f"node not measured: {error}")
            code = 1
    markdown = format_markdown(result)
    if args.json:
        write_json(args.json, result)
        _say(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(markdown + "\n")
        _say(f"wrote {args.markdown}")
    else:
        print(markdown)
    return code


def add_parser(subparsers) -> None:
    """Register ``dmd3c bench``."""
    p = subparsers.add_parser(
        "bench", help="per-stage latency of every backend (and of the node through ROS)",
        description="Per-stage latency p50/p95 (decode, projection, preprocess, inference, "
                    "postprocess, encode, total) of every available backend and precision on one "
                    "frame, at given resolutions and batch sizes, backends interleaved in one "
                    "run; with --node also through a ROS graph (publisher -> completion node "
                    "process -> subscriber). JSON (--json) and a Markdown table.")
    p.add_argument("--backend", action="append", choices=BACKENDS,
                   help="backend to measure (repeatable; default: classical, onnxruntime and "
                        "tensorrt when a GPU is there; torch only when asked for)")
    p.add_argument("--model", action="append", default=[],
                   help="model spec YAML (repeatable; default: the shipped student and "
                        f"models/{INT8_SPEC} when present); the first one also runs the node")
    p.add_argument("--precision", action="append", choices=PRECISIONS,
                   help="TensorRT precision (repeatable; default all)")
    p.add_argument("--resolution", action="append", type=parse_resolution, metavar="WxH",
                   help="camera image size (repeatable; default: the frame's own)")
    p.add_argument("--batch", action="append", type=int, metavar="N",
                   help="frames per inference call (repeatable; default 1)")
    p.add_argument("--frames", type=int, default=30, help="timed frames per run")
    p.add_argument("--warmup", type=int, default=3, help="untimed frames per run first")
    p.add_argument("--threads", type=int, help="ONNX Runtime intra-op threads (default: all "
                                               "cores)")
    source = p.add_mutually_exclusive_group()
    source.add_argument("--data", type=Path, help="KITTI depth-completion sample folder "
                        f"(default: {DEFAULT_DATA} when present, else a synthetic frame)")
    source.add_argument("--synthetic", action="store_true",
                        help="benchmark a synthetic KITTI-like frame made here")
    p.add_argument("--nuscenes", type=Path, metavar="DIR",
                   help="also measure a real surround sweep (nuScenes sample folder: "
                        "calibration.json, CAM_*.jpg, LIDAR_TOP.pcd.bin) as one batch against "
                        "its views one at a time")
    p.add_argument("--node", action="store_true",
                   help="also stream the frame through the completion node in its own process")
    p.add_argument("--node-backend", default="onnxruntime", choices=BACKENDS,
                   help="the node's backend (default onnxruntime)")
    p.add_argument("--rate", type=float, default=10.0, help="--node: frames per second")
    p.add_argument("--seconds", type=float, default=10.0, help="--node: how long to stream")
    p.add_argument("--soak", type=float, metavar="SECONDS",
                   help="a long --node run: stream for SECONDS (implies --node) and sample the "
                        "node's memory, CPU time and latency over time (JSON 'soak')")
    p.add_argument("--soak-interval", type=float, default=10.0, metavar="SECONDS",
                   help="--soak: seconds between samples (default 10)")
    p.add_argument("--domain-id", type=int, help="--node: ROS domain (default: a random "
                                                 "private one)")
    p.add_argument("--ready-timeout", type=float, default=90.0,
                   help="--node: seconds to wait for the node's first answer")
    p.add_argument("--json", help="write the figures as JSON to this path")
    p.add_argument("--markdown", help="write the Markdown report here (default: stdout)")
    p.set_defaults(func=run)
