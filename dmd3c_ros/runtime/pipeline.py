"""One camera frame + LiDAR sweep -> dense depth: projection, inference, range filtering.

Message-free (arrays in, arrays out), so the node, the offline tools and the tests share it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.runtime.base import Backend, MonoNotSupportedError


@dataclass
class FrameResult:
    """What the pipeline made of one frame.

    depth: (H, W) float32 metres along the optical axis, NaN = no value.
    uncertainty: (H, W) float32 standard deviation in metres, or None.
    mode: "completion" (with LiDAR) or "mono" (camera only).
    sparse_pixels: LiDAR returns that landed in the image.
    timings_ms: milliseconds per stage: "projection" and "inference"; network backends split
        the latter into "preprocess", "inference" (the network alone) and "postprocess" (which
        includes the pipeline's range filter).
    """

    depth: np.ndarray
    uncertainty: np.ndarray | None
    mode: str
    sparse_pixels: int
    timings_ms: dict[str, float] = field(default_factory=dict)


class CompletionPipeline:
    """Projects a sweep into the camera, runs the backend and keeps depths within range."""

    def __init__(self, backend: Backend, *, min_depth: float = 0.1, max_depth: float = 100.0):
        self.backend = backend
        self.min_depth = float(min_depth)
        self.max_depth = float(max_depth)

    @property
    def supports_mono(self) -> bool:
        return bool(self.backend.supports_mono)

    def run(self, rgb: np.ndarray, camera: PinholeCamera, points: np.ndarray | None = None,
            lidar_to_camera: np.ndarray | None = None, *, uncertainty: bool = True
            ) -> FrameResult:
        """Complete one frame.

        Args:
            rgb: (H, W, 3) uint8 RGB; its size must be the camera's.
            camera: the image's calibration (rectified P used for projection).
            points: (N, >=3) LiDAR points in metres, or None / empty for a frame without LiDAR.
            lidar_to_camera: (4, 4) transform LiDAR frame -> camera optical frame (None: the
                points are already in the camera frame).
            uncertainty: False = leave FrameResult.uncertainty None (nobody wants it: saves
                mapping it back to the image).
        Raises:
            ValueError: image and camera sizes differ.
            MonoNotSupportedError: no LiDAR pixel and a backend that needs LiDAR.
        """
        if (rgb.shape[1], rgb.shape[0]) != camera.size:
            raise ValueError(f"image is {rgb.shape[1]}x{rgb.shape[0]} but its CameraInfo is "
                             f"{camera.width}x{camera.height}")
        timings = {}
        start = time.perf_counter()
        sparse = None
        if points is not None and len(points):
            sparse = project_to_depth(points, camera, lidar_to_camera, min_depth=self.min_depth,
                                      max_depth=self.max_depth)
        sparse_pixels = 0 if sparse is None else int(np.count_nonzero(sparse))
        timings["projection"] = (time.perf_counter() - start) * 1000.0  # s to ms
        if sparse_pixels == 0:
            sparse = None
            if not self.supports_mono:
                raise MonoNotSupportedError(
                    f"no LiDAR return lands in the image and backend '{self.backend.name}' "
                    "cannot complete without LiDAR")
        start = time.perf_counter()
        prediction = self.backend.infer(rgb, sparse, uncertainty=uncertainty)
        timings["inference"] = (time.perf_counter() - start) * 1000.0  # s to ms
        stages = getattr(self.backend, "last_timings_ms", None)
        if stages:  # a network backend splits it into pre-processing, network, post-processing
            timings.update(stages)
        start = time.perf_counter()
        depth, uncertainty = prediction.depth, prediction.uncertainty
        with np.errstate(invalid="ignore"):
            out_of_range = (depth < self.min_depth) | (depth > self.max_depth)  # NaN: False
        if out_of_range.any():  # copies: the backend's arrays are left as they were
            depth = np.where(out_of_range, np.float32(np.nan), depth)
            if uncertainty is not None:
                uncertainty = np.where(out_of_range, np.float32(np.nan), uncertainty)
        if stages:
            timings["postprocess"] += (time.perf_counter() - start) * 1000.0  # s to ms
        return FrameResult(depth.astype(np.float32, copy=False), uncertainty,
                           "completion" if sparse is not None else "mono", sparse_pixels, timings)
