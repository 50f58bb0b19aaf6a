"""``dmd3c bench``'s measurement: the backends to measure (``Entry``), and every frame (or batch)
through the node's message steps and ``CompletionPipeline``, stage by stage, backends
interleaved (the module docstring of ``deploy.bench``)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from dmd3c_ros.core.config import PRECISIONS
from dmd3c_ros.evaluation.runs import unique_name
from dmd3c_ros.paths import default_model_spec
from dmd3c_ros.runtime import factory
from dmd3c_ros.runtime.base import BackendError
from dmd3c_ros.runtime.pipeline import CompletionPipeline, View
from dmd3c_ros.runtime.spec import ModelSpecError, load_spec

from .bench_frames import BenchFrame

if TYPE_CHECKING:  # the ROS side (rclpy) is imported only when messages or a node are measured
    from dmd3c_ros.ros.bench import Messages

INT8_SPEC = "student_int8.yaml"  # an INT8-quantised student next to the shipped one, if any
STAGES = ("decode", "projection", "preprocess", "inference", "postprocess", "encode", "total")
TENSORRT_SKIPPED = "not measured: no GPU (TensorRT, CUDA bindings or a CUDA device missing)"
NO_MESSAGES = "decode and encode not measured: the ROS 2 message libraries are missing ({error})"


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
            label = unique_name(label, set(skipped) | {e.label for e in entries})
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
