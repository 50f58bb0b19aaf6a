"""Classical depth completion on the CPU (Ku, Harakeh, Waslander, "In Defense of Classical Image
Processing: Fast Depth Completion on the CPU", CRV 2018), written from the paper.

Morphological operations dilate the LARGER value, so depths are first inverted
(d_inv = max_depth - d) to make nearer returns win, then:
1. dilation with a 5x5 diamond kernel;
2. small-hole closure (5x5 full kernel);
3. small-hole fill: empty pixels take a 7x7 full-kernel dilation;
4. extension to the top of the frame: each column's top-most value is carried upwards;
5. large-hole fill: empty pixels take a 31x31 full-kernel dilation;
6. 5x5 median blur (removes outliers), then 5x5 Gaussian blur (smooths planes), both kept only on
   pixels that already had a value;
7. inversion back to depth.
"""
from __future__ import annotations

import cv2
import numpy as np

DIAMOND_5 = np.array([[0, 0, 1, 0, 0],
                      [0, 1, 1, 1, 0],
                      [1, 1, 1, 1, 1],
                      [0, 1, 1, 1, 0],
                      [0, 0, 1, 0, 0]], dtype=np.uint8)
FULL_5 = np.ones((5, 5), np.uint8)
FULL_7 = np.ones((7, 7), np.uint8)
FULL_31 = np.ones((31, 31), np.uint8)
_MIN_VALID = 0.1  # metres; returns nearer than this are sensor noise


def _fill_empty(depth: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Empty pixels take the kernel's dilation; the others keep their value (a new array)."""
    filled = cv2.dilate(depth, kernel)
    np.copyto(filled, depth, where=depth > _MIN_VALID)
    return filled


def _extend_to_top(depth: np.ndarray) -> np.ndarray:
    """Each column's top-most value carried up to the first row, in place (returns ``depth``).
    A column without any value has its top at row 0 (argmax of all False): nothing moves."""
    top = (depth > _MIN_VALID).argmax(axis=0)
    np.copyto(depth, depth[top, np.arange(depth.shape[1])],
              where=np.arange(depth.shape[0])[:, None] < top)
    return depth


def complete_classical(sparse: np.ndarray, *, max_depth: float = 100.0) -> np.ndarray:
    """Complete a sparse depth image.

    Args:
        sparse: (H, W) float metres, 0 (or NaN / negative) = no value. Not modified.
        max_depth: metres; inversion pivot. Inputs beyond it are dropped.
    Returns:
        (H, W) float32 metres, NaN where no value could be filled (e.g. an all-empty input).
    """
    depth = np.asarray(sparse, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"sparse depth must be (H, W), got shape {depth.shape}")
    # Float32 arithmetic throughout, in place where it can be (this runs on every frame).
    pivot, threshold = np.float32(max_depth), np.float32(_MIN_VALID)
    with np.errstate(invalid="ignore"):  # NaN compares False: no value
        valid = (depth > threshold) & (depth <= pivot)
    inv = np.subtract(pivot, depth)  # nearer -> larger
    # Inverted depths of valid pixels lie in [0, max_depth - 0.1]; shift by the threshold so that
    # "no value" (0) stays distinct from a return at exactly max_depth.
    inv += threshold
    inv[~valid] = 0.0

    inv = cv2.dilate(inv, DIAMOND_5)
    inv = cv2.morphologyEx(inv, cv2.MORPH_CLOSE, FULL_5)
    inv = _fill_empty(inv, FULL_7)
    inv = _extend_to_top(inv)
    inv = _fill_empty(inv, FULL_31)

    filled = inv > threshold
    np.copyto(inv, cv2.medianBlur(inv, 5), where=filled)
    np.copyto(inv, cv2.GaussianBlur(inv, (5, 5), 0), where=filled)

    out = np.subtract(inv, threshold)
    np.subtract(pivot, out, out=out)
    out[~(inv > threshold)] = np.nan
    return out


def classical_units(sparse: np.ndarray, *, max_depth: float, depth_scale: float) -> np.ndarray:
    """The residual student's ``classical`` input: :func:`complete_classical` of ``sparse``
    (pivot ``max_depth``) in network units, ``depth_metres / depth_scale``, 0 = no value.

    Args:
        sparse: (H, W) float metres, 0 = no value. Not modified.
    Returns:
        (H, W) float32. The runtime (network-size pre-step), the training crops, the trainer's
        validation and the export's parity check all make it here.
    """
    filled = np.nan_to_num(complete_classical(sparse, max_depth=max_depth), nan=0.0)
    return filled / np.float32(depth_scale)  # metres -> network units
