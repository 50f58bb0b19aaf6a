"""The report's frame strips: image | LiDAR | prediction per model | ground truth | error map per
model, one panel under another, drawn with OpenCV pixel for pixel with fixed colour scales so
that frames and models compare (RGB throughout, BGR only when written)."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import cv2
import numpy as np

from dmd3c_ros.core.colorize import colorize_depth

DEPTH_RANGE_M = (1.0, 80.0)  # fixed colour range of every depth panel, metres
ERROR_MAX_M = 3.0  # error map colour scale 0..ERROR_MAX_M metres, larger errors clipped
MIN_PANEL_WIDTH = 320  # smaller frames are enlarged (nearest neighbour) so labels stay readable


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


def _valid(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


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


__all__ = ["DEPTH_RANGE_M", "ERROR_MAX_M", "MIN_PANEL_WIDTH", "Visual"]
