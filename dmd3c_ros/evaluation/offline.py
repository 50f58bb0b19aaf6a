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

Models are compared as ``runs.plan_models`` says; predictions follow the node: depths outside
[min_depth, max_depth] become "no value".

Options that change what is measured, both recorded in the summary's "run" and the report:
``mono`` gives the networks no LiDAR at all (an all-zero sparse input: mono mode; an error for a
backend that needs LiDAR, such as classical), the ground truth is unchanged; ``gt_max_depth``
scores only the ground-truth pixels at most that many metres away (frames left without any are
skipped as having no ground truth).
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.runtime.base import MonoNotSupportedError

from .lidar_split import split_points
# The pieces of dmd3c eval, re-exported here (the CLI and the other tools import them from here).
from .live import evaluate_live
from .outputs import run_notes, write_json, write_report_if_available
from .records import (FrameRecord, clean, coverage_masks, distance_errors, format_table,
                      frame_and_masked_metrics, summarize)
from .runs import ModelRun, VisualFrame, _visual_class, complete_one, create_runs, plan_models
from .sources import detect_kind, open_bag, open_kitti

GT_MODES = ("topic", "kitti", "lidar-split")


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
                given = _input_map(sample, inputs, min_depth, max_depth)
                coverage = coverage_masks(given, truth)  # the same for every model
                predictions, line = {}, []
                for run in runs:
                    try:
                        depth, ms, mode = complete_one(run.pipeline, sample["rgb"],
                                                       sample["camera"], **inputs)
                    except MonoNotSupportedError:
                        failed[run.name] += 1
                        line.append(f"{run.name} failed (no LiDAR)")
                        continue
                    metrics, bands, covered = frame_and_masked_metrics(depth, truth, coverage)
                    records.append(FrameRecord(run.name, sample["name"], camera_name, metrics,
                                               bands, ms, mode, coverage=covered))
                    latencies[run.name].append(ms)
                    depths, errs = distance_errors(depth, truth, limit=5000, seed=frame_index)
                    errors[run.name][0].append(depths)
                    errors[run.name][1].append(errs)
                    predictions[run.name] = depth
                    line.append(f"{run.name} {metrics['rmse_mm']:.0f} mm {ms:.0f} ms")
                if frame_index in show:
                    visuals.append(Visual(name=sample["name"], rgb=sample["rgb"],
                                          sparse=given,
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



def _gt_description(gt, fraction, gt_topics) -> str:
    if gt == "lidar-split":
        return f"lidar split: {fraction} of the points in the image held out"
    if gt == "topic":
        return "depth topic " + ", ".join(gt_topics)
    return "KITTI groundtruth PNGs"


__all__ = ["GT_MODES", "ModelRun", "VisualFrame", "complete_one", "create_runs", "detect_kind",
           "evaluate", "evaluate_live", "format_table", "open_bag", "open_kitti", "plan_models",
           "run_notes", "write_json", "write_report_if_available"]
