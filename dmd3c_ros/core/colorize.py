"""Depth images for people to look at."""
from __future__ import annotations

import cv2
import numpy as np


def colorize_depth(depth: np.ndarray, min_depth: float | None = None,
                   max_depth: float | None = None) -> np.ndarray:
    """(H, W) metres (NaN or <= 0 = no value) -> (H, W, 3) uint8 RGB, near = warm, far = cool,
    black = no value. The range defaults to the 1st-99th percentile of the valid depths."""
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    rgb = np.zeros(depth.shape + (3,), np.uint8)
    if not valid.any():
        return rgb
    lo = float(np.percentile(depth[valid], 1)) if min_depth is None else float(min_depth)
    hi = float(np.percentile(depth[valid], 99)) if max_depth is None else float(max_depth)
    hi = max(hi, lo + 1e-3)
    # Inverse depth spreads the colours over the near range, where detail matters.
    inv = (1.0 / np.clip(depth, lo, hi) - 1.0 / hi) / (1.0 / lo - 1.0 / hi)
    scaled = np.where(valid, inv * 255.0, 0).astype(np.uint8)
    colored = cv2.cvtColor(cv2.applyColorMap(scaled, cv2.COLORMAP_TURBO), cv2.COLOR_BGR2RGB)
    rgb[valid] = colored[valid]
    return rgb
