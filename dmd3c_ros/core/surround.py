"""Cross-view consistency of a surround rig's depth images (numpy only).

Two cameras that overlap see the same surfaces, so their depth images should describe the same
3-D points. ``overlap_disagreement`` measures how far they do not: every pixel of camera A with a
depth is lifted to 3-D, carried into camera B through the LiDAR frame (the rig's common frame:
``b_from_lidar . inverse(a_from_lidar)``), projected into B, and where it lands inside B on a
pixel with a depth of B, its depth in B is compared with B's depth there.

Conventions as ``core.camera`` / ``core.projection``: depth is metres along the optical axis (the
``w`` of ``P . [X; 1] = w . [u, v, 1]``); a landing point takes the pixel whose centre is nearest
(as ``project_to_depth`` rounds); NaN or <= 0 means no value, so predictions (NaN = none) and
sparse maps (0 = none) both work.

What the figures include: occlusion (a surface A sees that B does not, behind something nearer to
B) and disocclusion count as disagreement, as does any calibration or timing error of the rig.
The median is the figure least affected by them.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .camera import PinholeCamera
from .projection import depth_to_points, project_points

FIGURES = ("mean_abs_m", "median_abs_m", "rmse_m", "abs_rel", "mean_m", "median_rel_pct",
           "p90_rel_pct")


def ring_pairs(names: Sequence[str]) -> list[tuple[str, str]]:
    """Adjacent pairs of cameras on a ring, in the order given, the last one closing the ring.

    ``ring_pairs(["A", "B", "C"])`` is ``[("A", "B"), ("B", "C"), ("C", "A")]``; two cameras
    give one pair, fewer give none. For nuScenes pass CAM_FRONT, CAM_FRONT_RIGHT, CAM_BACK_RIGHT,
    CAM_BACK, CAM_BACK_LEFT, CAM_FRONT_LEFT (``core.nuscenes_sample.CAMERAS``).
    """
    names = list(names)
    if len(names) < 2:
        return []
    if len(names) == 2:
        return [(names[0], names[1])]
    return [(names[i], names[(i + 1) % len(names)]) for i in range(len(names))]


def ring_index_pairs(names: Sequence[str], ring: Sequence[str] | None = None
                     ) -> list[tuple[int, int]]:
    """:func:`ring_pairs` as indices into ``names``: the cameras of ``ring`` (default:
    ``names`` itself) that ``names`` holds, adjacent in ``ring``'s order."""
    index = {name: i for i, name in enumerate(names)}
    present = [name for name in (names if ring is None else ring) if name in index]
    return [(index[a], index[b]) for a, b in ring_pairs(present)]


def overlap_depths(depth_a: np.ndarray, camera_a: PinholeCamera, a_from_lidar: np.ndarray,
                   depth_b: np.ndarray, camera_b: PinholeCamera, b_from_lidar: np.ndarray,
                   *, pixels: bool = False):
    """The depths ``overlap_disagreement`` compares (arguments as there).

    Returns:
        (depth of A's points in B (K,) float64 metres, B's depth on the pixels they land on (K,)
        float64 metres), one entry per valid pixel of A that lands inside B, in front of it,
        on a pixel with a depth of B; with ``pixels`` also the (row, column) of those pixels
        in A, two (K,) int arrays.
    """
    depth_b = np.asarray(depth_b, dtype=np.float64)
    if depth_b.shape != (camera_b.height, camera_b.width):
        raise ValueError(f"depth_b {depth_b.shape} does not match the "
                         f"{camera_b.width}x{camera_b.height} camera")
    points_a = depth_to_points(depth_a, camera_a).astype(np.float64)  # (N, 3) A's optical frame
    b_from_a = (np.asarray(b_from_lidar, dtype=np.float64).reshape(4, 4)
                @ np.linalg.inv(np.asarray(a_from_lidar, dtype=np.float64).reshape(4, 4)))
    visible, u, v, w = project_points(points_a, camera_b, b_from_a, min_depth=1e-6)
    reference = depth_b[v[visible], u[visible]]
    ok = np.isfinite(reference) & (reference > 0)
    if not pixels:
        return w[visible][ok], reference[ok]
    depth_a = np.asarray(depth_a)
    rows, columns = np.nonzero(np.isfinite(depth_a) & (depth_a > 0))  # depth_to_points' order
    return w[visible][ok], reference[ok], rows[visible][ok], columns[visible][ok]


