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

Every step is local across columns (none reaches more than 28 pixels sideways, steps 1-6 together)
and step 4 works column by column, so the image is completed in vertical strips, one per usable
core, each with 32 columns of its neighbours' context: the answer is the same bit for bit
whatever the number of strips, and 1.3-1.6x faster on two cores (``docs/benchmarks.md``, "Round 8").
"""
from __future__ import annotations

import cv2
import numpy as np

from dmd3c_ros.core.strips import band_count, run_bands

DIAMOND_5 = np.array([[0, 0, 1, 0, 0],
                      [0, 1, 1, 1, 0],
                      [1, 1, 1, 1, 1],
                      [0, 1, 1, 1, 0],
                      [0, 0, 1, 0, 0]], dtype=np.uint8)
FULL_5 = np.ones((5, 5), np.uint8)
FULL_7 = np.ones((7, 7), np.uint8)
FULL_31 = np.ones((31, 31), np.uint8)
_MIN_VALID = 0.1  # metres; returns nearer than this are sensor noise
STRIP_MARGIN = 32    # columns of context a strip takes from each neighbour (> 2+4+3+15+2+2 = 28)
STRIP_ALIGN = 64     # columns
MIN_STRIP = 256      # columns: narrower images are completed in fewer strips


def _fill_empty(depth: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Empty pixels take the kernel's dilation; the others keep their value (a new array)."""
    filled = cv2.dilate(depth, kernel)
    return cv2.copyTo(depth, _mask(depth > _MIN_VALID), filled)


def _mask(where: np.ndarray) -> np.ndarray:
    """A boolean array as OpenCV's uint8 mask (the same bytes, no copy). Not cv2.compare with a
    number: OpenCV takes a 4x1 or 1x4 image for the scalar's own 4x1 shape and refuses it."""
    return where.view(np.uint8)


def _extend_to_top(depth: np.ndarray) -> np.ndarray:
    """Each column's top-most value carried up to the first row, in place (returns ``depth``).
    A column without any value has its top at row 0 (argmax of all False): nothing moves."""
    top = (depth > _MIN_VALID).argmax(axis=0)
    np.copyto(depth, depth[top, np.arange(depth.shape[1])],
              where=np.arange(depth.shape[0])[:, None] < top)
    return depth


def complete_classical(sparse: np.ndarray, *, max_depth: float = 100.0,
                       threads: int | None = None, missing: float = np.nan) -> np.ndarray:
    """Complete a sparse depth image.

    Args:
        sparse: (H, W) float metres, 0 (or NaN / negative) = no value. Not modified.
        max_depth: metres; inversion pivot. Inputs beyond it are dropped.
        threads: strips completed side by side (None: one per usable core, at most
            ``core.strips.MAX_THREADS``, each at least MIN_STRIP columns wide; 1: in the
            calling thread only). The answer does not depend on it.
        missing: the value of pixels that could not be filled.
    Returns:
        (H, W) float32 metres, ``missing`` (default NaN) where no value could be filled (e.g.
        an all-empty input).
    """
    depth = np.asarray(sparse, dtype=np.float32)
    if depth.ndim != 2:
        raise ValueError(f"sparse depth must be (H, W), got shape {depth.shape}")
    count = band_count(threads, depth.shape[1], MIN_STRIP)
    if count == 1:
        return _complete(depth, max_depth, missing)
    out = np.empty(depth.shape, dtype=np.float32)

    def strip(lo: int, hi: int, left: int, right: int) -> None:
        # The strip starts on a multiple of STRIP_ALIGN columns, as the image does: OpenCV's
        # vectorised filters then round every column as they do on the whole image.
        done = _complete(depth[:, lo:hi], max_depth, missing)
        out[:, left:right] = done[:, left - lo:right - lo]

    run_bands(depth.shape[1], count, STRIP_MARGIN, strip, align=STRIP_ALIGN)
    return out


def _complete(depth: np.ndarray, max_depth: float, missing: float) -> np.ndarray:
    """Steps 1-7 on (H, W) float32 metres (any NaN / negative / too far = no value); pixels
    left without a value are ``missing``."""
    # Float32 arithmetic throughout, in place where it can be (this runs on every frame).
    pivot, threshold = np.float32(max_depth), np.float32(_MIN_VALID)
    with np.errstate(invalid="ignore"):  # NaN compares False: no value
        valid = (depth > threshold) & (depth <= pivot)
    inv = np.subtract(pivot, depth)  # nearer -> larger
    # Inverted depths of valid pixels lie in [0, max_depth - 0.1]; shift by the threshold so that
    # "no value" (0) stays distinct from a return at exactly max_depth.
    inv += threshold
    np.copyto(inv, np.float32(0.0), where=~valid)

    inv = cv2.dilate(inv, DIAMOND_5)
    inv = cv2.morphologyEx(inv, cv2.MORPH_CLOSE, FULL_5)
    inv = _fill_empty(inv, FULL_7)
    inv = _extend_to_top(inv)
    inv = _fill_empty(inv, FULL_31)

    filled = _mask(inv > threshold)
    inv = cv2.copyTo(cv2.medianBlur(inv, 5), filled, inv)
    inv = cv2.copyTo(cv2.GaussianBlur(inv, (5, 5), 0), filled, inv)

    out = np.subtract(inv, threshold)
    np.subtract(pivot, out, out=out)
    np.copyto(out, np.float32(missing), where=~(inv > threshold))
    return out


def classical_units(sparse: np.ndarray, *, max_depth: float, depth_scale: float,
                    threads: int | None = None) -> np.ndarray:
    """The residual student's ``classical`` input: :func:`complete_classical` of ``sparse``
    (pivot ``max_depth``) in network units, ``depth_metres / depth_scale``, 0 = no value.

    Args:
        sparse: (H, W) float metres, 0 = no value. Not modified.
        threads: as for :func:`complete_classical`.
    Returns:
        (H, W) float32. The runtime (network-size pre-step), the training crops, the trainer's
        validation and the export's parity check all make it here.
    """
    filled = complete_classical(sparse, max_depth=max_depth, threads=threads, missing=0.0)
    return np.divide(filled, np.float32(depth_scale), out=filled)  # metres -> network units
