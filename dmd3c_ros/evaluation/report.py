"""The human half of `dmd3c eval`: a Markdown report with PNG figures next to the JSON.

Frame strips are drawn with OpenCV (pixel for pixel, fixed colour scales so that frames and
models compare); the two charts (error against distance, latency histogram) with matplotlib's Agg
canvas, without pyplot, so no global backend state is touched. Nothing here imports rclpy.
"""
from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from dmd3c_ros.core.colorize import colorize_depth

DEPTH_RANGE_M = (1.0, 80.0)  # fixed colour range of every depth panel, metres
ERROR_MAX_M = 3.0  # error map colour scale 0..ERROR_MAX_M metres, larger errors clipped
DISTANCE_BIN_M = 5.0  # bin width of the error-against-distance figure, metres
MIN_PANEL_WIDTH = 320  # smaller frames are enlarged (nearest neighbour) so labels stay readable
# (column title, result key, format) of every metrics table.
COLUMNS = (("RMSE [mm]", "rmse_mm", "{:.1f}"), ("MAE [mm]", "mae_mm", "{:.1f}"),
           ("iRMSE [1/km]", "irmse_per_km", "{:.2f}"), ("iMAE [1/km]", "imae_per_km", "{:.2f}"),
           ("AbsRel", "abs_rel", "{:.4f}"), ("δ1", "delta1", "{:.4f}"),
           ("frames", "frames", "{:d}"))


@dataclass
class Visual:
    """One sampled frame for the report.

    rgb: (H, W, 3) uint8 RGB (or (H, W) uint8 grey); sparse: (H, W) float32 metres, 0 = no point;
    gt: (H, W) float32 metres, 0 = no ground truth; predictions: name -> (H, W) float32 metres,
    NaN = no value.
    """
    name: str
    rgb: np.ndarray
    sparse: np.ndarray
    gt: np.ndarray
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


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


