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
this module needs no rclpy.
"""
from __future__ import annotations

import argparse
import datetime
import importlib
import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import cv2
import numpy as np

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.config import BACKENDS, PRECISIONS
from dmd3c_ros.core.io import write_json
from dmd3c_ros.core.machine import cpu_model
from dmd3c_ros.core.kitti_sample import load_kitti_frame
from dmd3c_ros.paths import default_model_spec, kitti_sample_dir
from dmd3c_ros.runtime import factory
from dmd3c_ros.runtime.base import BackendError
from dmd3c_ros.runtime.onnxruntime_backend import cpu_cores
from dmd3c_ros.runtime.pipeline import CompletionPipeline, View
from dmd3c_ros.runtime.spec import ModelSpecError, load_spec

if TYPE_CHECKING:  # the ROS side (rclpy) is imported only when messages or a node are measured
    from dmd3c_ros.ros.bench import Messages

DEFAULT_DATA = kitti_sample_dir()
INT8_SPEC = "student_int8.yaml"  # an INT8-quantised student next to the shipped one, if any
STAGES = ("decode", "projection", "preprocess", "inference", "postprocess", "encode", "total")
NODE_OPTIONS = ("node_backend", "rate", "seconds", "domain_id", "ready_timeout")
SOAK_OPTIONS = ("soak_interval",)
TENSORRT_SKIPPED = "not measured: no GPU (TensorRT, CUDA bindings or a CUDA device missing)"
NO_MESSAGES = "decode and encode not measured: the ROS 2 message libraries are missing ({error})"
# ------------------------------------------------------------------------------------- frame

@dataclass(frozen=True)
class BenchFrame:
    """One camera frame and LiDAR sweep (the fields of ``ros.feeder.KittiFrame``).

    rgb: (H, W, 3) uint8; points: (N, 4) float32 x, y, z metres (LiDAR frame), intensity;
    camera: the rectified camera of ``rgb``; lidar_to_camera: (4, 4) float64; source: where
    it came from (a folder or "synthetic").
    """

    rgb: np.ndarray
    points: np.ndarray
    camera: PinholeCamera
    lidar_to_camera: np.ndarray
    name: str
    source: str

    @property
    def size(self) -> tuple[int, int]:
        return self.camera.size


def load_frame(folder) -> BenchFrame:
    """Camera 2 of a KITTI depth-completion sample folder (no ROS package needed)."""
    frame = load_kitti_frame(folder)
    return BenchFrame(frame.rgb, frame.points, frame.camera, frame.lidar_to_camera, frame.name,
                      str(folder))


def choose_frame(data=None, *, synthetic: bool = False,
                 say: Callable[[str], None] | None = None) -> BenchFrame:
    """The frame to measure: the synthetic one when asked for, else the KITTI sample folder
    ``data`` (default :data:`DEFAULT_DATA`), falling back to the synthetic frame (and saying so)
    when no folder is given and the default sample is absent."""
    if not synthetic and data is None and not (DEFAULT_DATA / "velodyne.bin").is_file():
        if say is not None:
            say(f"{DEFAULT_DATA} not found: benchmarking a synthetic KITTI-like frame")
        synthetic = True
    if synthetic:
        return synthetic_frame()
    return load_frame(data if data is not None else DEFAULT_DATA)


def synthetic_frame(width: int = 1242, height: int = 375, seed: int = 0) -> BenchFrame:
    """A KITTI-like frame made here: a 64-beam 360 degree sweep (about 130k points) of a flat
    road with a wall 40 m away, a KITTI camera 2 (scaled to width x height) and a textured image.
    """
    rng = np.random.default_rng(seed)
    # KITTI camera 2 at 1242x375 (P_rect_02 rounded), then scaled to the size asked for.
    camera = PinholeCamera.from_intrinsics(721.5, 721.5, 609.6, 172.9, 1242, 375)
    if (width, height) != camera.size:
        camera = camera.resized(width, height)
    elevation = np.deg2rad(np.linspace(-24.8, 2.0, 64))[:, None]
    azimuth = np.linspace(-np.pi, np.pi, 2048, endpoint=False)[None, :]
    lidar_height = 1.73  # metres above the road, as KITTI's Velodyne
    with np.errstate(divide="ignore"):
        ground = np.where(elevation < 0, lidar_height / np.tan(-elevation), np.inf)
    distance = np.minimum(ground, 40.0) * np.ones_like(azimuth)  # horizontal range, metres
    distance *= 1.0 + 0.002 * rng.standard_normal(distance.shape)
    points = np.stack([distance * np.cos(azimuth), distance * np.sin(azimuth),
                       np.maximum(distance * np.tan(elevation), -lidar_height),
                       rng.random(distance.shape)], axis=-1).reshape(-1, 4).astype(np.float32)
    # LiDAR (x forward, y left, z up) -> camera optical frame (x right, y down, z forward).
    lidar_to_camera = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08],
                                [1.0, 0.0, 0.0, -0.27], [0.0, 0.0, 0.0, 1.0]])
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.clip(rows * np.array([0.6, 0.7, 0.8], np.float32)
                  + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
    return BenchFrame(rgb, points, camera, lidar_to_camera, "synthetic", "synthetic")


def frame_at(frame: BenchFrame, width: int, height: int) -> BenchFrame:
    """The frame with its image resized to width x height (cv2; the camera scaled to match with
    PinholeCamera.resized); the LiDAR points stay the same."""
    if (width, height) == frame.size:
        return frame
    shrink = width * height < frame.size[0] * frame.size[1]
    rgb = cv2.resize(frame.rgb, (width, height),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return BenchFrame(rgb, frame.points, frame.camera.resized(width, height),
                      frame.lidar_to_camera, frame.name, frame.source)


def parse_resolution(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H) in pixels."""
    try:
        width, height = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must be WxH, e.g. 1242x375, got {text!r}")
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return width, height


