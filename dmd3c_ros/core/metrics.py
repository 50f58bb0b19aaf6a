"""Depth metrics: the one implementation used by training, evaluation and the bag tool.

Semantics follow the KITTI depth-completion devkit (evaluate_depth.cpp):
- only pixels with ground truth are scored;
- prediction pixels without a value are first filled by the devkit's background interpolation
  (``interpolate_background``);
- RMSE and MAE are reported in millimetres, iRMSE and iMAE on inverse depth in 1/km;
- figures are computed per image and averaged over images (``average_metrics``).
AbsRel, SqRel and the threshold accuracies delta_k (max(pred/gt, gt/pred) < 1.25^k) use the
usual (Eigen et al.) definitions on the same pixels.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import cv2
import numpy as np

METRIC_NAMES = ("rmse_mm", "mae_mm", "irmse_per_km", "imae_per_km",
                "abs_rel", "sq_rel", "delta1", "delta2", "delta3")


def _valid(depth: np.ndarray) -> np.ndarray:
    return np.isfinite(depth) & (depth > 0)


def _fill_rows(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row-wise devkit fill: gaps between two valid pixels take the smaller of the two bounding
    depths (background, not foreground, bleeds into a gap); pixels left of the first and right of
    the last valid pixel take that pixel's depth. Rows without any valid pixel stay invalid."""
    height, width = values.shape
    cols = np.broadcast_to(np.arange(width), (height, width))
    # Index of the nearest valid pixel at or to the left / right of each pixel (-1 / width: none).
    left = np.maximum.accumulate(np.where(valid, cols, -1), axis=1)
    right = np.minimum.accumulate(np.where(valid, cols, width)[:, ::-1], axis=1)[:, ::-1]
    rows = np.arange(height)[:, None]
    left_value = values[rows, np.clip(left, 0, width - 1)]
    right_value = values[rows, np.clip(right, 0, width - 1)]
    has_left, has_right = left >= 0, right < width
    filled = np.where(has_left & has_right, np.minimum(left_value, right_value),
                      np.where(has_left, left_value, right_value))
    ok = valid | has_left | has_right
    return np.where(valid, values, filled), ok


def interpolate_background(prediction: np.ndarray) -> np.ndarray:
    """Fill prediction pixels without a value (NaN or <= 0) as the KITTI devkit does.

    Row pass as in ``_fill_rows``; then, per column, rows above the first and below the last
    filled row take that row's value. Rows with no value at all that lie between filled rows stay
    unfilled: the devkit scores them as depth -1 m, and so does ``depth_metrics``.

    Args:
        prediction: (H, W) float metres.
    Returns:
        (H, W) float64 metres; -1 where the devkit leaves a pixel unfilled.
    """
    values = np.asarray(prediction, dtype=np.float64)
    valid = _valid(values)
    values = np.where(valid, values, 0.0)
    values, ok = _fill_rows(values, valid)
    # Column pass: only extrapolation to the top and to the bottom of each column.
    height = values.shape[0]
    row_idx = np.arange(height)[:, None]
    any_ok = ok.any(axis=0)
    first = np.where(any_ok, ok.argmax(axis=0), 0)
    last = np.where(any_ok, height - 1 - ok[::-1].argmax(axis=0), height - 1)
    cols = np.arange(values.shape[1])
    above = (row_idx < first) & any_ok
    below = (row_idx > last) & any_ok
    values = np.where(above, values[first, cols], values)
    values = np.where(below, values[last, cols], values)
    ok = ok | above | below
    return np.where(ok, values, -1.0)


def depth_metrics(prediction: np.ndarray, ground_truth: np.ndarray, *,
                  fill_missing: bool = True) -> dict[str, float]:
    """Per-image metrics of a dense prediction against (semi-)dense ground truth.

    Args:
        prediction: (H, W) float metres; NaN or <= 0 = no value.
        ground_truth: (H, W) float metres; NaN or <= 0 = no value (not scored).
        fill_missing: fill prediction holes as the devkit does (True) or score only pixels where
            both have a value (False).
    Returns:
        dict with METRIC_NAMES plus ``pixels`` (number scored). With no pixel to score every
        metric is NaN.
    """
    prediction, ground_truth = _pair(prediction, ground_truth)
    mask = _valid(ground_truth)
    if fill_missing:
        pred = interpolate_background(prediction)[mask]
    else:
        mask &= _valid(prediction)
        pred = prediction[mask]
    return _figures(pred, ground_truth[mask])


def _pair(prediction, ground_truth) -> tuple[np.ndarray, np.ndarray]:
    """Both as float64 arrays of one shape (a ValueError otherwise)."""
    prediction = np.asarray(prediction, dtype=np.float64)
    ground_truth = np.asarray(ground_truth, dtype=np.float64)
    if prediction.shape != ground_truth.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {ground_truth.shape} "
                         "differ in shape")
    return prediction, ground_truth


def paired_metrics(prediction, ground_truth) -> dict[str, float]:
    """The metrics of paired depths (metres, any matching shapes, e.g. (K,) values at the
    ground truth's pixels), every pair scored: METRIC_NAMES plus ``pixels``."""
    return _figures(*_pair(prediction, ground_truth))


