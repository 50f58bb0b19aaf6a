"""``dmd3c engine``: build (or find in the cache) the TensorRT engine of a model spec.

The engine lands in the engine cache (``~/.cache/dmd3c_ros/engines`` unless told otherwise) under
the key of (ONNX sha256, TensorRT version, GPU, precision, input shapes) that the completion node
looks for, so a node started with the same ``model``, ``precision`` and ``engine_cache_dir``
loads it instead of building at start. The build uses and updates TensorRT's timing cache next
to the engines.

INT8 calibrates with TensorRT's entropy calibrator on frames read from a KITTI-format folder or a
rosbag2 folder (:mod:`dmd3c_ros.deploy.calibration`), prepared exactly as the runtime prepares
them. The calibration cache it writes is named by the ONNX sha256, so later int8 builds of the
same model (another batch size, a TensorRT upgrade, the node at start) need no frames. Calibrate
on recordings like the deployment's, never on the data an accuracy figure is measured on.

After a build the engine is checked against ONNX Runtime on the CPU (:func:`depth_parity`):
seeded synthetic frames (with LiDAR, and without where the model supports mono mode) plus up to
two calibration frames, compared as depth in metres.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

import numpy as np

from dmd3c_ros.core.io import write_json

LOG = logging.getLogger(__name__)
ENGINE_PRECISIONS = ("fp32", "fp16", "int8")
PARITY_SEED = 0


def parity_frames(spec, *, count: int = 2, seed: int = PARITY_SEED
                  ) -> list[tuple[np.ndarray, np.ndarray | None]]:
    """Seeded synthetic frames at the network input size for a parity check.

    Each frame is an (h, w, 3) uint8 RGB image of smooth colour blobs with a little noise and an
    (h, w) float32 sparse depth in metres (0 = no value): about 5% of the pixels, like a 64-beam
    LiDAR in a KITTI image, sampled from a smooth depth field within the spec's depth range. When
    the spec supports mono mode one more frame has no LiDAR (sparse None).
    """
    import cv2

    rng = np.random.default_rng(seed)
    h, w = spec.input_size
    low, high = spec.depth_range
    near, far = max(low, 2.0), min(high, 60.0)  # metres: where a LiDAR sees most of a street
    if near >= far:
        near, far = low, high
    frames: list[tuple[np.ndarray, np.ndarray | None]] = []
    for index in range(count + (1 if spec.supports_mono else 0)):
        coarse = rng.uniform(0.0, 255.0, (max(2, h // 32), max(2, w // 32), 3)).astype(np.float32)
        rgb = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_LINEAR)
        rgb = np.clip(rgb + rng.normal(0.0, 8.0, rgb.shape), 0, 255).astype(np.uint8)
        if index >= count:  # the mono frame
            frames.append((rgb, None))
            continue
        field = rng.uniform(near, far, (max(2, h // 64), max(2, w // 64))).astype(np.float32)
        depth = cv2.resize(field, (w, h), interpolation=cv2.INTER_LINEAR)  # metres
        sparse = np.where(rng.random((h, w)) < 0.05, depth, 0.0).astype(np.float32)
        frames.append((rgb, sparse))
    return frames


def depth_parity(backend, reference, frames) -> dict:
    """Compare two backends' depth on ``frames`` [(rgb, sparse or None)], in metres.

    Returns {"frames", "pixels", "max_abs_m", "mean_abs_m", "mean_rel", "max_rel",
    "nan_mismatch_px", "edge_px", "max_abs_edge_m", "max_abs_interior_m"}: absolute differences
    in metres, relative ones as a fraction of the reference depth, over the pixels where both
    give a value; ``nan_mismatch_px`` counts the pixels where exactly one of them gives none.
    The ``edge`` figures split the maximum at depth edges of the reference (:func:`depth_edges`),
    where a reduced precision moves a boundary by a pixel and the difference is the step's size.
    """
    rgbs = [rgb for rgb, _ in frames]
    sparses = [sparse for _, sparse in frames]
    got = backend.infer_batch(rgbs, sparses)
    want = reference.infer_batch(rgbs, sparses)
    absolute, relative, edges, mismatch = [], [], [], 0
    for a, b in zip(got, want):
        finite_a, finite_b = np.isfinite(a.depth), np.isfinite(b.depth)
        mismatch += int(np.count_nonzero(finite_a != finite_b))
        both = finite_a & finite_b
        diff = np.abs(a.depth[both] - b.depth[both]).astype(np.float64)
        absolute.append(diff)
        relative.append(diff / np.maximum(np.abs(b.depth[both]), 1e-6))
        edges.append(depth_edges(b.depth)[both])
    absolute_all = np.concatenate(absolute) if absolute else np.zeros(0)
    relative_all = np.concatenate(relative) if relative else np.zeros(0)
    if absolute_all.size == 0:
        return {"frames": len(frames), "pixels": 0, "max_abs_m": None, "mean_abs_m": None,
                "mean_rel": None, "max_rel": None, "nan_mismatch_px": mismatch, "edge_px": 0,
                "max_abs_edge_m": None, "max_abs_interior_m": None}
    edge_all = np.concatenate(edges)

    def largest(values: np.ndarray) -> float | None:
        return float(values.max()) if values.size else None

    return {"frames": len(frames), "pixels": int(absolute_all.size),
            "max_abs_m": float(absolute_all.max()), "mean_abs_m": float(absolute_all.mean()),
            "mean_rel": float(relative_all.mean()), "max_rel": float(relative_all.max()),
            "nan_mismatch_px": mismatch, "edge_px": int(edge_all.sum()),
            "max_abs_edge_m": largest(absolute_all[edge_all]),
            "max_abs_interior_m": largest(absolute_all[~edge_all])}


def depth_edges(depth: np.ndarray, ratio: float = 1.1) -> np.ndarray:
    """(H, W) bool: pixels whose 3x3 neighbourhood spans more than ``ratio`` in depth (a step),
    or touches a pixel without depth (NaN or <= 0)."""
    import cv2

    valid = np.isfinite(depth) & (depth > 0)
    kernel = np.ones((3, 3), np.uint8)
    high = cv2.dilate(np.where(valid, depth, 0.0).astype(np.float32), kernel)
    low = cv2.erode(np.where(valid, depth, np.inf).astype(np.float32), kernel)
    holes = cv2.dilate((~valid).astype(np.uint8), kernel) > 0
    return holes | (high > ratio * low)


def _check_parity(backend, spec, samples, max_batch: int) -> dict:
    """The engine against ONNX Runtime on the CPU: synthetic frames plus <= 2 calibration ones."""
    from dmd3c_ros.runtime.base import BackendUnavailableError
    from dmd3c_ros.runtime.onnxruntime_backend import OnnxRuntimeBackend

    frames = parity_frames(spec)
    inputs = f"{len(frames)} seeded synthetic frames (seed {PARITY_SEED})"
    if samples:
        chosen = [samples[0]] + ([samples[-1]] if len(samples) > 1 else [])
        frames += [(s.rgb, s.sparse) for s in chosen]
        inputs += f" and {len(chosen)} calibration frames"
    try:
        reference = OnnxRuntimeBackend(spec, providers=["CPUExecutionProvider"],
                                       max_batch=max_batch)
    except BackendUnavailableError as error:
        return {"skipped": str(error)}
    try:
        result = depth_parity(backend, reference, frames)
    finally:
        reference.close()
    return {"reference": "onnxruntime (CPU)", "inputs": inputs, **result}


def build_engine(spec_path, precision: str, *, engine_cache_dir=None, max_batch: int = 1,
                 calibration=None, calibration_frames: int = 32, image_topic: str | None = None,
                 camera_info_topic: str | None = None, points_topic: str | None = None,
                 workspace_mib: int = 2048, rebuild: bool = False, recalibrate: bool = False,
                 parity: bool = True, progress: Callable[[str], None] | None = None) -> dict:
    """Build the TensorRT engine of a model spec, or find it in the engine cache.

    Args:
        spec_path: the model spec YAML.
        precision: "fp32", "fp16" or "int8".
        engine_cache_dir: the engine cache folder; None = the default (the node's default too).
        max_batch: most frames per inference call (1 for the completion node).
        calibration: int8: a KITTI-format folder or rosbag2 folder of frames like the
            deployment's; not needed once the model's calibration cache exists.
        calibration_frames: int8: frames spread evenly over ``calibration``.
        image_topic, camera_info_topic, points_topic: int8 from a bag: its topics.
        workspace_mib: TensorRT builder workspace limit in MiB.
        rebuild: build even when the engine is cached (replacing it).
        recalibrate: int8: delete the calibration cache and calibrate again (implies rebuild).
        parity: compare the engine with ONNX Runtime afterwards (``result["parity"]``).
        progress: called with progress lines (the backend's "building ..." and "built ...");
            None = this module's logger at INFO.

    Returns:
        A JSON-able dict: "model", "name", "onnx", "onnx_sha256", "engine" (path), "key",
        "precision", "tensorrt" (version), "gpu", "source" ("built" or "cache"),
        "build_seconds" (None for a cached engine), "max_batch", "input_size" [h, w],
        "timing_cache", "calibration_cache" (int8, else None), "calibration_source",
        "calibration_frames" (frames calibrated on in this run; 0 when the cache served), and
        "parity" (see :func:`depth_parity`; None without ``parity``).

    Raises:
        ValueError: a bad precision or count; ModelSpecError: a bad spec;
        CalibrationError: int8 without calibration frames or cache, or unreadable frames;
        BackendUnavailableError: no TensorRT, CUDA bindings or GPU; BackendError: the build failed.
    """
    if precision not in ENGINE_PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(ENGINE_PRECISIONS)}, got "
                         f"{precision!r}")
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, got {max_batch}")
    if calibration_frames < 1:
        raise ValueError(f"calibration_frames must be at least 1, got {calibration_frames}")
    from dmd3c_ros.deploy.calibration import (CalibrationError, calibration_feeds,
                                              calibration_samples)
    from dmd3c_ros.runtime.base import BackendUnavailableError
    from dmd3c_ros.runtime.factory import cuda_device_count
    from dmd3c_ros.runtime.spec import load_spec
    from dmd3c_ros.runtime.tensorrt_backend import (TensorRTBackend, calibration_cache_path,
                                                    default_engine_cache_dir,
                                                    entropy_calibrator_class, import_tensorrt)

    say = progress or LOG.info
    spec = load_spec(spec_path)  # verifies the ONNX file's sha256
    cache_dir = (Path(engine_cache_dir).expanduser() if engine_cache_dir
                 else default_engine_cache_dir())
    calib_cache = None
    if precision == "int8":
        calib_cache = calibration_cache_path(cache_dir, spec.sha256, spec.input_size)
        if recalibrate:
            rebuild = True  # a cached engine holds the old scales
            if not calibration:
                raise CalibrationError("--recalibrate needs the frames: pass --calibration DIR")
        if not calibration and not calib_cache.is_file():
            raise CalibrationError(
                f"int8 needs calibration frames: pass --calibration DIR, a KITTI-format folder "
                f"or a rosbag2 folder (with --image-topic and --points-topic) of a few dozen "
                f"frames like your deployment's, never the data you measure accuracy on (no "
                f"calibration cache {calib_cache} exists for this model yet)")
    if precision != "int8" and calibration:
        say(f"--calibration applies to int8 only: {calibration} is not read for {precision}")
    # Before reading any frame: fail fast where TensorRT cannot run.
    import_tensorrt()
    if cuda_device_count() == 0:
        raise BackendUnavailableError("backend 'tensorrt' needs a CUDA GPU; found 0 device(s) "
                                      "(build the engine on the machine that will run it)")
    samples, calibrator = [], None
    if precision == "int8":
        if recalibrate and calib_cache.is_file():
            say(f"recalibrating: removing the calibration cache {calib_cache}")
            calib_cache.unlink()
        if calib_cache.is_file():
            if calibration:
                say(f"using the calibration cache {calib_cache}; the frames in {calibration} "
                    "are not read (--recalibrate to calibrate on them)")
        else:
            samples = calibration_samples(calibration, count=calibration_frames,
                                          image_topic=image_topic,
                                          camera_info_topic=camera_info_topic,
                                          points_topic=points_topic)
            say(f"calibrating int8 on {len(samples)} frames from {calibration}")
            calibrator = entropy_calibrator_class()(calibration_feeds(spec, samples, batch=1),
                                                    calib_cache)
    backend = TensorRTBackend(spec, precision=precision, engine_cache_dir=cache_dir,
                              max_batch=max_batch, calibrator=calibrator,
                              workspace_mib=workspace_mib, rebuild=rebuild, progress=say)
    try:
        calibrated = len(samples) if calibrator is not None and calibrator.batches else 0
        result = {
            "model": str(spec.path), "name": spec.name, "onnx": str(spec.onnx),
            "onnx_sha256": spec.sha256, "engine": str(backend.engine_path), "key": backend.key,
            "precision": precision, "tensorrt": backend.tensorrt_version, "gpu": backend.gpu,
            "source": backend.engine_source,
            "build_seconds": (round(backend.build_seconds, 2)
                              if backend.build_seconds is not None else None),
            "max_batch": int(backend.max_batch), "input_size": [int(v) for v in spec.input_size],
            "timing_cache": str(backend.timing_cache_path) if backend.timing_cache_path else None,
            "calibration_cache": str(calib_cache) if calib_cache else None,
            "calibration_source": str(calibration) if calibrated else None,
            "calibration_frames": calibrated if precision == "int8" else None,
            "parity": None,
        }
        if parity:
            say("checking the engine against ONNX Runtime (CPU)")
            result["parity"] = _check_parity(backend, spec, samples, max_batch)
    finally:
        backend.close()
    return result


def format_result(result: dict) -> str:
    """The human summary of :func:`build_engine`'s result (a few lines)."""
    how = (f"built in {result['build_seconds']:.1f} s" if result["source"] == "built"
           else "found in the cache")
    lines = [f"{result['precision']} engine for '{result['name']}' {how}: {result['engine']}",
             f"  TensorRT {result['tensorrt']}, {result['gpu']}, max batch {result['max_batch']}"]
    if result["calibration_cache"]:
        source = (f"{result['calibration_frames']} frames from {result['calibration_source']}"
                  if result["calibration_frames"] else "the cache")
        lines.append(f"  int8 calibrated on {source}; calibration cache "
                     f"{result['calibration_cache']}")
    parity = result.get("parity")
    if parity and "skipped" in parity:
        lines.append(f"  parity check skipped: {parity['skipped']}")
    elif parity and parity.get("pixels"):
        lines.append(f"  vs ONNX Runtime on {parity['inputs']}: depth max |diff| "
                     f"{parity['max_abs_m']:.4f} m, mean |diff| {parity['mean_abs_m']:.4f} m, "
                     f"mean relative error {parity['mean_rel']:.2e}")
        if parity.get("max_abs_edge_m") is not None:
            lines.append(f"    max |diff| at depth edges {parity['max_abs_edge_m']:.4f} m "
                         f"({parity['edge_px']} px), elsewhere "
                         f"{(parity['max_abs_interior_m'] or 0.0):.4f} m")
    return "\n".join(lines)


def add_parser(subparsers) -> None:
    """Register ``dmd3c engine`` on the ``dmd3c`` command's subparsers."""
    p = subparsers.add_parser(
        "engine", help="build the TensorRT engine of a model (fp32, fp16 or int8)",
        description="Build the TensorRT engine of a model spec on this GPU, or find it in the "
                    "engine cache, where the node looks for it (same model, precision and "
                    "engine cache folder). A build takes minutes; TensorRT's timing cache next "
                    "to the engines speeds up later ones. int8 calibrates on frames like your "
                    "deployment's (--calibration) once per model and keeps a calibration "
                    "cache. The engine is then compared with ONNX Runtime.")
    p.add_argument("model", help="model spec YAML, e.g. models/student.yaml")
    p.add_argument("--precision", default="fp16", choices=ENGINE_PRECISIONS,
                   help="engine precision (default fp16)")
    p.add_argument("--engine-cache-dir", help="engine cache folder, as the node's "
                   "engine_cache_dir (default ~/.cache/dmd3c_ros/engines)")
    p.add_argument("--max-batch", type=int, default=1,
                   help="most frames per inference call (default 1, the completion node's)")
    p.add_argument("--calibration", metavar="DIR",
                   help="int8: a KITTI-format folder or rosbag2 folder of frames like your "
                        "deployment's (not the evaluation data); needed until the model's "
                        "calibration cache exists")
    p.add_argument("--calibration-frames", type=int, default=32, metavar="N",
                   help="int8: frames spread evenly over --calibration (default 32)")
    p.add_argument("--image-topic", help="int8 from a bag: the sensor_msgs/Image topic")
    p.add_argument("--camera-info-topic", help="int8 from a bag: its CameraInfo topic")
    p.add_argument("--points-topic", help="int8 from a bag: the PointCloud2 topic of the LiDAR")
    p.add_argument("--workspace-mib", type=int, default=2048,
                   help="TensorRT builder workspace limit in MiB (default 2048)")
    p.add_argument("--rebuild", action="store_true",
                   help="build even when the engine is cached (replacing it)")
    p.add_argument("--recalibrate", action="store_true",
                   help="int8: calibrate again on --calibration (replacing the cache)")
    p.add_argument("--no-parity", action="store_true",
                   help="skip the comparison with ONNX Runtime")
    p.add_argument("--json", metavar="PATH", help="write the result as JSON to this path")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """``dmd3c engine``: build, print the summary, write ``--json``."""
    def progress(line: str) -> None:
        print(f"  {line}", file=sys.stderr, flush=True)

    result = build_engine(args.model, args.precision, engine_cache_dir=args.engine_cache_dir,
                          max_batch=args.max_batch, calibration=args.calibration,
                          calibration_frames=args.calibration_frames,
                          image_topic=args.image_topic, camera_info_topic=args.camera_info_topic,
                          points_topic=args.points_topic, workspace_mib=args.workspace_mib,
                          rebuild=args.rebuild, recalibrate=args.recalibrate,
                          parity=not args.no_parity, progress=progress)
    print(format_result(result))
    if args.json:
        print(f"wrote {write_json(args.json, result)}")
    return 0


__all__ = ["ENGINE_PRECISIONS", "add_parser", "build_engine", "depth_edges", "depth_parity",
           "format_result", "parity_frames", "run"]