def relative_disagreement(depth: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """|depth - reference| / their mean, in per cent (both metres, > 0)."""
    depth, reference = np.asarray(depth, np.float64), np.asarray(reference, np.float64)
    return 200.0 * np.abs(depth - reference) / (depth + reference)


def seam_map(depth_a: np.ndarray, camera_a: PinholeCamera, a_from_lidar: np.ndarray,
             depth_b: np.ndarray, camera_b: PinholeCamera, b_from_lidar: np.ndarray
             ) -> np.ndarray:
    """(H_a, W_a) float32: at each pixel of A that ``overlap_disagreement`` compares with B,
    the :func:`relative_disagreement` in per cent; NaN elsewhere (arguments as there)."""
    return _seam_map(camera_a, overlap_depths(depth_a, camera_a, a_from_lidar, depth_b,
                                              camera_b, b_from_lidar, pixels=True))


def _seam_map(camera: PinholeCamera, overlap) -> np.ndarray:
    carried, reference, rows, columns = overlap
    out = np.full((camera.height, camera.width), np.nan, np.float32)
    out[rows, columns] = relative_disagreement(carried, reference)
    return out


def disagreement_figures(depth: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Figures of ``depth - reference`` (both (K,) metres, > 0).

    Returns:
        ``pixels`` (K), ``mean_abs_m``, ``median_abs_m``, ``rmse_m`` (metres), ``abs_rel``
        (mean of |depth - reference| / reference), ``mean_m`` (signed mean of depth -
        reference: positive when the first lies behind the second), ``median_rel_pct`` and
        ``p90_rel_pct`` (median and 90th percentile of :func:`relative_disagreement`, per cent);
        NaN figures when K = 0.
    """
    depth = np.asarray(depth, dtype=np.float64).ravel()
    reference = np.asarray(reference, dtype=np.float64).ravel()
    if depth.shape != reference.shape:
        raise ValueError(f"{depth.shape} and {reference.shape} depths differ in count")
    if not depth.size:
        return {"pixels": 0, **{name: float("nan") for name in FIGURES}}
    diff = depth - reference
    absolute = np.abs(diff)
    relative = relative_disagreement(depth, reference)
    return {"pixels": int(depth.size),
            "mean_abs_m": float(absolute.mean()),
            "median_abs_m": float(np.median(absolute)),
            "rmse_m": float(np.sqrt(np.mean(diff ** 2))),
            "abs_rel": float(np.mean(absolute / reference)),
            "mean_m": float(diff.mean()),
            "median_rel_pct": float(np.median(relative)),
            "p90_rel_pct": float(np.percentile(relative, 90))}


def overlap_disagreement(depth_a: np.ndarray, camera_a: PinholeCamera, a_from_lidar: np.ndarray,
                         depth_b: np.ndarray, camera_b: PinholeCamera, b_from_lidar: np.ndarray
                         ) -> dict[str, float]:
    """How far camera A's depth image disagrees with camera B's where A's points land in B.

    Args:
        depth_a: (H_a, W_a) float metres along A's optical axis; NaN or <= 0 = no value.
        camera_a: A's PinholeCamera (pixel = P . [X; 1]); its size is depth_a's.
        a_from_lidar: (4, 4) LiDAR frame -> A's optical frame (the ``lidar_to_camera`` of A).
        depth_b, camera_b, b_from_lidar: the same for B.
    Returns:
        ``disagreement_figures`` of (A's point's depth in B - B's depth at the pixel it lands
        on): ``pixels`` compared, ``mean_abs_m``, ``median_abs_m``, ``rmse_m``, ``abs_rel``
        (relative to B's depth), ``mean_m`` (signed); NaN figures when nothing lands.
    Inputs are not modified.
    """
    return disagreement_figures(*overlap_depths(depth_a, camera_a, a_from_lidar, depth_b,
                                                camera_b, b_from_lidar))


def pair_disagreement(depth_a: np.ndarray, camera_a: PinholeCamera, a_from_lidar: np.ndarray,
                      depth_b: np.ndarray, camera_b: PinholeCamera, b_from_lidar: np.ndarray,
                      *, maps: bool = False):
    """``overlap_disagreement`` in both directions (A into B and B into A), pooled: one set of
    figures over the pixels of both directions (arguments as there). Symmetric in A and B
    except for ``mean_m``'s sign convention (each direction: the carried depth minus the
    reference). With ``maps``: (figures, A's :func:`seam_map` against B, B's against A), from
    the same comparisons."""
    ab = overlap_depths(depth_a, camera_a, a_from_lidar, depth_b, camera_b, b_from_lidar,
                        pixels=maps)
    ba = overlap_depths(depth_b, camera_b, b_from_lidar, depth_a, camera_a, a_from_lidar,
                        pixels=maps)
    figures = disagreement_figures(np.concatenate([ab[0], ba[0]]),
                                   np.concatenate([ab[1], ba[1]]))
    if not maps:
        return figures
    return figures, _seam_map(camera_a, ab), _seam_map(camera_b, ba)


def fuse_views(depths: Sequence[np.ndarray], cameras: Sequence[PinholeCamera],
               lidar_to_cameras: Sequence[np.ndarray], stride: int = 1
               ) -> tuple[np.ndarray, np.ndarray]:
    """Every view's depth as one cloud in the LiDAR (rig) frame.

    Args:
        depths: per view (H, W) metres, NaN or <= 0 = none; cameras: their PinholeCameras;
        lidar_to_cameras: their (4, 4) LiDAR -> optical frame transforms; stride: every
        ``stride``-th pixel in both directions (from the top-left one).
    Returns:
        ((N, 3) float32 points in the LiDAR frame, (N,) int32 index of the view of each point).
    """
    if stride < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    points, owners = [], []
    for index, (depth, camera, to_camera) in enumerate(zip(depths, cameras, lidar_to_cameras)):
        in_camera = depth_to_points(depth, camera, stride).astype(np.float64)
        to_lidar = np.linalg.inv(np.asarray(to_camera, np.float64).reshape(4, 4))
        points.append((in_camera @ to_lidar[:3, :3].T + to_lidar[:3, 3]).astype(np.float32))
        owners.append(np.full(len(in_camera), index, np.int32))
    if not points:
        return np.zeros((0, 3), np.float32), np.zeros(0, np.int32)
    return np.concatenate(points), np.concatenate(owners)


def mean_figures(rows: Sequence[dict], sliver: float = 0.0) -> dict[str, float]:
    """Unweighted mean of each figure over the rows that compared any pixel, with ``pairs``
    (rows averaged) and ``pixels`` (their total). With ``sliver`` > 0 a row that compared fewer
    than ``sliver`` x the largest row's pixels (a sliver of overlap, whose few pixels sit where
    two fields of view barely meet) is left out of the mean; ``slivers`` counts those."""
    rows = [r for r in rows if r.get("pixels", 0) > 0]
    largest = max((r["pixels"] for r in rows), default=0)
    kept = [r for r in rows if r["pixels"] >= sliver * largest]
    out: dict[str, float] = {name: float(np.mean([r[name] for r in kept])) if kept
                             else float("nan") for name in FIGURES}
    out["pairs"] = len(kept)
    out["pixels"] = int(sum(r["pixels"] for r in kept))
    if sliver > 0:
        out["slivers"] = len(rows) - len(kept)
    return out


__all__ = ["FIGURES", "disagreement_figures", "fuse_views", "mean_figures", "overlap_depths",
           "overlap_disagreement", "pair_disagreement", "relative_disagreement", "ring_pairs",
           "seam_map"]
