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
    index, u, v, depth = _visible_pixels(points, camera, lidar_to_camera, min_depth, max_depth)
    return zbuffer(v * camera.width + u, depth, camera.height, camera.width)


def _pixel_matrix(camera: PinholeCamera, lidar_to_camera) -> np.ndarray:
    """The (3, 4) matrix P . T that takes LiDAR points straight to homogeneous pixels."""
    if lidar_to_camera is None:
        return camera.P
    return camera.P @ np.asarray(lidar_to_camera, dtype=np.float64).reshape(4, 4)


def _visible_pixels(points, camera: PinholeCamera, lidar_to_camera, min_depth: float,
                    max_depth: float):
    """(index, u, v, depth) of the points that land in the image within the depth range: their
    row in ``points``, int64 column and row, float64 metres. Pixels are computed only for the
    points within the depth range (a 360 degree sweep has most of its points behind or beside
    the camera)."""
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be (N, >=3), got shape {points.shape}")
    M = _pixel_matrix(camera, lidar_to_camera)
    low, high = max(min_depth, 1e-6), max_depth
    xyz = points[:, :3]
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        if xyz.dtype == np.float32:  # a cheap float32 pre-selection with a margin ...
            rough = xyz @ M[2, :3].astype(np.float32) + np.float32(M[2, 3])
            margin = 1e-3 * (1.0 + np.abs(rough))
            index = np.flatnonzero((rough >= low - margin) & (rough <= high + margin))
        else:
            index = np.arange(len(xyz))
        # ... then the exact float64 pixels of the points left: one (k, 3) x (3, 3) product.
        near = np.take(points, index, axis=0)[:, :3].astype(np.float64)  # rows: fast gather
        pixels = near @ np.ascontiguousarray(M[:, :3].T) + M[:, 3]
        depth = pixels[:, 2]
        # Pixels of every point left, then one mask (out-of-range depths give any u, v: masked).
        u = np.floor(pixels[:, 0] / depth + 0.5)  # nearest pixel centre
        v = np.floor(pixels[:, 1] / depth + 0.5)
        inside = ((depth >= low) & (depth <= high)  # NaN fails
                  & (u >= 0) & (u < camera.width) & (v >= 0) & (v < camera.height))
    return (index[inside], u[inside].astype(np.int64), v[inside].astype(np.int64),
            depth[inside])


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
    M = _pixel_matrix(camera, lidar_to_camera)
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


def zbuffer(flat_index: np.ndarray, depth: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scatter depths into a new (H, W) float32 image keeping the smallest depth per pixel.

    flat_index: (N,) int pixel indices ``row * width + col``; depth: (N,) metres, > 0. Pixels no
    index reaches are 0 (no value).
    """
    image = np.zeros(height * width, dtype=np.float32)
    if flat_index.size:
        bits = np.asarray(depth, dtype=np.float32).view(np.uint32)
        if np.any(bits >> 31):  # the sign bit: a negative depth (or -0.0, -NaN)
            raise ValueError("zbuffer needs depths > 0")
        # One int64 sort by (pixel, depth): a positive float32's bits order like the float, so
        # the key holds the pixel in its high half and the exact depth in its low half.
        key = (np.asarray(flat_index, dtype=np.int64) << 32) | bits.astype(np.int64)
        key.sort()
        pixel = key >> 32
        first = np.ones(key.size, dtype=bool)  # the nearest return of each pixel
        first[1:] = pixel[1:] != pixel[:-1]
        image[pixel[first]] = (key[first] & 0xFFFFFFFF).astype(np.uint32).view(np.float32)
    return image.reshape(height, width)


def depth_to_points(depth: np.ndarray, camera: PinholeCamera, stride: int = 1) -> np.ndarray:
    """Back-project a depth image into (N, 3) float32 points of the camera's optical frame.

    The inverse of ``project_to_depth`` for pixel centres: for pixel (u, v) with depth w,
    X solves P . [X; 1] = w . [u, v, 1]. Pixels without a value (NaN or <= 0) are skipped; the
    points come in row-major pixel order. ``stride``: only every stride-th pixel in both
    directions (rows and columns 0, stride, 2 x stride, ...).
    """
    depth = np.asarray(depth)
    if depth.shape != (camera.height, camera.width):
        raise ValueError(f"depth {depth.shape} does not match the "
                         f"{camera.width}x{camera.height} camera")
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    kept = depth[::stride, ::stride]
    v, u = np.nonzero(np.isfinite(kept) & (kept > 0))
    w = kept[v, u].astype(np.float64)
    u, v = u * stride, v * stride
    pixels = np.stack([u * w, v * w, w], axis=1) - camera.P[:, 3]
    return (pixels @ np.linalg.inv(camera.P[:, :3]).T).astype(np.float32)
