"""LiDAR augmentations of the synthetic training crops (:class:`training.synthetic.CropSampler`):
what a real sweep does that the simulated one does not. Each takes a sparse map (h, w) float32
metres, 0 = no return, and returns a new array (its input is left alone)."""
from __future__ import annotations

import cv2
import numpy as np

NO_RING = 255
# Beam counts of the augmentation and the ring stride that gives each from a 64-beam sweep.
BEAM_STRIDE = {64: 1, 32: 2, 16: 4, 8: 8}


def keep_beams(sparse: np.ndarray, ring: np.ndarray, beams: int) -> np.ndarray:
    """The sparse map of a sweep with ``beams`` of 64 rings kept (0 = no LiDAR at all)."""
    if beams == 0:
        return np.zeros_like(sparse)
    if beams not in BEAM_STRIDE:
        raise ValueError(f"beams must be one of {sorted(BEAM_STRIDE)} or 0, got {beams}")
    stride = BEAM_STRIDE[beams]
    if stride == 1:
        return sparse
    keep = (ring != NO_RING) & (ring % stride == 0)
    return np.where(keep, sparse, 0.0).astype(np.float32)


def lidar_dropout(sparse: np.ndarray, rng: np.random.Generator, max_share: float,
                  max_blobs: int) -> np.ndarray:
    """A new sparse map with returns lost as a real sensor loses them: a random share (up to
    ``max_share``) of single returns, and up to ``max_blobs`` elliptic patches (dark, wet or
    mirror-like surfaces that return nothing) of 10-80 pixels across."""
    out = np.array(sparse, dtype=np.float32)
    if max_share > 0:
        out[rng.random(out.shape) < rng.uniform(0.0, max_share)] = 0.0
    h, w = out.shape
    for _ in range(int(rng.integers(0, max_blobs + 1)) if max_blobs > 0 else 0):
        mask = np.zeros((h, w), np.uint8)
        centre = (int(rng.integers(0, w)), int(rng.integers(0, h)))
        axes = (int(rng.integers(5, 40)), int(rng.integers(3, 20)))
        cv2.ellipse(mask, centre, axes, float(rng.uniform(0, 180)), 0, 360, 1, -1)
        out[mask > 0] = 0.0
    return out


def range_dropout(sparse: np.ndarray, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A new sparse map that has lost far returns as a real LiDAR does: the weaker echo of a far
    (and more so of a dark) surface falls below the detection threshold. A return at depth d
    is lost with probability ``clip((d - start) / span, 0, 1) * (0.5 + 0.5 * darkness)``, with
    ``start`` 30-70 m and ``span`` 20-60 m drawn per sample and darkness = 1 - grey / 255 of
    the pixel. Rendered sweeps return from every surface up to the sensor's range, so without
    this the network never sees a far surface that the LiDAR missed beside nearer returns."""
    start, span = rng.uniform(30.0, 70.0), rng.uniform(20.0, 60.0)
    darkness = 1.0 - np.asarray(rgb, np.float32).mean(axis=2) / 255.0
    p = np.clip((sparse - start) / span, 0.0, 1.0) * (0.5 + 0.5 * darkness)
    return np.where(rng.random(sparse.shape) < p, 0.0, sparse).astype(np.float32)


def lidar_shift(sparse: np.ndarray, rng: np.random.Generator, pixels: int) -> np.ndarray:
    """The returns of ``sparse`` (h, w; metres, 0 = none) moved by a whole-pixel offset drawn
    uniformly in [-pixels, pixels] on each axis, zero-filled at the border; a new array.

    A real sweep does not land exactly where the camera saw each surface: calibration error,
    the sweep's motion during the 100 ms it takes and the exposure time move returns by a pixel
    or two against the image, most visibly at object edges. The synthetic sweep is exact."""
    dy, dx = (int(v) for v in rng.integers(-pixels, pixels + 1, 2))
    out = np.zeros_like(sparse)
    h, w = sparse.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = \
        sparse[max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
    return out


def beam_footprint(depth: np.ndarray, radius: int) -> np.ndarray:
    """``depth`` (h, w; metres, 0 = none) where every pixel takes the nearest depth within
    ``radius`` pixels (a (2 radius + 1)^2 window; empty pixels stay empty unless a value lies
    within reach); a new array.

    A real LiDAR beam is about 2 mrad wide (HDL-64: 1.5 pixels of a KITTI camera), and at an
    edge its first echo comes from the nearer surface: foreground objects are a pixel or so
    wider in a real sweep, and in ground truth made of accumulated sweeps (KITTI's), than the
    camera sees them. Ray-cast sweeps and rendered depth have exact edges."""
    if radius <= 0:
        return np.array(depth, dtype=np.float32)
    size = 2 * radius + 1
    far = np.where(depth > 0, depth, np.inf).astype(np.float32)
    near = cv2.erode(far, np.ones((size, size), np.uint8), borderType=cv2.BORDER_REPLICATE)
    return np.where(np.isfinite(near), near, 0.0).astype(np.float32)
