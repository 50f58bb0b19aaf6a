"""LiDAR sweep -> sparse depth image of one camera, with a z-buffer."""
from __future__ import annotations

import numpy as np

from .camera import PinholeCamera


def transform_points(points: np.ndarray, transform: np.ndarray) -> np.ndarray:
    """Apply a (4, 4) rigid transform to the first three columns of (N, >=3) points -> (N, 3)."""
    points = np.asarray(points)
    T = np.asarray(transform, dtype=np.float64).reshape(4, 4)
    return points[:, :3].astype(np.float64) @ T[:3, :3].T + T[:3, 3]


def project_to_depth(points: np.ndarray, camera: PinholeCamera,
                     lidar_to_camera: np.ndarray | None = None, *,
                     min_depth: float = 0.1, max_depth: float = np.inf) -> np.ndarray:
    """Render a LiDAR sweep as a sparse depth image of ``camera``.

    Args:
        points: (N, >=3) float x, y, z in metres (extra columns such as intensity are ignored),
            in the LiDAR frame, or in the camera's rectified optical frame when
            ``lidar_to_camera`` is None. Non-finite points are dropped.
        camera: the target camera; pixel = P . [X; 1] (image_geometry semantics), rounded to the
            nearest pixel centre.
        lidar_to_camera: (4, 4) transform from the LiDAR frame to the rectified optical frame.
        min_depth, max_depth: metres along the optical axis; points outside are dropped (this also
            drops everything behind the camera).

    Returns:
        (H, W) float32 depth along the optical axis in metres, 0 = no return. Where several points
        land on one pixel the nearest wins (z-buffer), as a real range sensor would see it.
    """
    visible, u, v, depth = project_points(points, camera, lidar_to_camera, min_depth=min_depth,
                                          max_depth=max_depth)
    flat = v[visible] * camera.width + u[visible]
    return _zbuffer(flat, depth[visible], camera.height, camera.width)


def project_points(points: np.ndarray, camera: PinholeCamera,
                   lidar_to_camera: np.ndarray | None = None, *, min_depth: float = 0.1,
                   max_depth: float = np.inf
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pixel each point lands on (arguments as for ``project_to_depth``).

    Returns:
        visible: (N,) bool, finite, within [min_depth, max_depth] and inside the image;
        u, v: (N,) int64 column and row (nearest pixel centre; meaningless where not visible);
        depth: (N,) float64 metres along the optical axis.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be (N, >=3), got shape {points.shape}")
    # One (3, 4) matrix takes LiDAR points straight to homogeneous pixels: P . T.
    M = camera.P if lidar_to_camera is None \
        else camera.P @ np.asarray(lidar_to_camera, dtype=np.float64).reshape(4, 4)
    xyz = points[:, :3].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        depth = xyz @ M[2, :3] + M[2, 3]
        keep = (depth >= max(min_depth, 1e-6)) & (depth <= max_depth)  # NaN points fail too
        u = np.floor((xyz @ M[0, :3] + M[0, 3]) / depth + 0.5)  # nearest pixel centre
        v = np.floor((xyz @ M[1, :3] + M[1, 3]) / depth + 0.5)
    visible = keep & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height)
    u = np.where(visible, u, 0).astype(np.int64)
    v = np.where(visible, v, 0).astype(np.int64)
    return visible, u, v, depth


def _zbuffer(flat_index: np.ndarray, depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scatter depths into an (H, W) float32 image keeping the smallest depth per pixel."""
    image = np.zeros(height * width, dtype=np.float32)
    if flat_index.size:
        order = np.lexsort((depth, flat_index))  # by pixel, then nearest first
        flat_sorted = flat_index[order]
        first = np.ones(flat_sorted.size, dtype=bool)
        first[1:] = flat_sorted[1:] != flat_sorted[:-1]
        image[flat_sorted[first]] = depth[order][first]
    return image.reshape(height, width)


def depth_to_points(depth: np.ndarray, camera: PinholeCamera) -> np.ndarray:
    """Back-project a depth image into (N, 3) float32 points of the camera's optical frame.

    The inverse of ``project_to_depth`` for pixel centres: for pixel (u, v) with depth w,
    X solves P . [X; 1] = w . [u, v, 1]. Pixels without a value (NaN or <= 0) are skipped; the
    points come in row-major pixel order.
    """
    depth = np.asarray(depth)
    if depth.shape != (camera.height, camera.width):
        raise ValueError(f"depth {depth.shape} does not match the "
                         f"{camera.width}x{camera.height} camera")
    v, u = np.nonzero(np.isfinite(depth) & (depth > 0))
    w = depth[v, u].astype(np.float64)
    pixels = np.stack([u * w, v * w, w], axis=1) - camera.P[:, 3]
    return (pixels @ np.linalg.inv(camera.P[:, :3]).T).astype(np.float32)