# ---------------------------------------------------------------------------------- messages

def message_stages():
    """(Messages, None), or (None, why) when rclpy or the message packages are missing.

    ``Messages`` (dmd3c_ros.ros.bench) serialises a frame's messages and times the node's
    decode and encode steps."""
    try:
        from dmd3c_ros.ros.bench import Messages
        return Messages(), None
    except ImportError as error:
        return None, NO_MESSAGES.format(error=error)


# ---------------------------------------------------------------------------------- backends

@dataclass
class Entry:
    """One measured backend: its label, what it is, and the pipeline that runs it."""

    label: str
    backend: str
    precision: str
    model: str | None
    pipeline: CompletionPipeline
    info: dict = field(default_factory=dict)


def model_specs(models) -> list[tuple[str | None, str]]:
    """(spec path or None for the shipped one, label suffix) per network model: the shipped
    student ('' suffix) and, when present, its INT8 sibling; or each --model given."""
    shipped = default_model_spec()
    if models:
        paths = [Path(m) for m in models]
    else:
        paths = [p for p in (shipped, shipped and shipped.parent / INT8_SPEC) if p]
        paths = [p for p in paths if p == shipped or p.is_file()]
    planned, seen = [], set()
    for path in paths:
        key = path.resolve()
        if key in seen:
            continue
        seen.add(key)
        if shipped is not None and key == shipped.resolve():
            planned.append((str(path), ""))
            continue
        try:
            name = load_spec(path, verify=False).name
        except (ModelSpecError, OSError, ValueError):
            name = path.stem
        planned.append((str(path), name))
    return planned


def plan_backends(backends) -> list[str]:
    """The backend kinds to measure: those asked for, or classical, onnxruntime and tensorrt."""
    kinds = [factory.resolve_backend_name(b) for b in backends] if backends else \
        ["classical", "onnxruntime", "tensorrt"]
    return list(dict.fromkeys(kinds))


