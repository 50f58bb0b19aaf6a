"""A simulated monocular teacher for synthetic data: ground truth degraded like a mono network.

It is not a network. ``predict(rgb, depth=gt)`` turns ground-truth depth (metres) into what a
monocular foundation model such as Depth Anything V2 outputs, in this order:

1. inverse depth ``1 / depth``; pixels without depth (0, NaN, inf: sky) get 0, "infinitely far",
   as mono models do for sky, so the output has a value everywhere;
2. blurred depth edges: a Gaussian blur of the inverse depth (``edge_blur_px``, sigma in pixels);
3. a smooth low-frequency multiplicative warp ``exp(warp_amplitude * f(x, y))``, ``f`` a
   ``warp_cells``-cell random grid upsampled bicubically (unit standard deviation per node);
4. additive noise, Gaussian with standard deviation ``noise`` x the median inverse depth;
5. an unknown affine map ``s * x + t``: scale ``s`` log-uniform in ``scale_range`` and shift ``t``
   uniform in ``shift_range`` x ``s`` x the median inverse depth.

The result is deterministic for a given ``seed`` and ``index`` (a per-frame extra, default 0),
independent of call order.
"""
from __future__ import annotations

import cv2
import numpy as np

from .base import RELATIVE_INVERSE_DEPTH, Teacher, check_rgb


class SimulatedMonoTeacher(Teacher):
    """Ground truth -> simulated monocular relative inverse depth (see module docstring)."""

    kind = RELATIVE_INVERSE_DEPTH

    def __init__(self, seed: int = 0, *, edge_blur_px: float = 2.0, warp_amplitude: float = 0.05,
                 warp_cells: tuple[int, int] = (3, 4), noise: float = 0.01,
                 scale_range: tuple[float, float] = (0.5, 50.0),
                 shift_range: tuple[float, float] = (-0.5, 0.5)) -> None:
        if edge_blur_px < 0 or warp_amplitude < 0 or noise < 0:
            raise ValueError("edge_blur_px, warp_amplitude and noise must be >= 0")
        if not 0 < scale_range[0] <= scale_range[1]:
            raise ValueError(f"scale_range must be 0 < low <= high, got {scale_range}")
        self.seed, self.edge_blur_px, self.warp_amplitude = int(seed), edge_blur_px, warp_amplitude
        self.warp_cells, self.noise = tuple(warp_cells), noise
        self.scale_range, self.shift_range = scale_range, shift_range
        self.name = f"simulated_mono_seed{self.seed}"

    def predict(self, rgb: np.ndarray, *, depth: np.ndarray | None = None, index: int = 0,
                **extras) -> np.ndarray:
        """(H, W, 3) uint8 + ``depth`` (H, W) metres (0/NaN/inf = none) -> (H, W) float32."""
        rgb = check_rgb(rgb)
        if depth is None:
            raise ValueError("SimulatedMonoTeacher.predict needs the ground truth: depth=")
        depth = np.asarray(depth, np.float64)
        if depth.shape != rgb.shape[:2]:
            raise ValueError(f"depth {depth.shape} does not match the image {rgb.shape[:2]}")
        h, w = depth.shape
        rng = np.random.default_rng([self.seed, int(index)])
        valid = np.isfinite(depth) & (depth > 0)
        inv = np.zeros((h, w), np.float64)
        inv[valid] = 1.0 / depth[valid]  # metres to inverse metres; none = far (0)
        if self.edge_blur_px > 0:
            inv = cv2.GaussianBlur(inv, (0, 0), self.edge_blur_px, borderType=cv2.BORDER_REFLECT)
        rows, cols = self.warp_cells
        grid = rng.standard_normal((rows + 1, cols + 1))
        field = cv2.resize(grid, (w, h), interpolation=cv2.INTER_CUBIC)  # smooth, low frequency
        inv = inv * np.exp(self.warp_amplitude * field)
        median = float(np.median(inv[valid])) if valid.any() else 1.0
        inv = inv + rng.normal(0.0, self.noise * median, (h, w))
        scale = float(np.exp(rng.uniform(*np.log(self.scale_range))))
        shift = float(rng.uniform(*self.shift_range)) * scale * median
        return (scale * inv + shift).astype(np.float32)