def _figures(pred: np.ndarray, gt: np.ndarray) -> dict[str, float]:
    """The metrics of paired (K,) float64 prediction and ground-truth depths (metres)."""
    if gt.size == 0:
        return {**{name: float("nan") for name in METRIC_NAMES}, "pixels": 0}
    err = pred - gt
    with np.errstate(divide="ignore", invalid="ignore"):
        inv_err = 1000.0 / pred - 1000.0 / gt  # 1/m to 1/km
        ratio = np.maximum(pred / gt, gt / pred)
    ratio = np.where(pred > 0, ratio, np.inf)
    return {
        "rmse_mm": float(np.sqrt(np.mean(err ** 2)) * 1000.0),  # m to mm
        "mae_mm": float(np.mean(np.abs(err)) * 1000.0),  # m to mm
        "irmse_per_km": float(np.sqrt(np.mean(inv_err ** 2))),
        "imae_per_km": float(np.mean(np.abs(inv_err))),
        "abs_rel": float(np.mean(np.abs(err) / gt)),
        "sq_rel": float(np.mean(err ** 2 / gt)),
        "delta1": float(np.mean(ratio < 1.25)),
        "delta2": float(np.mean(ratio < 1.25 ** 2)),
        "delta3": float(np.mean(ratio < 1.25 ** 3)),
        "pixels": int(gt.size),
    }


def average_metrics(per_image: Iterable[Mapping[str, float]]) -> dict[str, float]:
    """Mean of per-image metrics over images (images without scored pixels are skipped).

    Returns the means of METRIC_NAMES plus ``frames`` (images averaged)."""
    rows = [m for m in per_image if m.get("pixels", 1) > 0]
    result: dict[str, float] = {name: float(np.mean([m[name] for m in rows])) if rows
                                else float("nan") for name in METRIC_NAMES}
    result["frames"] = len(rows)
    return result


# Distance bands on ground-truth depth (metres): [low, high); the last band includes 80 m.
BANDS = (("0-20", 0.0, 20.0), ("20-40", 20.0, 40.0), ("40-80", 40.0, 80.0))


def band_masks(gt: np.ndarray) -> dict[str, np.ndarray]:
    """Band name -> (H, W) bool mask of ground-truth pixels (finite, > 0) in that band."""
    gt = np.asarray(gt, dtype=np.float64)
    valid = np.isfinite(gt) & (gt > 0)
    masks = {}
    for index, (label, low, high) in enumerate(BANDS):
        upper = gt <= high if index == len(BANDS) - 1 else gt < high
        masks[label] = valid & (gt >= low) & upper
    return masks


def masked_metrics(prediction: np.ndarray, gt: np.ndarray,
                   masks: Mapping) -> dict:
    """{key: depth_metrics on the ground-truth pixels of that key's (H, W) bool mask} (keys:
    labels, or any hashable), the prediction's holes filled once for all of them."""
    prediction, gt = _pair(prediction, gt)
    filled = interpolate_background(prediction)
    valid = _valid(gt)
    return {label: _figures(filled[mask & valid], gt[mask & valid])
            for label, mask in masks.items()}


def frame_metrics(prediction: np.ndarray, gt: np.ndarray):
    """(metrics, {band: metrics}) of one (H, W) prediction (NaN = none) against ground truth;
    band metrics score only the ground-truth pixels within the band."""
    return frame_and_masked_metrics(prediction, gt, {})[:2]


def frame_and_masked_metrics(prediction: np.ndarray, gt: np.ndarray,
                             masks: Mapping[str, np.ndarray]):
    """(metrics, {band: metrics}, {label: metrics}): :func:`frame_metrics` and
    :func:`masked_metrics` of ``masks`` (e.g. :func:`coverage_masks`), the prediction's holes
    filled once for all of them."""
    bands = band_masks(gt)
    keyed = {("frame", ""): _valid(np.asarray(gt)),
             **{("band", label): mask for label, mask in bands.items()},
             **{("mask", label): mask for label, mask in masks.items()}}
    figures = masked_metrics(prediction, gt, keyed)
    return (figures["frame", ""], {label: figures["band", label] for label in bands},
            {label: figures["mask", label] for label in masks})


# Coverage bands: how far a ground-truth pixel lies from the nearest LiDAR return the backend was
# given, in pixels (Euclidean, between pixel centres): (label, low, high], the first band being
# the returns' own pixels. A completion is scored on the returns it was given, beside them, and
# where it had to fill a gap or extend beyond the sweep.
COVERAGE = (("0", -1.0, 0.0), ("0-2", 0.0, 2.0), ("2-4", 2.0, 4.0), ("4+", 4.0, float("inf")))


def coverage_masks(sparse: np.ndarray, gt: np.ndarray) -> dict[str, np.ndarray]:
    """Coverage band label -> (H, W) bool mask of ground-truth pixels (finite, > 0) at that
    distance from the nearest return of ``sparse`` ((H, W) metres, > 0 = a return). Empty when
    ``sparse`` holds no return (mono mode: no coverage to speak of)."""
    sparse = np.asarray(sparse)
    gt = np.asarray(gt, dtype=np.float64)
    if sparse.shape != gt.shape:
        raise ValueError(f"sparse input {sparse.shape} and ground truth {gt.shape} differ in size")
    returns = _valid(sparse)
    if not returns.any():
        return {}
    # distance from every pixel to the nearest zero of the image, i.e. the nearest return
    distance = cv2.distanceTransform((~returns).astype(np.uint8), cv2.DIST_L2,
                                     cv2.DIST_MASK_PRECISE)
    valid = _valid(gt)
    return {label: valid & (distance > low) & (distance <= high) for label, low, high in COVERAGE}
