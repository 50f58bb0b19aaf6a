"""LiDAR split: hold a seeded random share of a sweep's visible points out of the input and score
the completion on them (ground truth for recordings without a depth topic).

Only points that project into the image between ``min_depth`` and ``max_depth`` are candidates;
the rest of the sweep (behind the camera, outside the image, out of range) always stays in the
input. The held-out points are rendered with the same projection and z-buffer as the input
(``core.projection.project_to_depth``), so a held-out pixel's ground truth is the nearest held-out
return on it.
"""
from __future__ import annotations

import numpy as np

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import project_points, project_to_depth


def visible_mask(points: np.ndarray, camera: PinholeCamera, lidar_to_camera=None, *,
                 min_depth: float = 0.1, max_depth: float = 100.0) -> np.ndarray:
    """(N,) bool: the points that ``project_to_depth`` would place in the image.

    Args:
        points: (N, >=3) x, y, z metres in the LiDAR frame (camera frame when
            ``lidar_to_camera`` is None).
        camera: target camera (pixel = P . [X; 1], rounded to the nearest pixel centre).
        lidar_to_camera: (4, 4) LiDAR -> rectified optical frame, or None.
        min_depth, max_depth: metres along the optical axis.
    """
    return project_points(points, camera, lidar_to_camera, min_depth=min_depth,
                          max_depth=max_depth)[0]


def split_points(points: np.ndarray, camera: PinholeCamera, lidar_to_camera, fraction: float,
                 seed=0, min_depth: float = 0.1,
                 max_depth: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """Split a sweep into the completion input and held-out sparse ground truth.

    Args:
        points: (N, >=3) sweep (metres; extra columns are kept in the input); not modified.
        camera, lidar_to_camera, min_depth, max_depth: as in ``visible_mask``.
        fraction: share of the visible points held out, 0 < fraction < 1; the count is
            ``round(fraction * visible)``.
        seed: int or sequence of ints for ``numpy.random.default_rng`` (same seed, same split).
    Returns:
        (input_points (N - k, C) copy of the kept rows in their original order,
         held_out_gt (H, W) float32 metres, 0 = no value).
    """
    fraction = float(fraction)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"the LiDAR split fraction must lie between 0 and 1, got {fraction}")
    points = np.asarray(points)
    candidates = np.flatnonzero(visible_mask(points, camera, lidar_to_camera,
                                             min_depth=min_depth, max_depth=max_depth))
    count = int(round(fraction * candidates.size))
    rng = np.random.default_rng(seed)
    held = np.zeros(len(points), dtype=bool)
    held[rng.choice(candidates, size=count, replace=False)] = True
    gt = project_to_depth(points[held], camera, lidar_to_camera, min_depth=min_depth,
                          max_depth=max_depth)
    return points[~held].copy(), gt