def _valid(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def _percentiles(values) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan
    return float(np.percentile(v, 50)), float(np.percentile(v, 95))


# ---- frame strips (OpenCV, RGB throughout, BGR only when written) ----

def _error_colors(err: np.ndarray) -> np.ndarray:
    """(N,) metres -> (N, 3) uint8 RGB: green (0 m) through yellow to red (>= ERROR_MAX_M)."""
    hue = np.linspace(60, 0, 256).astype(np.uint8)  # OpenCV hue: 60 = green, 30 = yellow, 0 = red
    hsv = np.stack([hue, np.full(256, 255, np.uint8), np.full(256, 255, np.uint8)], -1)
    lut = cv2.cvtColor(hsv[None], cv2.COLOR_HSV2RGB)[0]
    t = np.clip(np.nan_to_num(np.asarray(err, np.float64), nan=ERROR_MAX_M) / ERROR_MAX_M, 0, 1)
    return lut[np.round(t * 255).astype(np.intp)]


def _dots(values: np.ndarray, valid: np.ndarray, kernel: int) -> tuple[np.ndarray, np.ndarray]:
    """Grow isolated pixels into kernel x kernel dots for visibility only; the nearer (smaller)
    value wins where dots overlap, like a z-buffer. Returns (values, valid), new arrays."""
    if kernel <= 1:
        return values.copy(), valid.copy()
    grown = cv2.erode(np.where(valid, values, np.inf).astype(np.float32),
                      np.ones((kernel, kernel), np.uint8))
    out_valid = valid | np.isfinite(grown)
    return np.where(valid, values, grown), out_valid


def _panels(visual: Visual, order: Sequence[str]) -> list[tuple[str, np.ndarray]]:
    rgb = np.asarray(visual.rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)
    rgb = rgb[..., :3].astype(np.uint8)
    h, w = rgb.shape[:2]
    sparse = np.asarray(visual.sparse, dtype=np.float32)
    gt = np.asarray(visual.gt, dtype=np.float32)
    for what, arr in [("sparse", sparse), ("gt", gt)] + [
            (f"prediction {k!r}", np.asarray(v)) for k, v in visual.predictions.items()]:
        if arr.shape != (h, w):
            raise ValueError(f"visual {visual.name!r}: {what} is {arr.shape}, image is {(h, w)}")
    kernel = 3 if w >= 300 else 1
    lo, hi = DEPTH_RANGE_M
    gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    dark = np.repeat((gray * 0.35).astype(np.uint8)[..., None], 3, axis=-1)

    lidar_valid = _valid(sparse)
    d, v = _dots(sparse, lidar_valid, kernel)
    lidar = np.where(v[..., None], colorize_depth(np.where(v, d, 0), lo, hi), dark)
    gt_valid = _valid(gt)
    panels = [("image", rgb),
              (f"LiDAR ({int(lidar_valid.sum())} points)", lidar)]
    preds = [(n, np.asarray(visual.predictions[n], dtype=np.float32)) for n in order
             if n in visual.predictions]
    panels += [(f"prediction: {n}", colorize_depth(p, lo, hi)) for n, p in preds]
    panels.append((f"ground truth ({int(gt_valid.sum())} px)", colorize_depth(gt, lo, hi)))
    for n, p in preds:
        has_pred = gt_valid & _valid(p)
        err = np.where(has_pred, np.abs(np.where(has_pred, p, 0) - gt), np.nan)
        panel = dark.copy()
        panel[gt_valid] = 255  # white: ground truth without prediction
        panel[has_pred] = _error_colors(err[has_pred])
        mae = float(np.nanmean(err)) if has_pred.any() else math.nan
        panels.append((f"|error| {n} (0-{ERROR_MAX_M:g} m, mean {mae:.2f} m)", panel))
    return panels


def _label(panel: np.ndarray, text: str) -> np.ndarray:
    """The panel under a dark title bar holding ``text``."""
    w = panel.shape[1]
    scale = float(np.clip(w / 1800.0, 0.4, 0.7))
    (_, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    bar = np.full((th + base + 8, w, 3), 32, np.uint8)
    cv2.putText(bar, text, (5, th + 4), cv2.FONT_HERSHEY_SIMPLEX, scale, (235, 235, 235), 1,
                cv2.LINE_AA)
    return np.vstack([bar, panel])


def _legend(width: int) -> np.ndarray:
    """Colour bars of the depth panels (inverse-depth spacing) and of the error maps."""
    lo, hi = DEPTH_RANGE_M
    half = width // 2 - 20
    frac = np.linspace(0.0, 1.0, half)
    depth_row = 1.0 / (1.0 / lo + frac * (1.0 / hi - 1.0 / lo))  # near (left) to far (right)
    depth_bar = np.repeat(colorize_depth(depth_row[None].astype(np.float32), lo, hi), 14, axis=0)
    err_bar = np.repeat(_error_colors(frac * ERROR_MAX_M)[None], 14, axis=0)
    scale = float(np.clip(width / 1800.0, 0.35, 0.6))
    out = np.full((44, width, 3), 32, np.uint8)
    out[4:18, 10:10 + half] = depth_bar
    out[4:18, width - 10 - half:width - 10] = err_bar
    ticks: list[tuple[int, float]] = []  # (x, depth): greedy, at least 40 px apart, far end kept
    for t in [c for c in (lo, 1.5, 2, 3, 5, 10, 20, 40) if lo <= c < hi] + [hi]:
        x = 10 + int((1.0 / t - 1.0 / lo) / (1.0 / hi - 1.0 / lo) * (half - 1))
        if t == hi:
            ticks = [(tx, td) for tx, td in ticks if x - tx >= 40]
        elif ticks and x - ticks[-1][0] < 40:
            continue
        ticks.append((x, t))
    for x, t in ticks:
        cv2.putText(out, f"{t:g}", (min(x, 10 + half - 22), 36), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (235, 235, 235), 1, cv2.LINE_AA)
    for t in np.linspace(0.0, ERROR_MAX_M, 4):
        x = width - 10 - half + int(t / ERROR_MAX_M * (half - 1))
        cv2.putText(out, f"{t:g}", (min(x, width - 32), 36), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (235, 235, 235), 1, cv2.LINE_AA)
    return out


def _frame_strip(visual: Visual, order: Sequence[str]) -> np.ndarray:
    """All panels of one Visual stacked vertically, (H', W', 3) uint8 RGB."""
    panels = _panels(visual, order)
    w = panels[0][1].shape[1]
    factor = max(1, math.ceil(MIN_PANEL_WIDTH / w))  # enlargement only, for readability
    rows = []
    for text, panel in panels:
        if factor > 1:
            panel = cv2.resize(panel, None, fx=factor, fy=factor, interpolation=cv2.INTER_NEAREST)
        rows.append(_label(panel, text))
    rows.append(_legend(w * factor))
    return np.vstack(rows)


# ---- charts (matplotlib Agg canvas, no pyplot) ----

def _save_chart(fig, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=110)


def _error_vs_distance(distance_errors: Mapping[str, tuple], path: Path) -> dict[str, int] | None:
    """Mean |error| per DISTANCE_BIN_M bin per NAME, with pixel counts. Returns pixels per NAME,
    None (and no figure) when no NAME has a finite sample."""
    clean = {}
    for name, (gt, err) in distance_errors.items():
        gt = np.asarray(gt, dtype=np.float64).ravel()
        err = np.abs(np.asarray(err, dtype=np.float64).ravel())
        if gt.shape != err.shape:
            raise ValueError(f"distance_errors[{name!r}]: {gt.shape} depths, {err.shape} errors")
        ok = np.isfinite(gt) & (gt > 0) & np.isfinite(err)
        if ok.any():
            clean[name] = (gt[ok], err[ok])
    if not clean:
        return None
    from matplotlib.figure import Figure
    top = max(float(g.max()) for g, _ in clean.values())
    edges = np.arange(0.0, math.floor(top / DISTANCE_BIN_M) * DISTANCE_BIN_M + DISTANCE_BIN_M * 1.5,
                      DISTANCE_BIN_M)
    centres = 0.5 * (edges[:-1] + edges[1:])
    fig = Figure(figsize=(8, 5.5))
    ax_err, ax_n = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    for name, (gt, err) in clean.items():
        idx = np.clip(np.digitize(gt, edges) - 1, 0, len(centres) - 1)
        counts = np.bincount(idx, minlength=len(centres))
        sums = np.bincount(idx, weights=err, minlength=len(centres))
        mean = np.where(counts > 0, sums / np.maximum(counts, 1), np.nan)
        ax_err.plot(centres, mean, marker="o", label=name)
        ax_n.step(centres, counts, where="mid", label=name)
    ax_err.set_ylabel("mean |error| [m]")
    ax_err.set_title(f"Absolute error against ground-truth distance ({DISTANCE_BIN_M:g} m bins)")
    ax_err.grid(alpha=0.3)
    ax_err.legend()
    ax_n.set_ylabel("pixels")
    ax_n.set_yscale("log")
    ax_n.set_xlabel("ground-truth depth [m]")
    ax_n.grid(alpha=0.3)
    fig.tight_layout()
    _save_chart(fig, path)
    return {name: int(g.size) for name, (g, _) in clean.items()}


def _latency_hist(latencies: Mapping[str, Sequence[float]], path: Path) -> bool:
    clean = {n: v[np.isfinite(v)] for n, v in
             ((n, np.asarray(v, dtype=np.float64).ravel()) for n, v in latencies.items())}
    clean = {n: v for n, v in clean.items() if v.size}
    if not clean:
        return False
    from matplotlib.figure import Figure
    allv = np.concatenate(list(clean.values()))
    lo, hi = float(allv.min()), float(allv.max())
    if hi - lo < 1e-3:  # all frames equally fast: one visible bar
        lo, hi = lo - 0.5, hi + 0.5
    bins = np.linspace(lo, hi, 41)
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    for i, (name, v) in enumerate(clean.items()):
        colour = f"C{i % 10}"
        ax.hist(v, bins=bins, histtype="stepfilled", alpha=0.35, color=colour,
                label=f"{name} (n={v.size})")
        ax.axvline(float(np.percentile(v, 50)), color=colour, linestyle="--", linewidth=1)
        ax.axvline(float(np.percentile(v, 95)), color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("latency per frame [ms]  (dashed: p50, dotted: p95)")
    ax.set_ylabel("frames")
    ax.set_title("Latency histogram")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    _save_chart(fig, path)
    return True


# ---- the report ----

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