def create_entries(backends, models, precisions, *, threads: int | None = None,
                   say: Callable[[str], None] = print) -> tuple[list[Entry], dict[str, str]]:
    """Create every backend to measure; returns (entries, {label: why it was skipped})."""
    entries, skipped = [], {}
    specs = model_specs(models)
    for kind in plan_backends(backends):
        if kind == "tensorrt" and not factory.tensorrt_available():
            skipped["tensorrt"] = TENSORRT_SKIPPED
            continue
        if kind == "classical":
            variants = [("classical", "fp32", None, {})]
        else:
            if not specs:
                skipped[kind] = "not measured: no model spec (no shipped student; --model YAML)"
                continue
            precisions_here = list(precisions or PRECISIONS) if kind == "tensorrt" else ["fp32"]
            options = {"intra_op_threads": threads} if kind == "onnxruntime" else {}
            variants = []
            for path, suffix in specs:
                for precision in precisions_here:
                    label = kind if kind != "tensorrt" else f"tensorrt-{precision}"
                    variants.append((label + (f":{suffix}" if suffix else ""), precision, path,
                                     options))
        for label, precision, path, options in variants:
            base, n = label, 2
            while label in skipped or any(e.label == label for e in entries):
                label, n = f"{base}#{n}", n + 1
            try:
                backend = factory.create_backend(kind, path, precision=precision, **options)
            except (BackendError, ModelSpecError, ValueError, OSError, ImportError) as error:
                skipped[label] = f"not measured: {error}"
                say(f"  {label}: skipped ({error})")
                continue
            info = {"providers": getattr(backend, "providers", None),
                    "threads": getattr(backend, "intra_op_threads", None),
                    "model_name": getattr(getattr(backend, "spec", None), "name", None)}
            entries.append(Entry(label, kind, precision, path, CompletionPipeline(backend),
                                 {k: v for k, v in info.items() if v is not None}))
    return entries, skipped


# ------------------------------------------------------------------------------- measurement

@dataclass
class Sample:
    """The stage milliseconds of one frame (or batch) and what it looked like."""

    stages: dict[str, float]
    decoded_size: tuple[int, int]
    encoded_size: tuple[int, int] | None
    sparse_pixels: int
    mode: str


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0  # s to ms


def _inputs(frame: BenchFrame, messages: Messages | None, blobs, stages: dict) -> tuple:
    """(rgb, camera, points): decoded from the blobs (timed as 'decode') or the frame's own."""
    if messages is None:
        return frame.rgb, frame.camera, frame.points, None
    start = time.perf_counter()
    decoded = messages.decode(blobs)
    stages["decode"] = stages.get("decode", 0.0) + _ms(start)
    return decoded


def measure_frame(entry: Entry, frame: BenchFrame, messages: Messages | None, blobs) -> Sample:
    """One frame through decode, CompletionPipeline.run and encode."""
    stages: dict[str, float] = {}
    rgb, camera, points, header = _inputs(frame, messages, blobs, stages)
    result = entry.pipeline.run(rgb, camera, points, frame.lidar_to_camera)
    stages.update(result.timings_ms)
    encoded = None
    if messages is not None:
        start = time.perf_counter()
        encoded = messages.encode(result.depth, result.uncertainty, camera, header)
        stages["encode"] = _ms(start)
    stages["total"] = sum(stages.values())
    return Sample(stages, camera.size, encoded, result.sparse_pixels, result.mode)


def measure_batch(entry: Entry, frame: BenchFrame, messages: Messages | None, blobs,
                  batch: int) -> Sample:
    """``batch`` copies of the frame: decode each, one CompletionPipeline.run_batch (projection
    each, one batched inference), encode each."""
    stages: dict[str, float] = {}
    decoded = [_inputs(frame, messages, blobs, stages) for _ in range(batch)]
    views = [View(rgb, camera, points, frame.lidar_to_camera)
             for rgb, camera, points, _ in decoded]
    outcome = entry.pipeline.run_batch(views)
    stages.update(outcome.timings_ms)
    results = outcome.results
    encoded = None
    if messages is not None:
        start = time.perf_counter()
        for (_, camera, _, header), result in zip(decoded, results):
            encoded = messages.encode(result.depth, result.uncertainty, camera, header)
        stages["encode"] = _ms(start)
    stages["total"] = sum(stages.values())
    stages["per_frame_ms"] = stages["total"] / batch
    return Sample(stages, decoded[0][1].size, encoded, results[0].sparse_pixels, results[0].mode)


def percentiles(samples: list[Sample]) -> dict[str, dict[str, float]]:
    """STAGE -> {"p50_ms", "p95_ms"} over the samples, stages in pipeline order."""
    names = [s for s in STAGES + ("per_frame_ms",) if s in samples[0].stages]
    out = {}
    for name in names:
        values = np.array([s.stages[name] for s in samples], dtype=np.float64)
        p50, p95 = np.percentile(values, [50, 95])
        out[name] = {"p50_ms": float(p50), "p95_ms": float(p95)}
    return out


