"""A spinning LiDAR's scan lines in an image: the rings of an ordered sweep, and the gaps along
them filled from the returns on either side (``split_bounds``' ``ring`` answer).

A spinning LiDAR's returns come ring by ring, each ring in azimuth order (KITTI's velodyne.bin is
stored so), so a ring ends where the azimuth wraps from +180 to -180 degrees. Two consecutive
returns of one ring that lie a few pixels apart in the image and agree in depth bracket a stretch
of one surface as the LiDAR saw it: ``ring_gaps`` draws the depth between them. This is the
LiDAR's view: it is what held-out returns of the same sweep score, not necessarily what the
camera sees there (``models/README.md``, "What a LiDAR split rewards").
"""
from __future__ import annotations

import numpy as np

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import project_points

RINGS = (16, 256)   # a plausible count of rings; anything else: the order is not ring by ring
AGREE = 0.05        # two returns agree within 5 % of the nearer one's depth
MAX_GAP_PX = 6      # returns farther apart than this in the image bracket no gap


def scan_rings(points: np.ndarray) -> np.ndarray | None:
    """(N,) int ring index of an ordered sweep (a new ring wherever the azimuth wraps from +180
    to -180 degrees), or None when that gives an implausible count of rings (the sweep is not
    stored ring by ring in azimuth order)."""
    points = np.asarray(points)
    if len(points) < 2:
        return None
    azimuth = np.arctan2(points[:, 1], points[:, 0])
    ring = np.zeros(len(points), np.int64)
    ring[1:] = np.cumsum(np.diff(azimuth) < -np.pi)
    return ring if RINGS[0] <= ring[-1] + 1 <= RINGS[1] else None


def ring_gaps(points: np.ndarray, ring: np.ndarray, camera: PinholeCamera, lidar_to_camera, *,
              occupied: np.ndarray | None = None, min_depth: float = 0.1,
              max_depth: float = 100.0) -> np.ndarray:
    """(H, W) float32 metres, 0 = none: the pixels between consecutive returns of one ring that
    both land in the image, 2 to ``MAX_GAP_PX`` pixels apart, and agree in depth within
    ``AGREE``, each given the depth interpolated between them (the nearest where two gaps
    cross). Pixels where ``occupied`` (H, W) is nonzero (the input's own returns) are left out.
    """
    visible, u, v, depth = project_points(points, camera, lidar_to_camera, min_depth=min_depth,
                                          max_depth=max_depth)
    first = np.flatnonzero(visible[:-1] & visible[1:] & (ring[:-1] == ring[1:]))
    za, zb = depth[first], depth[first + 1]
    du, dv = u[first + 1] - u[first], v[first + 1] - v[first]
    steps = np.maximum(np.abs(du), np.abs(dv))
    keep = (np.abs(za - zb) <= AGREE * np.minimum(za, zb)) & (steps >= 2) & (steps <= MAX_GAP_PX)
    first, za, zb, du, dv, steps = (a[keep] for a in (first, za, zb, du, dv, steps))
    # every inner step s = 1 .. steps-1 of every segment, as flat arrays
    segment = np.repeat(np.arange(len(first)), steps - 1)
    starts = np.cumsum(steps - 1) - (steps - 1)
    step = np.arange(len(segment)) - np.repeat(starts, steps - 1) + 1
    w = step / steps[segment]
    cols = np.floor(u[first][segment] + w * du[segment] + 0.5).astype(np.int64)
    rows = np.floor(v[first][segment] + w * dv[segment] + 0.5).astype(np.int64)
    values = (za[segment] + w * (zb[segment] - za[segment])).astype(np.float32)
    gaps = np.full((camera.height, camera.width), np.inf, np.float32)
    np.minimum.at(gaps, (rows, cols), values)    # the nearest where two gaps cross
    gaps[np.isinf(gaps)] = 0.0
    if occupied is not None:
        gaps[np.asarray(occupied) > 0] = 0.0
    return gaps
