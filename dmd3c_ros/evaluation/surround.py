"""Surround evaluation on a nuScenes keyframe (``dmd3c eval --nuscenes DIR``).

One sweep, six cameras, as the surround node sees them:

1. ``lidar_split.split_sweep``: every N-th point of the sweep (index % N == K; K = 0 unless
   ``holdout_offset`` says otherwise) is held out; the other points are the one LiDAR input of
   every camera; each camera's ground truth is the held-out points that land in it (same
   projection, z-buffer and depth range as the input).
2. Per compared backend / model (``offline.create_runs``, named as ``dmd3c eval`` names them):
   the six views go through ``CompletionPipeline.run_batch`` as ONE batch (the surround node's
   code path) and each camera is scored against its ground truth with ``core.metrics`` (KITTI
   devkit semantics); ``mean`` is the unweighted mean over cameras.
3. Cross-view consistency (``core.surround.pair_disagreement``) of each adjacent pair of
   predictions on the camera ring, both directions pooled, and the mean over pairs (a sliver of
   overlap, under ``SLIVER`` of the largest pair's pixels, is reported but not averaged); with
   ``seams_dir`` a picture of the seams (:mod:`.seams`).
4. Reference (``"reference"`` in the JSON): the same consistency of the held-out ground-truth
   maps themselves, where both cameras of a pair have a return on the landing pixel. Both maps
   come from the same points of one sweep, so what is left is pixel rounding (a return sits at
   its pixel's centre) and a nearer return of the other camera's z-buffer (occlusion between the
   viewpoints); the rig's timing (lidar2cam ignores ego motion) does not show in it. It is the
   floor: the figure a prediction could reach at best on these pixels.

JSON (written with ``core.io.write_json``)::

    {"results": {NAME: {"cameras": {CAM: {...metrics, "pixels"}},
                        "mean": {...metrics, "cameras"},
                        "consistency": {"CAM_A|CAM_B": {...figures}, "mean": {...figures,
                                        "pairs"}},
                        "batch_ms": {stage: ms}, "skipped": [CAM...]}},
     "reference": {"lidar_ground_truth": {"consistency": {...as above}}},
     "run": {...how the figures were made}}

metrics: ``core.metrics.METRIC_NAMES`` (rmse_mm, mae_mm, irmse_per_km, imae_per_km, abs_rel,
sq_rel, delta1-3) and ``pixels``; figures: ``core.surround`` (pixels, mean_abs_m, median_abs_m,
rmse_m, abs_rel, mean_m, median_rel_pct, p90_rel_pct). NaN is written as null.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import numpy as np

from dmd3c_ros.core.metrics import average_metrics, depth_metrics
from dmd3c_ros.core.nuscenes_sample import load_nuscenes_sample
from dmd3c_ros.core.seam_blend import SeamBlender
from dmd3c_ros.core.surround import (mean_figures, pair_disagreement, ring_index_pairs,
                                     ring_pairs)
from dmd3c_ros.runtime.pipeline import View

from .lidar_split import every_nth, split_sweep
from .offline import create_runs
from .report import _fmt
from .seams import MAX_PCT, write_seam_picture

# A pair that compares fewer than this share of the run's largest pair's pixels is a sliver of
# overlap (nuScenes' CAM_BACK / CAM_BACK_LEFT: about 6 degrees where the fields of view meet):
# reported, not averaged.
SLIVER = 0.01


def pair_key(a: str, b: str) -> str:
    return f"{a}|{b}"


def consistency(depths: dict, views: dict, names, seams: dict | None = None) -> dict:
    """``{"A|B": figures, ..., "mean": figures + pairs}`` over the ring pairs of ``names``.

    depths: camera -> (H, W) metres (NaN or <= 0 = none); views: camera -> (PinholeCamera,
    lidar_to_camera). Cameras missing from ``depths`` are left out of the ring. ``seams``, when
    given, is filled with camera -> its seam map against its ring neighbours (the larger of
    the two where both compare; ``core.surround.seam_map``), from the same comparisons.
    """
    ring = [n for n in names if n in depths]
    rows = {}
    for a, b in ring_pairs(ring):
        pair = pair_disagreement(depths[a], *views[a], depths[b], *views[b],
                                 maps=seams is not None)
        if seams is None:
            rows[pair_key(a, b)] = pair
            continue
        rows[pair_key(a, b)], map_a, map_b = pair
        for name, found in ((a, map_a), (b, map_b)):
            seams[name] = found if name not in seams else np.fmax(seams[name], found)
    return {**rows, "mean": mean_figures(list(rows.values()), sliver=SLIVER)}


def evaluate_surround(folder, *, backends=("auto",), models=(), holdout_every: int = 5,
                      holdout_offset: int = 0, min_depth: float = 0.1,
                      max_depth: float = 100.0, precision: str = "fp32",
                      engine_cache_dir=None, seams_dir=None, seam_tolerance: float | None = None,
                      progress: Callable[[str], None] | None = None) -> dict:
    """Evaluate backends / models on a nuScenes sample folder (see the module docstring).

    Args:
        folder: sample folder with ``calibration.json`` (``core.nuscenes_sample``).
        backends, models: compared side by side (``offline.plan_models``).
        holdout_every: N >= 2; every N-th point of the sweep is ground truth, not input.
        holdout_offset: 0 .. N-1: the points with index % N == holdout_offset are.
        min_depth, max_depth: metres; projection range of input and ground truth, and the
            prediction range (the node's).
        precision, engine_cache_dir: for the TensorRT backend.
        seams_dir: when given, ``seams_<name>.png`` of each run and of the held-out LiDAR
            there (:mod:`.seams`; named in the summary's ``run.seams``).
        seam_tolerance: when given, every run is also reported as ``<name>+seams``: its views
            blended at the seams (``core.seam_blend.SeamBlender`` with this tolerance, as the
            surround node's ``seam_blend`` does), from the same network outputs.
        progress: called with one line of text per model.
    Returns:
        the summary (JSON layout in the module docstring), NaN kept as float NaN.
    """
    sample = load_nuscenes_sample(folder)
    names = sample.names  # ring order
    views = {c.name: (c.camera, c.lidar_to_camera) for c in sample.cameras}
    kept, truths = split_sweep(sample.points, [views[n] for n in names], holdout_every,
                               offset=holdout_offset, min_depth=min_depth, max_depth=max_depth)
    truth = dict(zip(names, truths))
    batch = [View(c.rgb, c.camera, kept, c.lidar_to_camera) for c in sample.cameras]
    runs = create_runs(backends, models, min_depth=min_depth, max_depth=max_depth,
                       precision=precision, engine_cache_dir=engine_cache_dir)
    results, seams = {}, {}
    images = {c.name: c.rgb for c in sample.cameras}
    blender = None
    if seam_tolerance is not None:
        blender = SeamBlender([views[n][0] for n in names], [views[n][1] for n in names],
                              ring_index_pairs(names), tolerance=seam_tolerance)

    def record(name: str, out, total_ms: float) -> None:
        depths = {n: r.depth for n, r in zip(names, out.results) if r is not None}
        cameras = {n: depth_metrics(depths[n], truth[n]) for n in names if n in depths}
        maps = {} if seams_dir is not None else None
        mean = average_metrics(cameras.values())
        mean["cameras"] = mean.pop("frames")
        results[name] = {
            "cameras": cameras, "mean": mean,
            "consistency": consistency(depths, views, names, maps),
            "batch_ms": {"total": total_ms, **out.timings_ms},
            "skipped": [names[i] for i in out.skipped]}
        if seams_dir is not None:
            seams[name] = write_seam_picture(seams_dir, name, images, maps, names).name
        if progress is not None:
            progress(f"{name}: {len(depths)} cameras in one batch, "
                     f"{total_ms:.0f} ms, mean RMSE {mean['rmse_mm']:.0f} mm")

    try:
        for run in runs:
            start = time.perf_counter()
            out = run.pipeline.run_batch(batch, uncertainty=False)
            total_ms = (time.perf_counter() - start) * 1000.0  # s to ms
            record(run.name, out, total_ms)
            if blender is not None:
                run.pipeline.blend_seams(blender, batch, out)
                record(f"{run.name}+seams", out, total_ms + out.timings_ms["seams"])
    finally:
        for run in runs:
            run.pipeline.backend.close()
    maps = {} if seams_dir is not None else None
    reference = {"lidar_ground_truth": {"consistency": consistency(truth, views, names, maps)}}
    if seams_dir is not None:
        seams["reference: held-out LiDAR"] = write_seam_picture(
            seams_dir, "lidar_ground_truth", images, maps, names).name
    stamps = {c.name: c.stamp for c in sample.cameras}
    run_info = {
        "source": str(folder), "kind": "nuscenes", "cameras": names,
        "ring_pairs": [pair_key(a, b) for a, b in ring_pairs(names)],
        "gt": f"lidar holdout: {every_nth(holdout_every)} of the sweep (index % "
              f"{int(holdout_every)} == {int(holdout_offset)}), projected into each camera",
        "holdout_every": int(holdout_every), "holdout_offset": int(holdout_offset),
        "points_total": int(len(sample.points)),
        "points_input": int(len(kept)), "points_held_out": int(len(sample.points) - len(kept)),
        "gt_pixels": {n: int((truth[n] > 0).sum()) for n in names},
        "depth_range_m": [min_depth, max_depth],
        "lidar_stamp": sample.lidar_stamp,
        "camera_minus_lidar_s": {n: None if s is None or sample.lidar_stamp is None
                                 else s - sample.lidar_stamp for n, s in stamps.items()},
        "models": {r.name: {"backend": r.backend, "model": r.model} for r in runs},
        "seam_tolerance": seam_tolerance,
        "seams": seams}
    return {"results": results, "reference": reference, "run": run_info}


# ------------------------------------------------------------------------------ outputs

METRIC_COLUMNS = (("pixels", "pixels", "{:d}"), ("RMSE [mm]", "rmse_mm", "{:.1f}"),
                  ("MAE [mm]", "mae_mm", "{:.1f}"), ("iRMSE [1/km]", "irmse_per_km", "{:.2f}"),
                  ("iMAE [1/km]", "imae_per_km", "{:.2f}"), ("AbsRel", "abs_rel", "{:.4f}"),
                  ("delta1", "delta1", "{:.3f}"))
FIGURE_COLUMNS = (("pixels", "pixels", "{:d}"), ("mean abs [m]", "mean_abs_m", "{:.3f}"),
                  ("median abs [m]", "median_abs_m", "{:.3f}"), ("RMSE [m]", "rmse_m", "{:.3f}"),
                  ("AbsRel", "abs_rel", "{:.4f}"), ("mean [m]", "mean_m", "{:+.3f}"),
                  ("median rel [%]", "median_rel_pct", "{:.2f}"),
                  ("p90 rel [%]", "p90_rel_pct", "{:.2f}"))


def _table(head, columns, rows) -> list[str]:
    lines = ["| " + " | ".join(list(head) + [c[0] for c in columns]) + " |",
             "|" + "---|" * len(head) + "---:|" * len(columns)]
    for labels, figures in rows:
        lines.append("| " + " | ".join(list(labels) + [_fmt(figures.get(key), spec)
                                                       for _, key, spec in columns]) + " |")
    return lines


def format_tables(summary: dict) -> str:
    """The summary's figures as Markdown tables: per camera and mean, consistency per pair and
    mean, and the ground-truth reference."""
    results = summary["results"]
    rows = []
    for name, r in results.items():
        rows += [((name, camera), m) for camera, m in r["cameras"].items()]
        rows.append(((name, f"**mean of {r['mean'].get('cameras', 0)}**"), r["mean"]))
    md = ["### Per camera (held-out LiDAR ground truth)", ""]
    md += _table(("name", "camera"), METRIC_COLUMNS, rows)
    rows = []
    for name, c in [(n, r["consistency"]) for n, r in results.items()] + [
            ("reference: held-out LiDAR", summary["reference"]["lidar_ground_truth"]
             ["consistency"])]:
        rows += [((name, pair.replace("|", " / ")), f) for pair, f in c.items()
                 if pair != "mean"]  # a bare | would split the Markdown cell
        slivers = c["mean"].get("slivers", 0)
        rows.append(((name, f"**mean of {c['mean'].get('pairs', 0)} pairs**"
                      + (f" ({slivers} sliver left out)" if slivers else "")), c["mean"]))
    md += ["", "### Cross-view consistency (adjacent cameras, both directions pooled)", ""]
    md += _table(("name", "pair"), FIGURE_COLUMNS, rows)
    return "\n".join(md)


def write_surround_report(out_dir, summary: dict, *, command: str) -> Path:
    """Write ``report.md`` (the tables, the command and how the figures were made) into
    ``out_dir``; return its path."""
    run = summary["run"]
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    low, high = run["depth_range_m"]
    offsets = [v for v in run["camera_minus_lidar_s"].values() if v is not None]
    setup = [
        f"Source: {run['source']} (one nuScenes keyframe, cameras in ring order: "
        f"{', '.join(run['cameras'])}).",
        f"Ground truth: {run['gt']}: {run['points_held_out']} of {run['points_total']} points; "
        "per camera " + ", ".join(f"{n} {k}" for n, k in run["gt_pixels"].items()) + " pixels.",
        f"LiDAR input: the other {run['points_input']} points, one sweep for all cameras; the "
        "six views run as one batch (CompletionPipeline.run_batch, the surround node's path).",
        f"Predictions outside {low:g}-{high:g} m count as no value (filled before scoring, as "
        "the KITTI devkit does); the mean is the unweighted mean over cameras.",
        "Consistency: each valid pixel of one camera lifted to 3-D, carried into its ring "
        "neighbour through the LiDAR frame and compared with the neighbour's depth where it "
        "lands (both directions pooled); occlusion between the two viewpoints counts as "
        "disagreement; rel = |d_a - d_b| / ((d_a + d_b) / 2). The reference rows do the same "
        "with the held-out LiDAR maps (only "
        "pixels where both have a return; the same points seen from two cameras): the floor "
        "set by pixel rounding and occlusion.",
    ]
    if offsets:
        setup.append(f"Camera minus LiDAR timestamps: {min(offsets) * 1000:+.0f} to "
                     f"{max(offsets) * 1000:+.0f} ms (lidar2cam ignores the ego motion "
                     "between them).")
    md = [f"# dmd3c eval: {run['source']}", "", "Command:", "", "```", command, "```", "",
          "## How the figures were made", ""] + [f"- {line}" for line in setup]
    md += ["", "## Figures", "", format_tables(summary), ""]
    if run.get("seams"):
        md += ["## Seams", "", f"Each camera dimmed; where a ring neighbour sees the same place, "
               f"the relative disagreement from 0 % (blue) to {MAX_PCT:g} % or more (red).", ""]
        md += [f"### {name}\n\n![seams {name}]({file})\n" for name, file in run["seams"].items()]
    path = out / "report.md"
    path.write_text("\n".join(md), encoding="utf-8")
    return path


__all__ = ["consistency", "evaluate_surround", "format_tables", "pair_key",
           "write_surround_report"]
