"""One frame, offline: image + LiDAR (sparse PNG or sweep + calibration) -> dense depth.

The library side of ``dmd3c complete``; the command only parses arguments and calls this.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .core.calibration import load_kitti_calibration
from .core.io import InputFileError, read_kitti_depth, read_kitti_velodyne, read_rgb
from .core.metrics import depth_metrics
from .core.projection import project_to_depth
from .runtime.base import Prediction
from .runtime.factory import create_backend


@dataclass
class CompletionResult:
    """What one offline completion produced and measured."""

    prediction: Prediction
    backend: str
    mode: str  # "completion" (with LiDAR) or "mono"
    sparse_pixels: int
    infer_ms: list[float]
    metrics: dict[str, float] | None = None
    inputs: dict[str, str] = field(default_factory=dict)

    @property
    def infer_ms_median(self) -> float:
        return float(np.median(self.infer_ms))


def load_sparse(image_size: tuple[int, int], sparse_png: str | Path | None = None,
                points_bin: str | Path | None = None, calib: str | Path | None = None,
                camera_index: int = 2) -> np.ndarray | None:
    """The LiDAR input as (H, W) float32 metres (0 = none), or None for mono mode.

    Either a KITTI sparse PNG of the image's size, or a KITTI Velodyne sweep projected with a
    KITTI calibration (a directory = the raw pair, a file = the object calib.txt).
    """
    if sparse_png is not None and points_bin is not None:
        raise ValueError("give the LiDAR either as --sparse or as --points/--calib, not both")
    if sparse_png is not None:
        sparse = read_kitti_depth(sparse_png)
        if (sparse.shape[1], sparse.shape[0]) != tuple(image_size):
            raise InputFileError(f"{sparse_png}: {sparse.shape[1]}x{sparse.shape[0]} sparse depth "
                                 f"does not match the {image_size[0]}x{image_size[1]} image")
        return sparse
    if points_bin is not None:
        if calib is None:
            raise ValueError("--points needs --calib (calib.txt, or the folder of the raw pair)")
        calibration = load_kitti_calibration(calib, image_size, camera_index)
        return project_to_depth(read_kitti_velodyne(points_bin), calibration.camera,
                                calibration.lidar_to_camera)
    if calib is not None:
        raise ValueError("--calib is only used with --points")
    return None


def complete_frame(image: str | Path, *, sparse_png=None, points_bin=None, calib=None,
                   ground_truth=None, backend: str = "auto", model=None,
                   precision: str = "fp32", engine_cache_dir=None, camera_index: int = 2,
                   repeat: int = 1) -> CompletionResult:
    """Complete one frame; ``repeat`` > 1 times the inference that many times (median reported)."""
    rgb = read_rgb(image)
    image_size = (rgb.shape[1], rgb.shape[0])
    sparse = load_sparse(image_size, sparse_png, points_bin, calib, camera_index)
    gt = read_kitti_depth(ground_truth) if ground_truth is not None else None
    if gt is not None and gt.shape != rgb.shape[:2]:
        raise InputFileError(f"{ground_truth}: ground truth {gt.shape[1]}x{gt.shape[0]} does not "
                             f"match the {image_size[0]}x{image_size[1]} image")
    runner = create_backend(backend, model, precision=precision,
                            engine_cache_dir=engine_cache_dir)
    sparse_pixels = 0 if sparse is None else int(np.count_nonzero(sparse > 0))
    mono = sparse_pixels == 0
    times = []
    for _ in range(max(1, repeat)):
        start = time.perf_counter()
        prediction = runner.infer(rgb, None if mono else sparse)
        times.append((time.perf_counter() - start) * 1000.0)  # s to ms
    inputs = {"image": str(image)}
    for key, value in (("sparse", sparse_png), ("points", points_bin), ("calib", calib),
                       ("ground_truth", ground_truth), ("model", model)):
        if value is not None:
            inputs[key] = str(value)
    return CompletionResult(prediction, runner.name, "mono" if mono else "completion",
                            sparse_pixels, times,
                            depth_metrics(prediction.depth, gt) if gt is not None else None, inputs)
