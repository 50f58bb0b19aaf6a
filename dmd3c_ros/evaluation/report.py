"""The human half of `dmd3c eval`: a Markdown report with PNG figures next to the JSON.

The frame strips are drawn by ``report_strips`` (OpenCV), the two charts by ``report_charts``
(matplotlib's Agg canvas). Nothing here imports rclpy.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np

from .report_charts import DISTANCE_BIN_M, _error_vs_distance, _latency_hist
from .report_strips import DEPTH_RANGE_M, ERROR_MAX_M, Visual, _frame_strip

# (column title, result key, format) of every metrics table.
COLUMNS = (("RMSE [mm]", "rmse_mm", "{:.1f}"), ("MAE [mm]", "mae_mm", "{:.1f}"),
           ("iRMSE [1/km]", "irmse_per_km", "{:.2f}"), ("iMAE [1/km]", "imae_per_km", "{:.2f}"),
           ("AbsRel", "abs_rel", "{:.4f}"), ("δ1", "delta1", "{:.4f}"),
           ("frames", "frames", "{:d}"))


def _fmt(value, spec: str) -> str:
    if value is None or isinstance(value, bool):
        return "n/a"
    value = float(value)
    if not math.isfinite(value):
        return "n/a"
    return str(int(value)) if spec == "{:d}" else spec.format(value)


def _table(head: Sequence[str], rows: Mapping[tuple[str, ...], Mapping]) -> list[str]:
    """Markdown table: label cells (``head``) then COLUMNS, one row per (labels, metrics)."""
    titles = list(head) + [c[0] for c in COLUMNS]
    lines = ["| " + " | ".join(titles) + " |",
             "|" + "---|" * len(head) + "---:|" * len(COLUMNS)]
    for labels, metrics in rows.items():
        cells = list(labels) + [_fmt(metrics.get(key), spec) for _, key, spec in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _band_key(band: str) -> float:
    try:
        return float(band.split("-")[0])
    except ValueError:
        return math.inf


def _safe_name(name: str, taken: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("._") or "frame"
    candidate, n = stem, 1
    while candidate in taken:
        n += 1
        candidate = f"{stem}_{n}"
    taken.add(candidate)
    return candidate


def _percentiles(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    return float(np.percentile(v, 50)), float(np.percentile(v, 95))


def write_report(out_dir, results: Mapping[str, Mapping], visuals: Sequence[Visual],
                 distance_errors: Mapping[str, tuple[np.ndarray, np.ndarray]],
                 latencies: Mapping[str, Sequence[float]], title: str, command: str,
                 notes: Sequence[str] = (), setup: Sequence[str] = ()) -> Path:
    """Write ``report.md`` and its PNG figures into ``out_dir`` (created); return report.md's path.

    Args:
        results: the "results" object of the eval JSON, NAME -> metrics (see DESIGN.md), with
            optional "bands" (band -> metrics), "coverage" (pixels from the nearest input
            return -> metrics), "cameras" (camera -> metrics), "latency_ms"
            ({"p50", "p95"}), "dropped" and "answered".
        visuals: sampled frames, one strip ``frame_<name>.png`` each.
        distance_errors: NAME -> (ground-truth depth (K,) metres, absolute error (K,) metres).
        latencies: NAME -> per-frame end-to-end latencies in milliseconds (may be empty).
        title, command: report heading and the command line that produced it.
        notes: free lines appended as a list.
        setup: lines saying how the figures were made (ground truth and any distance cap, LiDAR
            input or mono mode, ...), listed under the command as "How the figures were made".
    Inputs are not modified.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = list(results)
    md = [f"# {title}", "", "Command:", "", "```", command, "```", ""]
    if setup:
        md += ["## How the figures were made", ""] + [f"- {line}" for line in setup] + [""]
    md += ["## Metrics", "",
           "Mean of the per-image metrics (KITTI devkit semantics: prediction holes are filled "
           "before scoring; only ground-truth pixels count).", ""]
    md += _table(["name"], {(n,): results[n] for n in names}) if names else ["No results."]

    bands = {(n, b): m for n in names for b, m in
             sorted(results[n].get("bands", {}).items(), key=lambda kv: _band_key(kv[0]))}
    if bands:
        md += ["", "### By distance band (ground-truth depth, metres)", ""]
        md += _table(["name", "band [m]"], bands)
    coverage = {(n, c): m for n in names for c, m in results[n].get("coverage", {}).items()}
    if coverage:  # in the summary's order: nearest first
        md += ["", "### By distance to the nearest LiDAR return of the input (pixels)", "",
               "0: the returns' own pixels; 4+: gaps and beyond the sweep, where the "
               "completion extrapolates.", ""]
        md += _table(["name", "from a return [px]"], coverage)
    cameras = {(n, c): m for n in names for c, m in results[n].get("cameras", {}).items()}
    if cameras:
        md += ["", "### By camera", ""]
        md += _table(["name", "camera"], cameras)

    md += ["", "## Latency and drops", ""]
    lat_rows = []
    for n in names + [k for k in latencies if k not in results]:
        r = results.get(n, {})
        p50, p95 = _percentiles(latencies.get(n, ()))
        if "latency_ms" in r:  # the JSON's figures win over the per-frame list
            p50, p95 = r["latency_ms"].get("p50"), r["latency_ms"].get("p95")
        if _fmt(p50, "{:.1f}") == "n/a" and "dropped" not in r and "answered" not in r:
            continue
        lat_rows.append(f"| {n} | {_fmt(p50, '{:.1f}')} | {_fmt(p95, '{:.1f}')} | "
                        f"{_fmt(r.get('answered'), '{:d}')} | {_fmt(r.get('dropped'), '{:d}')} |")
    if lat_rows:
        md += ["| name | p50 [ms] | p95 [ms] | answered | dropped |", "|---|---:|---:|---:|---:|"]
        md += lat_rows + [""]
    if _latency_hist(latencies, out / "latency_hist.png"):
        md += ["![latency histogram](latency_hist.png)"]
    else:
        md += ["No per-frame latencies were recorded: no latency histogram."]

    md += ["", "## Error against distance", ""]
    counts = _error_vs_distance(distance_errors, out / "error_vs_distance.png")
    if counts:
        md += ["Mean absolute error of the sampled pixels per "
               f"{DISTANCE_BIN_M:g} m bin of ground-truth depth; lower panel: pixels per bin. "
               "Sampled pixels: " + ", ".join(f"{n} {k}" for n, k in counts.items()) + ".", "",
               "![error against distance](error_vs_distance.png)"]
    else:
        md += ["No sampled errors: no error-against-distance figure."]

    md += ["", "## Frames", ""]
    if visuals:
        lo, hi = DEPTH_RANGE_M
        md += [f"Top to bottom: image | LiDAR over the darkened image | prediction per model | "
               f"ground truth | error map per model. Depth colours: turbo on inverse depth, "
               f"{lo:g} m (red) to {hi:g} m (blue), black = no value (bar at the bottom, metres); "
               f"on frames 300 px wide and more LiDAR points are drawn as 3x3 dots. Error map: "
               f"|prediction - ground truth| on ground-truth pixels, green 0 m through yellow to "
               f"red >= {ERROR_MAX_M:g} m (clipped); white = ground truth without prediction.", ""]
    else:
        md += ["No frames were sampled."]
    taken: set[str] = set()
    for visual in visuals:
        fname = f"frame_{_safe_name(visual.name, taken)}.png"
        strip = _frame_strip(visual, names)
        if not cv2.imwrite(str(out / fname), cv2.cvtColor(strip, cv2.COLOR_RGB2BGR)):
            raise OSError(f"could not write {out / fname}")
        md += [f"### {visual.name}", "", f"![{visual.name}]({fname})", ""]

    if notes:
        md += ["", "## Notes", ""] + [f"- {line}" for line in notes]
    path = out / "report.md"
    path.write_text("\n".join(md).rstrip() + "\n", encoding="utf-8")
    return path


__all__ = ["COLUMNS", "Visual", "write_report"]
