"""Offline evaluation: read a rosbag2 bag or a KITTI-format folder directly, complete every frame
with one or more backends / models and score them (the library side of ``dmd3c eval``).

Deterministic: frames are read in stamp (bag) or file-name (KITTI) order, LiDAR splits are seeded
per frame with ``(seed, frame index)``, and nothing depends on wall-clock time except the
latencies.

Inputs and ground truth:

- bag: the sweep on ``points_topic`` is projected into each image by ``CompletionPipeline`` (as the
  node does) with ``lidar_to_camera`` or the bag's ``/tf_static``; ground truth is the depth image
  on ``gt_topics`` (32FC1 metres or 16UC1 millimetres) or a LiDAR split of the sweep.
- KITTI, the one-folder-per-frame sample layout (``<dir>/<frame>/image_02.png``) or the official
  depth-completion layout (``<dir>/<split>/<drive>/proj_depth`` or the split folder itself): the
  input is the official sparse PNG (velodyne_raw), handed to the backend as a sparse map, exactly
  as ``dmd3c complete --sparse`` does, and the ground truth is the groundtruth PNG; or, with a LiDAR
  split, the raw sweep (velodyne .bin) split into input points and held-out ground truth.

Models compared (``plan_models``): with no ``--model`` every backend runs its default model; with
as many models as backends they pair in order; one backend with several models runs each model;
several backends with one model each use that model (classical ignores it). NAME is the backend
(``auto`` resolved), or ``backend:model-stem`` when a model is given.

Output predictions follow the node: depths outside [min_depth, max_depth] become "no value".

Options that change what is measured, both recorded in the summary's "run" and the report:
``mono`` gives the networks no LiDAR at all (an all-zero sparse input: mono mode; an error for a
backend that needs LiDAR, such as classical), the ground truth is unchanged; ``gt_max_depth``
scores only the ground-truth pixels at most that many metres away (frames left without any are
skipped as having no ground truth).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.runtime.base import MonoNotSupportedError
from dmd3c_ros.runtime.factory import create_backend
from dmd3c_ros.runtime.pipeline import CompletionPipeline

from .lidar_split import split_points
from .records import (FrameRecord, clean, distance_errors, format_table, frame_metrics,
                      summarize)

GT_MODES = ("topic", "kitti", "lidar-split")


@dataclass
class VisualFrame:
    """One sampled frame for the report (stand-in when ``report.Visual`` is not installed).

    rgb (H, W, 3) uint8; sparse the LiDAR input (H, W) float32 metres, 0 = none; gt (H, W) float32
    metres, 0 = none; predictions NAME -> (H, W) float32 metres, NaN = none.
    """

    name: str
    rgb: np.ndarray
    sparse: np.ndarray
    gt: np.ndarray
    predictions: dict


def _visual_class():
    try:
        from .report import Visual
        return Visual
    except ImportError:
        return VisualFrame


# ------------------------------------------------------------------------------ models

def plan_models(backends, models) -> list[tuple[str, str | None]]:
    """(backend, model or None) pairs to compare; the rule is in the module docstring."""
    backends = list(backends or []) or ["auto"]
    models = [str(m) for m in (models or [])]
    if not models:
        pairs = [(b, None) for b in backends]
    elif len(models) == len(backends):
        pairs = list(zip(backends, models))
    elif len(backends) == 1:
        pairs = [(backends[0], m) for m in models]
    elif len(models) == 1:
        pairs = [(b, models[0]) for b in backends]
    else:
        raise ValueError(f"{len(backends)} --backend and {len(models)} --model: give one backend "
                         "per model, one backend for all models, or one model for all backends")
    return [(b, None if b == "classical" else m) for b, m in pairs]


@dataclass
class ModelRun:
    """One compared backend / model: its NAME and the pipeline that runs it."""

    name: str
    backend: str
    model: str | None
    pipeline: CompletionPipeline


def create_runs(backends, models, *, min_depth: float = 0.1, max_depth: float = 100.0,
                precision: str = "fp32", engine_cache_dir=None) -> list[ModelRun]:
    """Create every backend of ``plan_models(backends, models)`` with a unique NAME."""
    runs: list[ModelRun] = []
    for backend_name, model in plan_models(backends, models):
        backend = create_backend(backend_name, model, precision=precision,
                                 engine_cache_dir=engine_cache_dir)
        name = backend.name if model is None else f"{backend.name}:{Path(model).stem}"
        taken = {r.name for r in runs}
        base, n = name, 2
        while name in taken:
            name, n = f"{base}#{n}", n + 1
        runs.append(ModelRun(name, backend.name, model,
                             CompletionPipeline(backend, min_depth=min_depth,
                                                max_depth=max_depth)))
    return runs


def complete_one(pipeline: CompletionPipeline, rgb, camera, *, points=None, lidar_to_camera=None,
                 sparse=None) -> tuple[np.ndarray, float, str]:
    """(depth (H, W) float32 metres NaN = none, milliseconds, mode) of one frame.

    With ``points`` the pipeline projects the sweep (the node's path); with a ``sparse`` map the
    backend gets the map as is (``dmd3c complete --sparse``'s path) and the pipeline's depth-range
    filter is applied to its output.
    """
    start = time.perf_counter()
    if sparse is None:
        result = pipeline.run(rgb, camera, points, lidar_to_camera)
        depth, mode = result.depth, result.mode
    else:
        mono = not np.any(sparse > 0)
        depth = pipeline.backend.infer(rgb, None if mono else sparse).depth
        out_of_range = ~((depth >= pipeline.min_depth) & (depth <= pipeline.max_depth))  # NaN too
        depth = np.where(out_of_range, np.float32(np.nan), depth).astype(np.float32)
        mode = "mono" if mono else "completion"
    return depth, (time.perf_counter() - start) * 1000.0, mode  # s to ms


# ------------------------------------------------------------------------------ sources

def detect_kind(source) -> str:
    """'bag' when ``source`` holds a rosbag2 ``metadata.yaml``, else 'kitti'."""
    return "bag" if (Path(source) / "metadata.yaml").is_file() else "kitti"


def open_bag(bag, *, image_topics, camera_info_topics=None, points_topic=None, gt_topics=None,
             slop: float = 0.05, lidar_to_camera=None) -> list[tuple[str, object]]:
    """(camera name = image topic, RosbagFrames) per image topic."""
    from dmd3c_ros.training.data import RosbagFrames, RosbagTopics
    image_topics = list(image_topics or [])
    if not image_topics:
        raise ValueError("--bag needs --image-topic (and --points-topic for the LiDAR)")
    infos = list(camera_info_topics or []) or [None] * len(image_topics)
    gts = list(gt_topics or []) or [None] * len(image_topics)
    for label, values in (("--camera-info-topic", infos), ("--gt-topic", gts)):
        if len(values) != len(image_topics):
            raise ValueError(f"{len(values)} {label} for {len(image_topics)} --image-topic: give "
                             "one per image topic")
    cameras = []
    for image, info, gt in zip(image_topics, infos, gts):
        topics = RosbagTopics(image=image, camera_info=info, points=points_topic, gt=gt)
        try:
            cameras.append((image, RosbagFrames(bag, topics, slop=slop,
                                                lidar_to_camera=lidar_to_camera)))
        except LookupError as error:  # no /tf_static path between the LiDAR and the camera
            raise ValueError(str(error)) from error
    return cameras


def open_kitti(root, *, points: bool, raw_root=None) -> list[tuple[str, object]]:
    """(camera name, loader) for a KITTI folder: the sample layout (folders of frames with
    image_02.png; camera 2), the object-benchmark layout (folders with image_2.png, calib.txt
    and velodyne.bin, or <split>/image_2/; camera 2, no depth ground truth: use --lidar-split)
    or the official depth-completion layout (cameras 2 and 3)."""
    from dmd3c_ros.training.data import KittiDepthCompletion, KittiFrameFolders, LayoutError
    from dmd3c_ros.training.data.kitti_frames import KittiObjectFrames
    root = Path(root)
    if not root.is_dir():
        raise LayoutError(f"{root}: no such folder (KITTI-format folder)")
    if (root / "image_2.png").is_file() or (root / "image_2").is_dir() or any(
            (p / "image_2.png").is_file() or (p / "image_2").is_dir()
            for p in root.iterdir() if p.is_dir()):
        return [("image_2", KittiObjectFrames(root, stereo=False))]
    if (root / "image_02.png").is_file() or any((p / "image_02.png").is_file()
                                                 for p in root.iterdir() if p.is_dir()):
        return [("image_02", KittiFrameFolders(root, cameras=(2,), stereo=False, points=points))]
    if any((p / "proj_depth").is_dir() for p in root.iterdir() if p.is_dir()):
        splits = [(root.parent, root.name)]  # the split folder itself
    else:
        splits = [(root, p.name) for p in sorted(root.iterdir())
                  if p.is_dir() and any((d / "proj_depth").is_dir() for d in p.iterdir()
                                        if d.is_dir())]
    loaders, errors = [], []
    for base, split in splits:
        for index in (2, 3):
            try:
                loader = KittiDepthCompletion(base, split, raw_root=raw_root or base,
                                              cameras=(index,), stereo=False, points=points)
            except LayoutError as error:
                errors.append(str(error))
                continue
            loaders.append((f"image_0{index}", loader))
    if not loaders:
        raise LayoutError(f"{root}: neither KITTI frame folders (<frame>/image_02.png) nor the "
                          "depth-completion layout (<split>/<drive>/proj_depth)"
                          + (f": {errors[0]}" if errors else ""))
    return loaders


# ------------------------------------------------------------------------------ evaluation

def evaluate(source, *, backends=("auto",), models=(), gt: str | None = None,
             lidar_split: float | None = None, seed: int = 0, slop: float = 0.05,
             image_topics=(), camera_info_topics=(), points_topic: str | None = None,
             gt_topics=(), lidar_to_camera=None, kind: str | None = None, kitti_raw=None,
             min_depth: float = 0.1, max_depth: float = 100.0, precision: str = "fp32",
             engine_cache_dir=None, max_visuals: int = 4, mono: bool = False,
             gt_max_depth: float | None = None,
             progress: Callable[[str], None] | None = None):
    """Evaluate backends / models on a bag or KITTI folder.

    Args:
        source: rosbag2 bag folder or KITTI-format folder (``kind`` 'bag' / 'kitti'; None =
            detected from ``metadata.yaml``).
        backends, models: compared side by side (see ``plan_models``).
        gt: 'topic' (bag depth topic), 'kitti' (groundtruth PNGs) or 'lidar-split'; None =
            'lidar-split' when ``lidar_split`` is given, else 'topic' for bags, 'kitti' for KITTI.
        lidar_split: share of the visible points held out (0 < F < 1) for 'lidar-split'.
        seed: LiDAR-split seed (frame i uses ``(seed, i)``).
        slop: seconds, bag message pairing.
        image_topics, camera_info_topics, points_topic, gt_topics: bag topic mapping (one
            camera_info / gt topic per image topic, or none).
        lidar_to_camera: 16 floats for bags (None: ``/tf_static``).
        min_depth, max_depth: metres; projection range and prediction range (the node's).
        max_visuals: frames kept (evenly spread) as report visuals.
        mono: run the networks without LiDAR (all-zero sparse input); every compared backend must
            support mono mode (classical does not: ValueError).
        gt_max_depth: metres; ground-truth pixels farther away are not scored (None: all).
        progress: called with one line of text per frame.
    Returns:
        (summary, visuals, distance_errors, latencies): summary is
        ``{"results": {NAME: {...}}, "run": {...}}`` (``records.summarize``; "run" describes the
        source, ground truth, models and per-frame records); visuals a list of ``report.Visual``
        (or ``VisualFrame``); distance_errors NAME -> (gt depth, prediction - gt) float32 arrays
        in metres; latencies NAME -> list of per-frame milliseconds.
    """
    kind = kind or detect_kind(source)
    if kind not in ("bag", "kitti"):
        raise ValueError(f"unknown source kind {kind!r} (bag or kitti)")
    if gt is None:
        gt = "lidar-split" if lidar_split is not None else ("topic" if kind == "bag" else "kitti")
    if gt not in GT_MODES:
        raise ValueError(f"unknown ground truth {gt!r}; valid: {', '.join(GT_MODES)}")
    if (gt == "topic" and kind != "bag") or (gt == "kitti" and kind != "kitti"):
        raise ValueError(f"ground truth {gt!r} does not apply to a {kind} source")
    if gt == "lidar-split":
        if lidar_split is None:
            raise ValueError("ground truth 'lidar-split' needs the held-out fraction")
        if not 0.0 < float(lidar_split) < 1.0:
            raise ValueError(f"--lidar-split must lie between 0 and 1, got {lidar_split}")
        if gt_topics:
            raise ValueError("give either --gt-topic or --lidar-split, not both")
    if gt_max_depth is not None and not float(gt_max_depth) > 0:
        raise ValueError(f"--gt-max-depth must be a positive number of metres, got {gt_max_depth}")
    if mono:
        needs_lidar = [b for b, _ in plan_models(backends, models) if b == "classical"]
        if needs_lidar:
            raise ValueError("--mono runs without LiDAR, and backend 'classical' cannot (it only "
                             "densifies LiDAR): compare network backends only")
    if kind == "bag":
        if gt == "topic" and not gt_topics:
            raise ValueError("a bag needs ground truth: --gt-topic T (a depth image) or "
                             "--lidar-split F")
        if gt == "lidar-split" and not points_topic:
            raise ValueError("--lidar-split needs the LiDAR: --points-topic T")
        cameras = open_bag(source, image_topics=image_topics,
                           camera_info_topics=camera_info_topics, points_topic=points_topic,
                           gt_topics=gt_topics if gt == "topic" else None, slop=slop,
                           lidar_to_camera=lidar_to_camera)
    else:
        if image_topics or gt_topics or points_topic or camera_info_topics:
            raise ValueError("topic arguments apply to --bag, not --kitti")
        cameras = open_kitti(source, points=gt == "lidar-split", raw_root=kitti_raw)

    runs = create_runs(backends, models, min_depth=min_depth, max_depth=max_depth,
                       precision=precision, engine_cache_dir=engine_cache_dir)
    no_mono = [r.name for r in runs if not r.pipeline.supports_mono]
    if mono and no_mono:
        for run in runs:
            run.pipeline.backend.close()
        for _, loader in cameras:
            getattr(loader, "close", lambda: None)()
        raise ValueError(f"--mono: {', '.join(no_mono)} cannot run without LiDAR (the model spec "
                         "says supports_mono: false)")
    names = [r.name for r in runs]
    total = sum(len(loader) for _, loader in cameras)
    show = set(np.linspace(0, total - 1, max_visuals).round().astype(int).tolist()) \
        if max_visuals > 0 and total else set()
    Visual = _visual_class()
    records: list[FrameRecord] = []
    visuals, errors = [], {n: ([], []) for n in names}
    latencies = {n: [] for n in names}
    failed = {n: 0 for n in names}
    skipped = {"no_ground_truth": 0, "no_lidar": 0}
    index, start = 0, time.perf_counter()
    try:
        for camera_name, loader in cameras:
            for position in range(len(loader)):
                sample = loader[position]
                inputs, truth = _frame_inputs(sample, kind, gt, lidar_split, (seed, index),
                                              min_depth, max_depth, skipped)
                frame_index, index = index, index + 1
                if inputs is None:
                    continue
                if gt_max_depth is not None:
                    truth = np.where(truth <= gt_max_depth, truth, 0).astype(np.float32)  # NaN too
                    if not np.any(truth > 0):
                        skipped["no_ground_truth_within_cap"] = \
                            skipped.get("no_ground_truth_within_cap", 0) + 1
                        continue
                if mono:  # no LiDAR at all: an all-zero sparse map is mono mode
                    inputs = {"sparse": np.zeros(sample["rgb"].shape[:2], np.float32)}
                predictions, line = {}, []
                for run in runs:
                    try:
                        depth, ms, mode = complete_one(run.pipeline, sample["rgb"],
                                                       sample["camera"], **inputs)
                    except MonoNotSupportedError:
                        failed[run.name] += 1
                        line.append(f"{run.name} failed (no LiDAR)")
                        continue
                    metrics, bands = frame_metrics(depth, truth)
                    records.append(FrameRecord(run.name, sample["name"], camera_name, metrics,
                                               bands, ms, mode))
                    latencies[run.name].append(ms)
                    depths, errs = distance_errors(depth, truth, limit=5000, seed=frame_index)
                    errors[run.name][0].append(depths)
                    errors[run.name][1].append(errs)
                    predictions[run.name] = depth
                    line.append(f"{run.name} {metrics['rmse_mm']:.0f} mm {ms:.0f} ms")
                if frame_index in show:
                    visuals.append(Visual(name=sample["name"], rgb=sample["rgb"],
                                          sparse=_input_map(sample, inputs, min_depth, max_depth),
                                          gt=truth, predictions=predictions))
                if progress is not None:
                    elapsed = time.perf_counter() - start
                    eta = elapsed / index * (total - index)
                    progress(f"frame {index}/{total} {sample['name']}: " + ", ".join(line)
                             + f"  (eta {eta:.0f} s)")
    finally:
        for _, loader in cameras:
            getattr(loader, "close", lambda: None)()
        for run in runs:
            run.pipeline.backend.close()
    results = summarize(records, names, failed)
    summary = {"results": results, "run": clean({
        "source": str(source), "kind": kind, "gt": _gt_description(gt, lidar_split, gt_topics),
        "gt_max_depth_m": None if gt_max_depth is None else float(gt_max_depth),
        "input_mode": "mono" if mono else "completion",
        "lidar_input": "none (mono: all-zero sparse input)" if mono else _lidar_description(kind,
                                                                                          gt),
        "seed": seed, "slop_s": slop if kind == "bag" else None,
        "depth_range_m": [min_depth, max_depth], "frames_total": total, "skipped": skipped,
        "cameras": [name for name, _ in cameras],
        "dropped": {name: getattr(loader, "dropped", {}) for name, loader in cameras},
        "models": {r.name: {"backend": r.backend, "model": r.model} for r in runs},
        "per_frame": [r.to_json() for r in records]})}
    distance = {n: (np.concatenate(d) if d else np.zeros(0, np.float32),
                    np.concatenate(e) if e else np.zeros(0, np.float32))
                for n, (d, e) in errors.items()}
    return summary, visuals, distance, latencies


def _frame_inputs(sample, kind, gt, fraction, seed, min_depth, max_depth, skipped):
    """(keyword inputs of ``complete_one``, ground truth) of one sample, or (None, None)."""
    if gt == "lidar-split":
        points, T = sample["points"], sample["lidar_to_camera"]
        if points is None or T is None or not len(points):
            skipped["no_lidar"] += 1
            return None, None
        kept, truth = split_points(points, sample["camera"], T, fraction, seed,
                                   min_depth=min_depth, max_depth=max_depth)
        return {"points": kept, "lidar_to_camera": T}, truth
    truth = sample["gt"]
    if truth is None or not np.any(truth > 0):
        skipped["no_ground_truth"] += 1
        return None, None
    if kind == "kitti":
        return {"sparse": sample["sparse"]}, truth
    return {"points": sample["points"], "lidar_to_camera": sample["lidar_to_camera"]}, truth


def _input_map(sample, inputs, min_depth, max_depth) -> np.ndarray:
    if inputs.get("sparse") is not None:
        return inputs["sparse"]
    if inputs.get("points") is None or not len(inputs["points"]):
        return np.zeros(sample["rgb"].shape[:2], np.float32)
    return project_to_depth(inputs["points"], sample["camera"], inputs["lidar_to_camera"],
                            min_depth=min_depth, max_depth=max_depth)


def _lidar_description(kind, gt) -> str:
    if gt == "lidar-split":
        return "the LiDAR points not held out, projected into the image"
    if kind == "kitti":
        return "KITTI sparse depth PNGs (velodyne_raw)"
    return "the LiDAR sweep, projected into the image"


def run_notes(run: dict) -> list[str]:
    """Lines for the report that say how the figures were made (from the summary's "run")."""
    lines = []
    if run.get("mode") == "live":
        lines.append("Live: the bag played through the completion node (one process per model).")
    if run.get("gt"):
        cap = run.get("gt_max_depth_m")
        lines.append(f"Ground truth: {run['gt']}; " + (
            f"only ground-truth pixels at most {cap:g} m away are scored." if cap is not None
            else "every ground-truth pixel is scored (no distance cap)."))
    if run.get("input_mode") == "mono":
        lines.append("LiDAR input: none. Mono mode: the networks got an all-zero sparse input.")
    elif run.get("lidar_input"):
        lines.append(f"LiDAR input: {run['lidar_input']} (completion mode).")
    if run.get("depth_range_m"):
        low, high = run["depth_range_m"]
        lines.append(f"Predictions outside {low:g}-{high:g} m count as no value (filled before "
                     "scoring, as the KITTI devkit does).")
    skipped = {k: v for k, v in (run.get("skipped") or {}).items() if v}
    if skipped:
        lines.append("Frames skipped: " + ", ".join(f"{v} ({k.replace('_', ' ')})"
                                                     for k, v in skipped.items()) + ".")
    return lines


def _gt_description(gt, fraction, gt_topics) -> str:
    if gt == "lidar-split":
        return f"lidar split: {fraction} of the points in the image held out"
    if gt == "topic":
        return "depth topic " + ", ".join(gt_topics)
    return "KITTI groundtruth PNGs"


# ------------------------------------------------------------------------------ live

def evaluate_live(source, *, backends=("auto",), models=(), image_topics=(),
                  camera_info_topics=(), points_topic: str | None = None, gt_topics=(),
                  lidar_to_camera=None, slop: float = 0.05, max_visuals: int = 4,
                  progress: Callable[[str], None] | None = None, **ignored):
    """``dmd3c eval --live``: play the bag through the completion node (``live.play_and_record``)
    once per compared backend / model; same return values as ``evaluate``.

    The node gets ``lidar_to_camera`` as a parameter: the one given, else the bag's /tf_static
    (read here). Offline-only options (``lidar_split``, KITTI) are errors.
    """
    try:
        from dmd3c_ros.ros import live_eval as live  # rclpy lives in ros/ only
    except ImportError as error:
        raise ValueError(f"--live needs rclpy ({error})") from None
    if ignored.get("mono") or ignored.get("gt_max_depth") is not None:
        raise ValueError("--mono and --gt-max-depth apply to offline evaluation, not --live")
    if ignored.get("lidar_split") is not None or ignored.get("kind") == "kitti":
        raise ValueError("--live plays a bag with a ground-truth depth topic: no --lidar-split "
                         "or --kitti")
    image_topics, gt_topics = list(image_topics or []), list(gt_topics or [])
    if len(image_topics) != 1 or not points_topic or len(gt_topics) > 1:
        raise ValueError("--live needs one --image-topic, --points-topic and at most one "
                         "--gt-topic")
    info = (list(camera_info_topics or []) or [None])[0]
    ((_, frames),) = open_bag(source, image_topics=image_topics, camera_info_topics=[info],
                              points_topic=points_topic, slop=slop,
                              lidar_to_camera=lidar_to_camera)
    transform = frames.lidar_to_camera
    frames.close()
    topics = {"image": image_topics[0], "camera_info": frames.topics.resolved()["camera_info"],
              "points": points_topic, "gt": gt_topics[0] if gt_topics else None}
    names, results, latencies, distance, visuals, runs = [], {}, {}, {}, [], {}
    Visual = _visual_class()
    for backend, model in plan_models(backends, models):
        name = backend if model is None else f"{backend}:{Path(model).stem}"
        base, n = name, 2
        while name in names:
            name, n = f"{base}#{n}", n + 1
        names.append(name)
        report = (lambda played, total, answered, name=name: progress(
            f"{name}: played {played}/{total}, answered {answered}")) if progress else None
        parameters = {"backend": backend, "sync_slop": slop,
                      "lidar_to_camera": [float(v) for v in transform.ravel()]}
        if model is not None:  # else the node's default model
            parameters["model"] = str(model)
        result = live.play_and_record(source, topics=topics, progress=report,
                                      keep=max(max_visuals, 0), node_parameters=parameters)
        results[name], latencies[name] = result.to_results(name), list(result.latencies_ms)
        runs[name] = result.to_dict()
        truth = [distance_errors(x["depth"], x["gt"]) for x in result.samples]
        distance[name] = (np.concatenate([t for t, _ in truth]) if truth else np.zeros(0),
                          np.concatenate([e for _, e in truth]) if truth else np.zeros(0))
        for x in result.samples:
            if "rgb" in x:
                visuals.append(Visual(name=f"{name} {x['stamp_ns']}", rgb=x["rgb"],
                                      sparse=np.zeros(x["gt"].shape, np.float32), gt=x["gt"],
                                      predictions={name: x["depth"]}))
    summary = {"results": results, "run": clean({"source": str(source), "kind": "bag",
                                                 "mode": "live", "topics": topics,
                                                 "live": runs})}
    return summary, visuals, distance, latencies


# ------------------------------------------------------------------------------ outputs

def write_json(path, summary: dict) -> Path:
    """Write the summary as strict JSON (NaN as null); returns the path."""
    import json
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(clean(summary), indent=2, allow_nan=False) + "\n")
    return path


def write_report_if_available(out_dir, summary, visuals, distance, latencies, *, title: str,
                              command: str) -> Path | None:
    """``report.write_report`` into ``out_dir`` when the report module is installed, else None."""
    try:
        from .report import write_report
    except ImportError:
        return None
    return write_report(out_dir, summary["results"], visuals, distance, latencies, title, command,
                        setup=run_notes(summary.get("run") or {}))


__all__ = ["GT_MODES", "ModelRun", "VisualFrame", "complete_one", "create_runs", "detect_kind",
           "evaluate", "evaluate_live", "format_table", "open_bag", "open_kitti", "plan_models",
           "run_notes", "write_json", "write_report_if_available"]
