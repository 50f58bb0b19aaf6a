"""The residual student with an image student above the LiDAR's field of view, in one graph.

A spinning LiDAR sees a band of elevations (HDL-64: +2 to -25 degrees); a camera sees above it.
There the residual student (:mod:`training.residual`) can only scale the classical completion's
upward extension of each column's top-most return by a bounded factor, and it does not see the
image. The camera-capable student (:mod:`training.student`, version 4) predicts depth from the
image (and whatever returns it is given) everywhere. This module runs both and keeps, per pixel,

- the residual student's answer wherever the LiDAR covers the column at or above the pixel (all
  pixels within ``margin`` rows of the top-most return among the columns ``+- width // 2``
  around it, and everything below), and
- the image student's answer above that,

so that wherever a LiDAR return can be checked (KITTI's ground truth, a held-out return) the
output is the residual student's, bit for bit. The image student runs on the top rows of the
input only (``rows``: a share of the height, rounded up to a multiple of 32), which is where the
LiDAR's field of view ends on a road vehicle; lower pixels always keep the residual answer.

Contract: that of :class:`~dmd3c_ros.training.residual.ResidualStudent`
(``forward(rgb, sparse, classical) -> (depth, uncertainty)``, depth in this student's
``depth_scale`` units). The image student's outputs are in its own units (``image_scale``
metres per unit against this student's ``depth_scale``): its sparse input is converted on the
way in and its outputs on the way out, and its depth is clipped to its own trained range.

The coverage mask is made of standard ONNX operators (MaxPool, CumSum), so the whole thing is
one graph for ONNX Runtime and TensorRT. Nothing here is trained: the two students are trained
on their own and joined (:func:`compose_weights`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F

from dmd3c_ros.core.coverage import MARGIN, WIDTH
from dmd3c_ros.training.residual import build_residual_student
from dmd3c_ros.training.student import build_student


@dataclass(frozen=True)
class AboveConfig:
    """A composite: residual variant, image-student variant and how they are joined."""

    name: str
    residual: str = "residual_geo"
    image: str = "tiny_v4"
    residual_scale: float = 120.0   # metres per network unit of the residual student
    image_scale: float = 80.0       # ... of the image student (its own depth_scale)
    image_min: float = 0.5          # metres: the image student's trained range
    rows: float = 0.5               # share of the input height the image student sees (top)
    width: int = WIDTH              # columns: a return covers this many columns around it
    margin: int = MARGIN            # rows: a return covers this many rows above it


ABOVE_VARIANTS = {
    # Version 5's residual student with version 4 above the LiDAR (models/README.md).
    "residual_geo_above": AboveConfig(name="residual_geo_above"),
}


def coverage(sparse: torch.Tensor, width: int, margin: int) -> torch.Tensor:
    """(N, 1, h, w) 0/1 float: 1 where the LiDAR covers the pixel's column at or above it (the
    rule of :func:`dmd3c_ros.core.coverage.lidar_coverage`, in graph operators).

    A return covers its own column and ``width // 2`` columns each side, from ``margin`` rows
    above it down to the bottom of the frame (a pixel below the top-most return of its column
    is inside the sensor's field of view, whatever the returns below say)."""
    valid = (sparse > 0).float()
    band = F.max_pool2d(valid, (1, width), 1, (0, width // 2))
    below = (torch.cumsum(band, dim=2) > 0).float()        # a return at or above this row
    return F.max_pool2d(below, (2 * margin + 1, 1), 1, (margin, 0))


class AboveLidarStudent(nn.Module):
    """See the module docstring. Submodules: ``residual`` and ``image``."""

    needs_classical = True
    supports_mono = False
    factory = "dmd3c_ros.training.above_lidar:build_above_student"

    def __init__(self, config: AboveConfig):
        super().__init__()
        if config.width < 1 or config.width % 2 == 0 or config.margin < 0:
            raise ValueError("AboveConfig.width must be odd and positive, margin >= 0")
        if not 0 < config.rows <= 1:
            raise ValueError("AboveConfig.rows must be a share of the height in (0, 1]")
        self.config = config
        self.residual = build_residual_student(config.residual)
        self.image = build_student(config.image)

    def image_rows(self, height: int) -> int:
        """Rows of an input ``height`` rows high that the image student sees (multiple of 32)."""
        return min(height, int(math.ceil(height * self.config.rows / 32.0)) * 32)

    def _join(self, rgb, sparse, near: tuple[torch.Tensor, torch.Tensor]):
        cfg = self.config
        ratio = cfg.image_scale / cfg.residual_scale      # image units -> residual units
        rows = self.image_rows(rgb.shape[-2])
        top_rgb, top_sparse = rgb[:, :, :rows], sparse[:, :, :rows] / ratio
        far_depth, far_sigma = self.image(top_rgb, top_sparse)
        far_depth = far_depth.clamp(cfg.image_min / cfg.image_scale, 1.0) * ratio
        far_sigma = far_sigma * ratio
        depth, sigma = near
        # Above the LiDAR within the image student's rows (not its last 16: its border).
        above = 1.0 - coverage(top_sparse, cfg.width, cfg.margin)
        above = above * (torch.arange(rows, device=rgb.device) < rows - 16).float().view(
            1, 1, rows, 1)
        top_depth = depth[:, :, :rows] + above * (far_depth - depth[:, :, :rows])
        top_sigma = sigma[:, :, :rows] + above * (far_sigma - sigma[:, :, :rows])
        # Where the residual student has no classical value (0) the output stays 0: no depth.
        top_depth = top_depth * (depth[:, :, :rows] > 0).float()
        return (torch.cat([top_depth, depth[:, :, rows:]], 2),
                torch.cat([top_sigma, sigma[:, :, rows:]], 2))

    def forward(self, rgb: torch.Tensor, sparse: torch.Tensor, classical: torch.Tensor):
        """(N,3,h,w), (N,1,h,w), (N,1,h,w) -> depth, uncertainty (N,1,h,w), residual units."""
        return self._join(rgb, sparse, self.residual(rgb, sparse, classical))

    def forward_with_aux(self, rgb, sparse, classical) -> dict[str, torch.Tensor]:
        """The residual student's aux outputs with the joined depth and uncertainty."""
        out = self.residual.forward_with_aux(rgb, sparse, classical)
        out["depth"], out["uncertainty"] = self._join(rgb, sparse,
                                                      (out["depth"], out["uncertainty"]))
        return out


def build_above_student(variant: str = "residual_geo_above") -> AboveLidarStudent:
    """Factory for model specs (``dmd3c_ros.training.above_lidar:build_above_student``)."""
    if variant not in ABOVE_VARIANTS:
        raise ValueError(f"unknown composite variant {variant!r}; choose from "
                         f"{sorted(ABOVE_VARIANTS)}")
    return AboveLidarStudent(ABOVE_VARIANTS[variant])


def compose_weights(residual_state: dict, image_state: dict) -> dict:
    """The composite's state dict from the two students' (plain state-dict keys)."""
    state = {f"residual.{k}": v for k, v in residual_state.items()}
    state.update({f"image.{k}": v for k, v in image_state.items()})
    return state