def measure(entries: list[Entry], frame: BenchFrame, messages: Messages | None, *, batch: int,
            frames: int, warmup: int, say: Callable[[str], None] | None = None,
            progress_every_s: float = 10.0) -> dict[str, list[Sample]]:
    """Every entry at one resolution and batch, interleaved: frame i runs the entries in order,
    starting at entry i mod len(entries). Returns {label: timed samples}; ``say`` gets a
    progress line about every ``progress_every_s`` seconds."""
    blobs = messages.serialize_inputs(frame) if messages is not None else None
    timed: dict[str, list[Sample]] = {e.label: [] for e in entries}
    next_progress = time.monotonic() + progress_every_s
    for index in range(warmup + frames):
        if say is not None and time.monotonic() >= next_progress:
            next_progress = time.monotonic() + progress_every_s
            say(f"  frame {index}/{warmup + frames} (warm-up {warmup})")
        shift = index % len(entries)
        for entry in entries[shift:] + entries[:shift]:
            sample = (measure_frame(entry, frame, messages, blobs) if batch == 1
                      else measure_batch(entry, frame, messages, blobs, batch))
            if index >= warmup:
                timed[entry.label].append(sample)
    return timed


# ------------------------------------------------------------------------------------ node

# ---------------------------------------------------------------------------------- reports

def _version(module: str) -> str | None:
    try:
        return str(importlib.import_module(module).__version__)
    except Exception:  # not installed, or broken
        return None


def machine_info() -> dict:
    """CPU, cores, load and library versions of this machine."""
    info = {"cpu": cpu_model(), "cores": os.cpu_count(), "cores_usable": cpu_cores(),
            "platform": platform.platform(), "python": platform.python_version(),
            "numpy": np.__version__, "opencv": cv2.__version__,
            "onnxruntime": _version("onnxruntime")}
    if "torch" in sys.modules:
        info["torch"] = _version("torch")
    if factory.tensorrt_installed():
        info["tensorrt"] = _version("tensorrt")
    try:
        info["load_average"] = [round(v, 2) for v in os.getloadavg()]
    except OSError:
        pass
    return info


def _cell(stage: dict | None) -> str:
    if stage is None:
        return "-"
    return " / ".join(f"{v:.2f}" if v < 10 else f"{v:.1f}"
                      for v in (stage["p50_ms"], stage["p95_ms"]))


def format_markdown(result: dict) -> str:
    """The report: a header, one table per resolution x batch, the node table, skips, notes."""
    m = result["machine"]
    lines = ["# dmd3c bench", "",
             f"- Machine: {m['cpu']}, {m['cores_usable']} of {m['cores']} cores usable, "
             f"{m['platform']}, Python {m['python']}, numpy {m['numpy']}, "
             f"onnxruntime {m['onnxruntime']}, OpenCV {m['opencv']}"
             + (f", load average {m['load_average']}" if "load_average" in m else ""),
             f"- Command: `{result['command']}`",
             f"- Date: {result['date']}",
             f"- Frame: {result['data']} ({result['lidar_points']} LiDAR points); "
             f"{result['frames']} timed frames after {result['warmup']} warm-up per backend; "
             f"{result['interleave']}; ONNX Runtime {result['threads']} intra-op threads", ""]
    configs = list(dict.fromkeys((r["resolution"], r["batch"]) for r in result["runs"]))
    for resolution, batch in configs:
        runs = [r for r in result["runs"] if (r["resolution"], r["batch"]) == (resolution, batch)]
        stages = [s for s in STAGES + ("per_frame_ms",) if any(s in r["stages"] for r in runs)]
        unit = ("per frame" if batch == 1
                else f"per batch of {batch} (per frame = total / {batch})")
        header = " | ".join(s.replace("per_frame_ms", "per frame") for s in stages)
        lines += [f"## {resolution}, batch {batch}", "",
                  f"Milliseconds p50 / p95, {unit}.", "",
                  f"| backend | {header} |",
                  "|---|" + "---:|" * len(stages)]
        for run in runs:
            lines.append(f"| {run['backend']} | "
                         + " | ".join(_cell(run["stages"].get(s)) for s in stages) + " |")
        lines.append("")
    if "surround" in result:
        from dmd3c_ros.deploy.surround_bench import format_surround
        lines += format_surround(result["surround"], _cell)
    node = result.get("node")
    if node is not None:
        lines += ["## Node (publisher -> completion node process -> subscriber)", "",
                  "| backend | resolution | rate Hz | frames sent | answered | dropped | "
                  "in-node p50 / p95 ms | publish -> depth received p50 / p95 ms |",
                  "|---|---|---:|---:|---:|---:|---:|---:|",
                  f"| {node['backend']} | {node['resolution']} | {node['rate_hz']:g} | "
                  f"{node['frames_sent']} | {node['frames_answered']} | {node['dropped']} | "
                  f"{_pair(node['p50_ms'], node['p95_ms'])} | "
                  f"{_pair(node['subscriber_p50_ms'], node['subscriber_p95_ms'])} |", "",
                  f"In-node: image received -> depth published, from the node's /diagnostics "
                  f"(dropped inside the node: {node['node_dropped_frames']}).", ""]
        stages = node.get("node_stages_p50_ms") or {}
        if stages:
            lines += ["Inside the node, p50 ms per stage: " + ", ".join(
                f"{name} {value:.1f}" for name, value in stages.items()) + ".", ""]
    if "soak" in result:
        lines += format_soak(result["soak"])
    if result["skipped"]:
        lines += ["Skipped:", ""] + [f"- {label}: {why}" for label, why in
                                     result["skipped"].items()] + [""]
    if result["notes"]:
        lines += ["Notes:", ""] + [f"- {note}" for note in result["notes"]] + [""]
    return "\n".join(lines)


