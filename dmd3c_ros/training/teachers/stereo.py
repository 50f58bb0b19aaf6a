"""A metric stereo teacher: OpenCV semi-global block matching (SGBM) on a rectified pair.

depth = fx * B / d (metres) for fx in pixels, baseline B in metres and disparity d in pixels of the
left (reference) image; pixels without a disparity are NaN.

SGBM parameters (OpenCV ``StereoSGBM_create``), defaults chosen for KITTI-like 1242x375 pairs from
the usual rules of thumb (not tuned on the real samples):

- ``num_disparities`` (192): search range in pixels, a multiple of 16; KITTI's nearest objects
  reach about 150-230 px. ``min_disparity`` (0) is its start.
- ``block_size`` (5): odd matching window side. The smoothness penalties follow OpenCV's guide,
  ``P1 = 8 * channels * block_size**2`` (disparity changes of 1 px) and
  ``P2 = 32 * channels * block_size**2`` (larger jumps).
- ``uniqueness_ratio`` (10 %): the best cost must beat the second best by this margin.
- ``speckle_window`` (100 px) / ``speckle_range`` (2 px): connected blobs smaller than the window
  whose disparity varies by more than the range are removed.
- ``disp12_max_diff`` (1 px): OpenCV's internal left-right check; -1 disables it.
- ``mode`` (``"sgbm_3way"``): ``"sgbm"`` (5 paths), ``"hh"`` (8 paths, slower) or ``"sgbm_3way"``.
- ``pad_left`` (True): OpenCV leaves the leftmost ``num_disparities`` columns without a value; the
  pair is padded on the left by that many replicated columns and cropped back, which gives those
  columns a value whenever their match lies inside the right image.
- ``lr_check`` (False) / ``lr_tolerance`` (1 px): an explicit left-right consistency check with
  a second matcher run on the mirrored pair; disparities that disagree are dropped (NaN).
"""
from __future__ import annotations

import cv2
import numpy as np

from .base import METRIC_DEPTH, Teacher, check_rgb

SGBM_MODES = {"sgbm": cv2.STEREO_SGBM_MODE_SGBM, "hh": cv2.STEREO_SGBM_MODE_HH,
              "sgbm_3way": cv2.STEREO_SGBM_MODE_SGBM_3WAY}
SGBM_FIXED_POINT = 16.0  # OpenCV returns disparity x 16 as int16


