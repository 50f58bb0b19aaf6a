"""The teacher interface: an RGB image (plus extras) in, one dense (H, W) float32 map out."""
from __future__ import annotations

from abc import ABC, abstractmethod

import numpy as np

RELATIVE_INVERSE_DEPTH = "relative_inverse_depth"  # unknown scale and shift, larger = nearer
METRIC_DEPTH = "metric_depth"                      # metres
KINDS = (RELATIVE_INVERSE_DEPTH, METRIC_DEPTH)


def check_rgb(rgb: np.ndarray, what: str = "rgb") -> np.ndarray:
    """Return ``rgb`` as a C-contiguous (H, W, 3) uint8 array (a view when already one)."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"{what} must be an (H, W, 3) uint8 image, got {rgb.shape} {rgb.dtype}")
    return np.ascontiguousarray(rgb)


class Teacher(ABC):
    """A source of dense depth supervision.

    ``predict(rgb, **extras)`` takes an (H, W, 3) uint8 RGB image and returns an (H, W) float32
    map of ``kind``: ``"relative_inverse_depth"`` (monocular teachers: affine-invariant inverse
    depth, unknown scale and shift) or ``"metric_depth"`` (metres). NaN marks pixels without a
    value. Inputs are never modified.
    """

    name: str = "teacher"
    kind: str = RELATIVE_INVERSE_DEPTH

    @abstractmethod
    def predict(self, rgb: np.ndarray, **extras) -> np.ndarray:
        """(H, W, 3) uint8 RGB -> (H, W) float32 map of ``self.kind``; NaN = no value."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r}, kind={self.kind!r})"
