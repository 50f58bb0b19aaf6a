"""LiDAR split: hold a share of a sweep's points out of the input and score the completion on them
(ground truth for recordings without a depth topic).

Two splits:

- ``split_points`` (one camera, ``dmd3c eval --lidar-split F``): a seeded random share F of the
  points that land in the image.
- ``split_sweep`` (a surround rig, ``dmd3c eval --nuscenes --holdout-every N [--holdout-offset
  K]``): every N-th point of the whole sweep (index % N == K, K = 0 by default), one input for all
  cameras; each camera's ground truth is the held-out points that land in it.

For ``split_points`` only points that project into the image between ``min_depth`` and
``max_depth`` are candidates; the rest of the sweep (behind the camera, outside the image, out of
range) always stays in the input. In both, the held-out points are rendered with the same
projection and z-buffer as the input (``core.projection.project_to_depth``), so a held-out pixel's
ground truth is the nearest held-out return on it.
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
    kept, held_points = _apply(points, held)
    return kept, held_out_depth(held_points, camera, lidar_to_camera, min_depth=min_depth,
                                max_depth=max_depth)


def _apply(points: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(kept rows, held rows) of ``points`` under the (N,) bool mask ``held``; copies, in the
    original order."""
    return points[~held].copy(), points[held].copy()


def held_out_depth(held_points: np.ndarray, camera: PinholeCamera, lidar_to_camera, *,
                   min_depth: float = 0.1, max_depth: float = 100.0) -> np.ndarray:
    """The held-out points as sparse ground truth of one camera: (H, W) float32 metres, 0 = no
    value, rendered with the input's projection and z-buffer (``project_to_depth``: the nearest
    held-out return per pixel)."""
    return project_to_depth(held_points, camera, lidar_to_camera, min_depth=min_depth,
                            max_depth=max_depth)


def check_holdout(every: int, offset: int = 0) -> tuple[int, int]:
    """(every, offset) as ints; a ValueError naming the command-line flag unless every >= 2 and
    0 <= offset < every."""
    every, offset = int(every), int(offset)
    if every < 2:
        raise ValueError(f"--holdout-every must be an integer >= 2 (every N-th point held out), "
                         f"got {every}")
    if not 0 <= offset < every:
        raise ValueError(f"--holdout-offset must lie in 0..{every - 1} (index % {every} == "
                         f"offset is held out), got {offset}")
    return every, offset


def every_nth(every: int) -> str:
    """Words for the hold-out: "every 2nd point", "every 5th point", "every 21st point"."""
    n = int(every)
    suffix = "th" if n % 100 in (11, 12, 13) else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"every {n}{suffix} point"


def holdout_every_mask(count: int, every: int, offset: int = 0) -> np.ndarray:
    """(count,) bool: True for every ``every``-th point (index % every == offset; every=5 holds
    out 20 %, offsets 0-4 the five disjoint fifths). Deterministic: no seed, the same points for
    every camera of the sweep."""
    every, offset = check_holdout(every, offset)
    return np.arange(int(count)) % every == offset


def split_sweep(points: np.ndarray, views, every: int = 5, *, offset: int = 0,
                min_depth: float = 0.1, max_depth: float = 100.0
                ) -> tuple[np.ndarray, list[np.ndarray]]:
    """Split one sweep for all cameras of a rig: every ``every``-th point (index % every ==
    ``offset``) is held out of the input, whichever camera (if any) it lands in.

    Args:
        points: (N, >=3) sweep in the LiDAR frame (metres; extra columns kept); not modified.
        views: (camera, lidar_to_camera) pairs, one per camera (as in ``visible_mask``).
        every: N >= 2; 1/N of the sweep is held out.
        offset: 0 .. N-1; which of the N disjoint shares.
        min_depth, max_depth: metres along each optical axis, as for the input's projection.
    Returns:
        (input_points (N - k, C) copy of the kept rows in their original order, the one input
         of every camera (as the surround node receives the sweep);
         per view the held-out ground truth (H, W) float32 metres, 0 = no value).
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] < 3:
        raise ValueError(f"points must be (N, >=3), got shape {points.shape}")
    kept, held_points = _apply(points, holdout_every_mask(len(points), every, offset))
    truths = [held_out_depth(held_points, camera, T, min_depth=min_depth, max_depth=max_depth)
              for camera, T in views]
    return kept, truths
