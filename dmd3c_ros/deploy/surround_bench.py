"""``dmd3c bench --nuscenes DIR``: the views of one real surround sweep as one batch against the
same views one at a time.

Per backend, interleaved with the others round-robin (the first rotated every round), each round
runs the sweep both ways in alternating order:

    batch    CompletionPipeline.run_batch(six views): projection each, then ONE backend call
             (the surround node's path): one batched inference, or, for ONNX Runtime on the
             CPU, the views side by side on its ``view_workers`` threads, whose stage columns
             are then summed over views that overlap in time (only "total" is wall time)
    singles  CompletionPipeline.run(view) six times: six projections, six inferences

Figures are per sweep (all views), milliseconds p50 / p95 per stage and in total, plus the
ratio singles / batch of the p50 totals (> 1: the batch is faster). No ROS messages: decode and
encode cost the same either way.
"""
from __future__ import annotations

import time
from typing import Callable

import numpy as np

from dmd3c_ros.core.nuscenes_sample import load_nuscenes_sample
from dmd3c_ros.runtime.pipeline import View

STAGES = ("projection", "preprocess", "inference", "postprocess", "total")
MODES = ("batch", "singles")


def sweep_views(folder) -> tuple[list[str], list[View]]:
    """(camera names, Views) of a nuScenes sample folder: every camera with the whole sweep."""
    sample = load_nuscenes_sample(folder)
    return sample.names, [View(c.rgb, c.camera, sample.points, c.lidar_to_camera)
                          for c in sample.cameras]


def _once(pipeline, views: list[View], mode: str) -> dict[str, float]:
    start = time.perf_counter()
    stages: dict[str, float] = {}
    if mode == "batch":
        stages.update(pipeline.run_batch(views, uncertainty=False).timings_ms)
    else:
        for view in views:
            result = pipeline.run(view.rgb, view.camera, view.points, view.lidar_to_camera,
                                  uncertainty=False)
            for name, ms in result.timings_ms.items():
                stages[name] = stages.get(name, 0.0) + ms
    stages["total"] = (time.perf_counter() - start) * 1000.0  # s to ms
    return stages


def measure_surround(entries, folder, *, frames: int, warmup: int,
                     say: Callable[[str], None] | None = None) -> dict:
    """{"source", "cameras", "sizes", "runs": [{backend, mode, stages}], "ratios": {backend:
    singles / batch}} for ``bench.Entry`` objects (see the module docstring)."""
    names, views = sweep_views(folder)
    timed = {(e.label, m): [] for e in entries for m in MODES}
    for index in range(warmup + frames):
        if say is not None and index % 5 == 0:
            say(f"  surround sweep {index}/{warmup + frames} (warm-up {warmup})")
        shift = index % len(entries)
        for entry in entries[shift:] + entries[:shift]:
            for mode in (MODES if index % 2 == 0 else MODES[::-1]):
                stages = _once(entry.pipeline, views, mode)
                if index >= warmup:
                    timed[(entry.label, mode)].append(stages)
    runs, ratios = [], {}
    for entry in entries:
        totals = {}
        for mode in MODES:
            samples = timed[(entry.label, mode)]
            stages = {}
            for stage in STAGES:
                values = [s[stage] for s in samples if stage in s]
                if values:
                    p50, p95 = np.percentile(values, [50, 95])
                    stages[stage] = {"p50_ms": float(p50), "p95_ms": float(p95)}
            totals[mode] = stages["total"]["p50_ms"]
            runs.append({"backend": entry.label, "mode": mode, "frames": len(samples),
                         "stages": stages,
                         "view_workers": getattr(entry.pipeline.backend, "view_workers", 1)})
        ratios[entry.label] = totals["singles"] / totals["batch"]
    return {"source": str(folder), "cameras": names,
            "sizes": ["{}x{}".format(*v.camera.size) for v in views],
            "lidar_points": int(len(views[0].points)), "frames": frames, "warmup": warmup,
            "runs": runs, "ratios": ratios}


def format_surround(result: dict, cell: Callable[[dict | None], str]) -> list[str]:
    """Markdown lines of the surround section (``cell`` formats one p50 / p95 stage)."""
    lines = [f"## Surround sweep: {len(result['cameras'])} views as one batch vs one at a time",
             "", f"Source: {result['source']} ({', '.join(result['cameras'])}; "
             f"{', '.join(sorted(set(result['sizes'])))}; {result['lidar_points']} LiDAR "
             f"points). Milliseconds p50 / p95 per sweep (all views), {result['frames']} sweeps "
             f"after {result['warmup']} warm-up per backend and mode.", "",
             "| backend | mode | " + " | ".join(STAGES) + " |",
             "|---|---|" + "---:|" * len(STAGES)]
    for run in result["runs"]:
        lines.append(f"| {run['backend']} | {run['mode']} | "
                     + " | ".join(cell(run["stages"].get(s)) for s in STAGES) + " |")
    lines += ["", "Six single views / one batch of six, p50 total: " + ", ".join(
        f"{label} {ratio:.2f}x" for label, ratio in result["ratios"].items()) + "."]
    parallel = sorted({f"{run['backend']} ({run['view_workers']} threads)"
                       for run in result["runs"] if run.get("view_workers", 1) > 1})
    if parallel:
        lines += ["", "Batches that ran their views side by side: " + ", ".join(parallel)
                  + "; their batch stages are summed over the views, which overlap (only the "
                  "total is wall time)."]
    lines.append("")
    return lines
