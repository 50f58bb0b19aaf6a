"""One camera frame + LiDAR sweep -> dense depth: projection, inference, range filtering.

``run`` completes one frame; ``run_batch`` completes the views of one sweep (a surround rig) with
one batched backend call. Message-free (arrays in, arrays out), so the nodes, the offline tools
and the tests share it.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.core.seam_blend import SeamBlender
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
        includes the pipeline's range filter). In a batch: the whole batch's stages.
    """

    depth: np.ndarray
    uncertainty: np.ndarray | None
    mode: str
    sparse_pixels: int
    timings_ms: dict[str, float] = field(default_factory=dict)


@dataclass
class View:
    """One camera image of a sweep.

    rgb: (H, W, 3) uint8 RGB; its size must be the camera's.
    camera: the image's calibration (rectified P used for projection).
    points: (N, >=3) LiDAR points in metres, or None / empty for a view without LiDAR.
    lidar_to_camera: (4, 4) LiDAR frame -> camera optical frame (None: points already in it).
    """

    rgb: np.ndarray
    camera: PinholeCamera
    points: np.ndarray | None = None
    lidar_to_camera: np.ndarray | None = None


@dataclass
class BatchResult:
    """``results[i]`` for ``views[i]``: a FrameResult, or None for a view without a LiDAR pixel
    that the backend cannot complete camera-only (``skipped`` lists their indices). ``timings_ms``
    covers the whole batch (the same dict every FrameResult holds)."""

    results: list[FrameResult | None]
    timings_ms: dict[str, float]

    @property
    def skipped(self) -> list[int]:
        return [i for i, result in enumerate(self.results) if result is None]


def _ms(start: float) -> float:
    return (time.perf_counter() - start) * 1000.0  # s to ms


class CompletionPipeline:
    """Projects a sweep into the camera(s), runs the backend and keeps depths within range."""

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
        """Complete one frame (arguments as the fields of :class:`View`).

        ``uncertainty``: False = leave FrameResult.uncertainty None (nobody wants it: saves
        mapping it back to the image).

        Raises:
            ValueError: image and camera sizes differ.
            MonoNotSupportedError: no LiDAR pixel and a backend that needs LiDAR.
        """
        result = self.run_batch([View(rgb, camera, points, lidar_to_camera)],
                                uncertainty=uncertainty).results[0]
        if result is None:
            raise MonoNotSupportedError(
                f"no LiDAR return lands in the image and backend '{self.backend.name}' "
                "cannot complete without LiDAR")
        return result

    def run_batch(self, views: Sequence[View], *, uncertainty: bool = True,
                  seams: SeamBlender | None = None) -> BatchResult:
        """Complete the views of one sweep with one batched backend call.

        Each view is projected on its own; views where no LiDAR return lands run camera-only
        (mono) when the backend can, and are skipped (result None) when it cannot. Images may
        differ in size. ``seams``: a :class:`~dmd3c_ros.core.seam_blend.SeamBlender` built for
        these views' cameras, in this order: their depths then meet at the seams (stage
        ``seams`` in the timings).

        Raises:
            ValueError: an image and its camera differ in size.
        """
        views = list(views)
        for index, view in enumerate(views):
            if (view.rgb.shape[1], view.rgb.shape[0]) != view.camera.size:
                raise ValueError(f"view {index}: image is {view.rgb.shape[1]}x"
                                 f"{view.rgb.shape[0]} but its CameraInfo is "
                                 f"{view.camera.width}x{view.camera.height}")
        timings: dict[str, float] = {}
        start = time.perf_counter()
        sparses: list[np.ndarray | None] = []
        pixels: list[int] = []
        for view in views:
            sparse = None
            if view.points is not None and len(view.points):
                sparse = project_to_depth(view.points, view.camera, view.lidar_to_camera,
                                          min_depth=self.min_depth, max_depth=self.max_depth)
            count = 0 if sparse is None else int(np.count_nonzero(sparse))
            sparses.append(sparse if count else None)
            pixels.append(count)
        timings["projection"] = _ms(start)
        run = [i for i, count in enumerate(pixels) if count or self.supports_mono]
        results: list[FrameResult | None] = [None] * len(views)
        if not run:
            return BatchResult(results, timings)
        start = time.perf_counter()
        predictions = self.backend.infer_batch([views[i].rgb for i in run],
                                               [sparses[i] for i in run],
                                               uncertainty=uncertainty)
        timings["inference"] = _ms(start)
        stages = getattr(self.backend, "last_timings_ms", None)
        if stages:  # a network backend splits it into pre-processing, network, post-processing
            timings.update(stages)
        start = time.perf_counter()
        for i, prediction in zip(run, predictions):
            depth, sigma = self._in_range(prediction.depth, prediction.uncertainty)
            results[i] = FrameResult(depth, sigma, "completion" if pixels[i] else "mono",
                                     pixels[i], timings)
        if stages:
            timings["postprocess"] += _ms(start)
        batch = BatchResult(results, timings)
        if seams is not None:
            self.blend_seams(seams, views, batch)
        return batch

    def blend_seams(self, seams: SeamBlender, views: Sequence[View], batch: BatchResult) -> None:
        """The results of ``views`` (``batch``, as run_batch returns it) meet at their seams,
        in place: each result's depth is replaced (skipped views take part as having none),
        and the batch's timings get stage ``seams``."""
        start = time.perf_counter()
        depths = [np.full((v.camera.height, v.camera.width), np.nan, np.float32)
                  if r is None else r.depth for v, r in zip(views, batch.results)]
        for result, blended in zip(batch.results, seams(depths)):
            if result is not None:  # a move may cross the range's ends: filter again
                result.depth, result.uncertainty = self._in_range(blended, result.uncertainty)
        batch.timings_ms["seams"] = _ms(start)

    def _in_range(self, depth: np.ndarray, uncertainty: np.ndarray | None
                  ) -> tuple[np.ndarray, np.ndarray | None]:
        """NaN outside [min_depth, max_depth]; copies: the backend's arrays are left as they
        were."""
        with np.errstate(invalid="ignore"):
            out_of_range = (depth < self.min_depth) | (depth > self.max_depth)  # NaN: False
        if out_of_range.any():
            depth = np.where(out_of_range, np.float32(np.nan), depth)
            if uncertainty is not None:
                uncertainty = np.where(out_of_range, np.float32(np.nan), uncertainty)
        return depth.astype(np.float32, copy=False), uncertainty
