"""Per-frame evaluation records and the summary that ``dmd3c eval --json`` writes.

One record per (model, frame): the per-image metrics of ``core.metrics.depth_metrics`` (KITTI
devkit semantics: prediction holes filled, only ground-truth pixels scored), the same metrics on
the ground-truth pixels of each distance band and of each coverage band (the distance in pixels
to the nearest LiDAR return the backend was given, ``core.metrics.COVERAGE``), the camera it came
from and the latency. The summary per NAME holds the means over frames of the per-image figures
(``average_metrics``), the band and coverage means (over the frames that have ground truth in
the band), per-camera means when the run had several cameras, and latency percentiles::

    {"frames": N, "rmse_mm", "mae_mm", "irmse_per_km", "imae_per_km", "abs_rel", "sq_rel",
     "delta1", "delta2", "delta3",
     "bands": {"0-20": {...metrics, "frames"}, "20-40": {...}, "40-80": {...}},
     "coverage": {"0": {...metrics, "frames"}, "0-2": {...}, "2-4": {...}, "4+": {...}},
                                                         (pixels; not in mono mode)
     "cameras": {CAMERA: {...metrics, "frames"}},        (only with several cameras)
     "latency_ms": {"p50", "p95", "mean", "max"}, "failed": F}

NaN figures (nothing to score) are written as JSON null.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from dmd3c_ros.core.io import json_safe as clean  # the one strict-JSON helper
# The band metrics live with the other metrics in core.metrics; re-exported for the eval tools.
from dmd3c_ros.core.metrics import (BANDS, COVERAGE, METRIC_NAMES, average_metrics, band_masks,
                                    coverage_masks, frame_and_masked_metrics, frame_metrics,
                                    masked_metrics)

@dataclass
class FrameRecord:
    """What one model made of one frame."""

    name: str                 # model NAME
    frame: str                # sample name
    camera: str
    metrics: dict[str, float]
    bands: dict[str, dict[str, float]]
    latency_ms: float
    mode: str = "completion"
    extra: dict = field(default_factory=dict)
    coverage: dict[str, dict[str, float]] = field(default_factory=dict)  # none in mono mode

    def to_json(self) -> dict:
        coverage = {"coverage": clean(self.coverage)} if self.coverage else {}
        return {"name": self.name, "frame": self.frame, "camera": self.camera,
                "metrics": clean(self.metrics), "bands": clean(self.bands), **coverage,
                "latency_ms": self.latency_ms, "mode": self.mode, **clean(self.extra)}


def distance_errors(prediction: np.ndarray, gt: np.ndarray, *, limit: int = 20000,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(gt depth, prediction - gt) in metres, float32, on at most ``limit`` ground-truth pixels
    (a seeded subsample) for error-vs-distance plots; the raw prediction (holes not filled):
    the error is NaN where the prediction has no value."""
    gt = np.asarray(gt, dtype=np.float64)
    prediction = np.asarray(prediction, dtype=np.float64)
    mask = np.isfinite(gt) & (gt > 0)
    truth = gt[mask]
    predicted = prediction[mask]
    error = np.where(np.isfinite(predicted) & (predicted > 0), predicted - truth, np.nan)
    if truth.size > limit:
        keep = np.sort(np.random.default_rng(seed).choice(truth.size, limit, replace=False))
        truth, error = truth[keep], error[keep]
    return truth.astype(np.float32), error.astype(np.float32)


def percentiles(values) -> dict[str, float | None]:
    """p50 / p95 / mean / max of a list of milliseconds (None when empty)."""
    values = np.asarray(list(values), dtype=np.float64)
    if not values.size:
        return {"p50": None, "p95": None, "mean": None, "max": None}
    return {"p50": float(np.percentile(values, 50)), "p95": float(np.percentile(values, 95)),
            "mean": float(values.mean()), "max": float(values.max())}


def summarize(records: list[FrameRecord], names: list[str],
              failed: dict[str, int] | None = None) -> dict[str, dict]:
    """NAME -> summary (see the module docstring), in the order of ``names``."""
    failed = failed or {}
    results = {}
    for name in names:
        own = [r for r in records if r.name == name]
        summary = average_metrics(r.metrics for r in own)
        summary = {"frames": summary.pop("frames"), **summary}
        summary["bands"] = {label: average_metrics(r.bands[label] for r in own)
                            for label, _, _ in BANDS}
        if any(r.coverage for r in own):
            summary["coverage"] = {label: average_metrics(r.coverage[label] for r in own
                                                          if label in r.coverage)
                                   for label, _, _ in COVERAGE}
        cameras = sorted({r.camera for r in own})
        if len(cameras) > 1:
            summary["cameras"] = {camera: average_metrics(r.metrics for r in own
                                                          if r.camera == camera)
                                  for camera in cameras}
        summary["latency_ms"] = percentiles(r.latency_ms for r in own)
        summary["failed"] = int(failed.get(name, 0))
        results[name] = clean(summary)
    return results


def format_table(results: dict[str, dict]) -> str:
    """A plain-text table of the summary, one row per NAME, then one per band."""
    header = (f"{'name':<28} {'frames':>6} {'RMSE mm':>9} {'MAE mm':>9} {'iRMSE':>8} "
              f"{'iMAE':>8} {'AbsRel':>7} {'d1':>6} {'p50 ms':>7} {'p95 ms':>7}")

    def number(value, spec):
        width = int(spec.split(".")[0])
        return format(value, spec) if value is not None else "-".rjust(width)

    def row(label, m, latency=None):
        latency = latency or {}
        return (f"{label:<28} {m.get('frames', 0):>6} {number(m.get('rmse_mm'), '9.1f')} "
                f"{number(m.get('mae_mm'), '9.1f')} {number(m.get('irmse_per_km'), '8.2f')} "
                f"{number(m.get('imae_per_km'), '8.2f')} {number(m.get('abs_rel'), '7.4f')} "
                f"{number(m.get('delta1'), '6.3f')} {number(latency.get('p50'), '7.1f')} "
                f"{number(latency.get('p95'), '7.1f')}")

    lines = [header, "-" * len(header)]
    for name, summary in results.items():
        lines.append(row(name, summary, summary.get("latency_ms")))
        for label, band in summary.get("bands", {}).items():
            lines.append(row(f"  {label} m", band))
        for label, figures in summary.get("coverage", {}).items():
            lines.append(row(f"  {label} px from a return", figures))
        for camera, figures in summary.get("cameras", {}).items():
            lines.append(row(f"  {camera}", figures))
    return "\n".join(lines)


__all__ = ["BANDS", "COVERAGE", "FrameRecord", "METRIC_NAMES", "band_masks", "clean",
           "coverage_masks", "distance_errors", "format_table", "frame_and_masked_metrics",
           "frame_metrics", "masked_metrics", "percentiles", "summarize"]
