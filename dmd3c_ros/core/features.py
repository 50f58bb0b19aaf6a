"""What the classical step knows, per pixel: the residual student's seven feature maps.

The residual student (``training.residual``) does not look at the sparse map directly but at
these maps of its network-size inputs (network units, ``depth / depth_scale``, 0 = no value):

0. log classical depth x 0.5 (0 where the classical step has none)
1. where the classical step has a value (1 / 0)
2. log LiDAR depth x 0.5 (0 where no return)
3. where a return is (1 / 0)
4. the log ratio of a return to the classical answer at its own pixel (a see-through return
   that the nearest-wins morphology overrode shows here)
5. the spread (max - min, at most 5) of the classical log depth in a 7x7 window (a depth edge);
   pixels without a classical value neither widen it nor get one
6. the share of return pixels in a 9x9 window (in-image pixels only) x 4 (how far the nearest
   return is)

Training computes them inside the network in torch (``training.residual.classical_features``,
from the constants here). A shipped student whose spec names ``inputs.features`` takes them as
an input instead, and every runtime computes them here, in row bands side by side: OpenCV's
pools and logarithm on two cores cost a third of what the same operators cost inside ONNX
Runtime's graph (``docs/benchmarks.md``, "Round 9"). Both agree to float32 rounding (tested).
"""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from dmd3c_ros.core.strips import band_count, run_bands

FEATURES = 7
LOG_FLOOR = 1e-4        # network units: depths are clamped to it before the logarithm
LOG_SCALE = 0.5         # maps 0 and 2
MISSING_OFFSET = 20.0   # log units: a pixel without a value, pushed out of the spread's reach
SPREAD_WINDOW = 7
SPREAD_MAX = 5.0
DENSITY_WINDOW = 9
DENSITY_SCALE = 4.0
MARGIN = max(SPREAD_WINDOW, DENSITY_WINDOW) // 2  # rows of context a band reads on each side
MIN_BAND = 64           # rows

_SPREAD_KERNEL = np.ones((SPREAD_WINDOW, SPREAD_WINDOW), np.uint8)


def residual_features(sparse: np.ndarray, classical: np.ndarray, *,
                      out: np.ndarray | None = None, threads: int | None = None) -> np.ndarray:
    """The seven maps (module docstring) of one frame.

    Args:
        sparse: (h, w) float32 LiDAR depth in network units, 0 = no return.
        classical: (h, w) float32 classical completion in network units, 0 = no value.
        out: (7, h, w) float32 to write into (e.g. a slice of the network's input batch);
            None = a new array.
        threads: row bands computed side by side (None: one per usable core; 1: in the calling
            thread only). The answer does not depend on it.
    Returns:
        ``out``.
    """
    sparse = np.asarray(sparse, dtype=np.float32)
    classical = np.asarray(classical, dtype=np.float32)
    if sparse.ndim != 2 or sparse.shape != classical.shape:
        raise ValueError(f"sparse and classical must be one (h, w) shape, got {sparse.shape} "
                         f"and {classical.shape}")
    height, width = sparse.shape
    if out is None:
        out = np.empty((FEATURES, height, width), np.float32)
    elif out.shape != (FEATURES, height, width) or out.dtype != np.float32:
        raise ValueError(f"out must be ({FEATURES}, {height}, {width}) float32, got "
                         f"{out.shape} {out.dtype}")

    def band(lo: int, hi: int, start: int, stop: int) -> None:
        _band(sparse[lo:hi], classical[lo:hi], out[:, start:stop], start - lo, stop - lo,
              _inverse_window_sizes(start, stop, height, width))

    run_bands(height, band_count(threads, height, MIN_BAND), MARGIN, band)
    return out


def _log_masked(values: np.ndarray, mask: np.ndarray, out: np.ndarray) -> np.ndarray:
    """log(max(values, LOG_FLOOR)) where ``mask`` (float 1 / 0), 0 elsewhere, into ``out``."""
    cv2.log(cv2.max(values, LOG_FLOOR), out)
    out *= mask
    return out


def _band(sparse: np.ndarray, classical: np.ndarray, out: np.ndarray, first: int, last: int,
          inverse_sizes: np.ndarray) -> None:
    """The maps of a band's own rows ``[first, last)`` of ``sparse`` / ``classical`` (the band
    with its context rows) into ``out`` (7, last - first, w). The windows reach into the
    context rows; where the image ends they see no more than the image (as the network's
    padded pools)."""
    own = slice(first, last)
    cmask = np.empty(classical.shape, np.float32)
    np.greater(classical, 0, out=cmask, casting="unsafe")   # bool -> 1.0 / 0.0
    log_c = _log_masked(classical, cmask, np.empty(classical.shape, np.float32))
    smask = out[3]
    np.greater(sparse[own], 0, out=smask, casting="unsafe")
    log_s = _log_masked(sparse[own], smask, out[2])
    np.subtract(log_s, log_c[own], out=out[4])
    out[4] *= smask
    log_s *= np.float32(LOG_SCALE)                          # map 2, in place
    np.multiply(log_c[own], np.float32(LOG_SCALE), out=out[0])
    out[1] = cmask[own]
    # The spread: max over the window of (log_c - offset where missing) minus its min of
    # (log_c + offset where missing); dilate / erode ignore what lies beyond the image.
    offset = np.subtract(np.float32(1.0), cmask)
    offset *= np.float32(MISSING_OFFSET)
    high = cv2.dilate(log_c - offset, _SPREAD_KERNEL, borderType=cv2.BORDER_CONSTANT,
                      borderValue=-np.inf)
    low = cv2.erode(log_c + offset, _SPREAD_KERNEL, borderType=cv2.BORDER_CONSTANT,
                    borderValue=np.inf)
    spread = out[5]
    np.subtract(high[own], low[own], out=spread)
    np.clip(spread, 0.0, SPREAD_MAX, out=spread)
    spread *= out[1]
    # The density: returns in the window over the window's in-image pixels.
    returns = np.greater(sparse, 0).view(np.uint8)
    counts = cv2.boxFilter(returns, cv2.CV_32F, (DENSITY_WINDOW, DENSITY_WINDOW),
                           normalize=False, borderType=cv2.BORDER_CONSTANT)
    np.multiply(counts[own], inverse_sizes, out=out[6])


@lru_cache(maxsize=32)
def _inverse_window_sizes(lo: int, hi: int, height: int, width: int) -> np.ndarray:
    """DENSITY_SCALE / (in-image pixels of each pixel's window), rows [lo, hi) of the image
    (read-only: one array per band of an image size serves every frame)."""
    half = DENSITY_WINDOW // 2
    rows = np.arange(lo, hi)
    cols = np.arange(width)
    in_rows = np.minimum(rows + half, height - 1) - np.maximum(rows - half, 0) + 1
    in_cols = np.minimum(cols + half, width - 1) - np.maximum(cols - half, 0) + 1
    inverse = (np.float32(DENSITY_SCALE) / (in_rows[:, None] * in_cols[None, :])).astype(
        np.float32)
    inverse.flags.writeable = False
    return inverse


__all__ = ["FEATURES", "residual_features"]