def _pair(p50, p95) -> str:
    if p50 is None or p95 is None:
        return "-"
    return _cell({"p50_ms": p50, "p95_ms": p95})


def _number(value, digits: int = 1, unit: str = "") -> str:
    return "-" if value is None else f"{value:.{digits}f}{unit}"


def format_soak(soak: dict) -> list[str]:
    """The soak section: a table of the samples, then the summary lines."""
    lines = [f"## Soak ({soak['seconds']:g} s at {soak['rate_hz']:g} Hz, a sample every "
             f"{soak['interval_s']:g} s)", "",
             "| t s | RSS MiB | CPU s | CPU % of a core | in-node p50 / p95 ms | "
             "publish -> depth p50 / p95 ms | sent | answered | dropped | load (1 min) |",
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for s in soak["samples"]:
        lines.append(f"| {s['t_s']:.1f} | {_number(s['rss_mib'])} | {_number(s['cpu_s'])} | "
                     f"{_number(s['cpu_pct'], 0)} | {_pair(s['node_p50_ms'], s['node_p95_ms'])} "
                     f"| {_pair(s['sub_p50_ms'], s['sub_p95_ms'])} | {s['sent']} | "
                     f"{s['answered']} | {s.get('dropped', '-')} | "
                     f"{_number(s.get('load_1m'), 2)} |")
    drift = soak["p95_drift"]
    lines += ["",
              f"- Memory: {soak['memory']}." if soak["rss_first_mib"] is None else
              f"- Node RSS: {_number(soak['rss_first_mib'])} MiB at "
              f"{soak['rss_first_t_s']:.0f} s -> {_number(soak['rss_last_mib'])} MiB at the end: "
              f"growth {_number(soak['rss_growth_mib'], 1, ' MiB')} "
              f"(slope after the warm-up {_number(soak['rss_slope_mib_per_min'], 2)} MiB/min; "
              f"max {_number(soak['rss_max_mib'])} MiB); baseline: {soak['rss_baseline']}.",
              f"- Publish -> depth p95: {_number(soak['p95_first_minute_ms'], 1, ' ms')} "
              f"({soak['p95_first_frames']} frames) at the start, "
              f"{_number(soak['p95_last_minute_ms'], 1, ' ms')} ({soak['p95_last_frames']} "
              f"frames) at the end: drift {_number(None if drift is None else 100 * drift, 1)}%"
              f" ({soak['p95_windows']}).",
              f"- Frames: {soak['sent']} sent, {soak['answered']} answered, {soak['dropped']} "
              "dropped.",
              f"- In-node figures cover the node's last {soak['node_window_frames']} frames "
              f"(about {soak['node_window_s']:g} s at {soak['rate_hz']:g} Hz).", ""]
    return lines


# ------------------------------------------------------------------------------------- run

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
