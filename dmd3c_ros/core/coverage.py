"""Where a LiDAR sweep covers a camera image: the pixels at or below the top-most return of
their column.

A spinning LiDAR sees a band of elevations (HDL-64: +2 to -25 degrees); a road camera sees
above it. Above the sweep, no return (and no LiDAR-made ground truth, such as KITTI's) says
anything about depth: the classical completion carries each column's top-most value upwards,
an image network guesses. The same rule runs inside the graph of the composite student
(:func:`dmd3c_ros.training.above_lidar.coverage`, torch); this is the numpy version for
evaluation.
"""
from __future__ import annotations

import cv2
import numpy as np

WIDTH = 61    # columns: a return covers this many columns around it (30 each side)
MARGIN = 10   # rows: and this many rows above it


def lidar_coverage(sparse: np.ndarray, *, width: int = WIDTH, margin: int = MARGIN) -> np.ndarray:
    """(H, W) bool: True where some return lies in the pixel's column band (``width`` columns
    centred on it) at most ``margin`` rows below the pixel, or anywhere above it.

    Args:
        sparse: (H, W) float metres, 0 / NaN / negative = no return. Not modified.
    """
    if width < 1 or width % 2 == 0 or margin < 0:
        raise ValueError(f"width must be odd and positive and margin >= 0, got {width}, {margin}")
    with np.errstate(invalid="ignore"):
        valid = (np.asarray(sparse) > 0).astype(np.uint8)
    band = cv2.dilate(valid, np.ones((1, width), np.uint8))          # the column band
    below = np.maximum.accumulate(band, axis=0)                        # a return at or above
    # A return covers ``margin`` rows above it: shift the covered region up by ``margin``.
    covered = np.zeros_like(below)
    covered[:below.shape[0] - margin] = below[margin:]
    covered[below.shape[0] - margin:] = below[-1:]
    return covered.astype(bool)