class StereoTeacher(Teacher):
    """SGBM stereo on rectified (H, W, 3) uint8 pairs -> metric depth (see module docstring)."""

    kind = METRIC_DEPTH

    def __init__(self, *, num_disparities: int = 192, min_disparity: int = 0, block_size: int = 5,
                 uniqueness_ratio: int = 10, speckle_window: int = 100, speckle_range: int = 2,
                 disp12_max_diff: int = 1, mode: str = "sgbm_3way", pad_left: bool = True,
                 lr_check: bool = False, lr_tolerance: float = 1.0) -> None:
        if num_disparities <= 0 or num_disparities % 16:
            raise ValueError(f"num_disparities must be a positive multiple of 16, got "
                             f"{num_disparities}")
        if block_size < 1 or block_size % 2 == 0:
            raise ValueError(f"block_size must be odd and >= 1, got {block_size}")
        if mode not in SGBM_MODES:
            raise ValueError(f"mode must be one of {sorted(SGBM_MODES)}, got {mode!r}")
        self.params = dict(minDisparity=int(min_disparity), numDisparities=int(num_disparities),
                           blockSize=int(block_size), P1=8 * 3 * block_size ** 2,
                           P2=32 * 3 * block_size ** 2, disp12MaxDiff=int(disp12_max_diff),
                           uniquenessRatio=int(uniqueness_ratio),
                           speckleWindowSize=int(speckle_window), speckleRange=int(speckle_range),
                           mode=SGBM_MODES[mode])
        self.pad_left, self.lr_check, self.lr_tolerance = pad_left, lr_check, float(lr_tolerance)
        self.name = f"stereo_sgbm_{num_disparities}"

    def _match(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """One SGBM run -> (H, W) float32 disparity in pixels, NaN = none."""
        pad = self.params["numDisparities"] + max(self.params["minDisparity"], 0) \
            if self.pad_left else 0
        if pad:
            left = cv2.copyMakeBorder(left, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
            right = cv2.copyMakeBorder(right, 0, 0, pad, 0, cv2.BORDER_REPLICATE)
        raw = cv2.StereoSGBM_create(**self.params).compute(left, right)[:, pad:]
        disparity = raw.astype(np.float32) / SGBM_FIXED_POINT  # fixed point to pixels
        disparity[raw < (self.params["minDisparity"]) * SGBM_FIXED_POINT] = np.nan  # no match
        return disparity

    def disparity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """Rectified (H, W, 3) uint8 pair -> (H, W) float32 left disparity in pixels, NaN = none."""
        left, right = check_rgb(left, "left"), check_rgb(right, "right")
        if left.shape != right.shape:
            raise ValueError(f"left {left.shape} and right {right.shape} images differ in size")
        disparity = self._match(left, right)
        if self.lr_check:
            # Right-view disparity: match the mirrored pair (mirrored right as the reference).
            right_disp = self._match(right[:, ::-1].copy(), left[:, ::-1].copy())[:, ::-1]
            h, w = disparity.shape
            cols = np.arange(w, dtype=np.float32)[None, :] - disparity       # x_right = x - d
            xr = np.rint(np.nan_to_num(cols, nan=-1.0)).astype(np.int64)
            inside = (xr >= 0) & (xr < w)
            back = np.full_like(disparity, np.nan)
            rows = np.broadcast_to(np.arange(h)[:, None], (h, w))
            back[inside] = right_disp[rows[inside], xr[inside]]
            with np.errstate(invalid="ignore"):
                disparity[~(np.abs(disparity - back) <= self.lr_tolerance)] = np.nan
        return disparity

    def predict(self, rgb: np.ndarray, *, right: np.ndarray | None = None,
                focal_px: float | None = None, baseline_m: float | None = None,
                **extras) -> np.ndarray:
        """Left (H, W, 3) uint8 + ``right`` image -> (H, W) float32 depth in metres, NaN = none.

        ``focal_px``: fx of the rectified left camera in pixels; ``baseline_m``: camera distance.
        """
        if right is None or focal_px is None or baseline_m is None:
            raise ValueError("StereoTeacher.predict needs right=, focal_px= and baseline_m=")
        if not (focal_px > 0 and baseline_m > 0):
            raise ValueError(f"focal_px and baseline_m must be > 0, got {focal_px}, {baseline_m}")
        disparity = self.disparity(rgb, right)
        depth = np.full(disparity.shape, np.nan, np.float32)
        valid = disparity > 0  # NaN compares False; zero disparity is infinitely far
        depth[valid] = focal_px * baseline_m / disparity[valid]  # pixels to metres
        return depth


def disparity_errors(pred: np.ndarray, gt: np.ndarray) -> dict:
    """KITTI 2015 disparity errors of ``pred`` (px, NaN = none) against ``gt`` (px, 0 = none).

    Returns ``coverage`` (share of gt pixels with a prediction), ``d1`` and ``epe`` on the covered
    gt pixels (D1: |d - gt| > 3 px and > 5 % of gt), ``d1_all`` counting missing pixels as outliers,
    and ``n_gt`` (int).
    """
    pred = np.asarray(pred, np.float64)
    gt = np.asarray(gt, np.float64)
    has_gt = np.isfinite(gt) & (gt > 0)
    covered = has_gt & np.isfinite(pred)
    err = np.abs(pred[covered] - gt[covered])
    outlier = (err > 3.0) & (err > 0.05 * gt[covered])
    n_gt, n_cov = int(has_gt.sum()), int(covered.sum())
    return {"n_gt": n_gt, "coverage": n_cov / max(n_gt, 1),
            "d1": float(outlier.mean()) if n_cov else float("nan"),
            "epe": float(err.mean()) if n_cov else float("nan"),
            "d1_all": (int(outlier.sum()) + n_gt - n_cov) / max(n_gt, 1)}
