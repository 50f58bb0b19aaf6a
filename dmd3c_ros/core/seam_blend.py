"""Seam blending: the views of one rig meet halfway where they see the same surface (numpy).

Two overlapping cameras of a surround rig see the same surfaces; a learnt correction made view
by view puts them at slightly different depths (``core.surround`` measures it), which doubles
surfaces when the views are fused into one cloud. :class:`SeamBlender` moves, for every pair
of views and both directions, each pixel of A that lands on a pixel of B (lifted with A's
depth, carried through the rig's common LiDAR frame, projected into B as
``core.surround.overlap_depths`` does) along A's ray by half the log ratio between B's depth
there and the carried depth, when the two agree within ``tolerance``; beyond it they are not
the same surface (an occlusion, a thin object, an edge) and both keep their own depth. A pixel
carried into two neighbours takes the mean of both moves. Every move is computed from the
given depths, so the order of the pairs does not matter. With camera centres a metre apart and
surfaces metres away, moving along A's ray meets B halfway to first order: the pair's
disagreement falls towards zero where it was within ``tolerance``, and no depth moves by more
than half of it.

Cost: what depends only on the rig is computed once (:class:`SeamBlender` is built for one
set of cameras): for each direction, the band of A's columns and rows whose rays can land in B
(at any depth from ``NEAR`` to ``FAR``) and, on it, the ray of each pixel expressed in B's
pixels. A sweep then costs three multiply-adds, two divisions and a lookup per band pixel.
"""
from __future__ import annotations

from typing import Sequence

import cv2
import numpy as np

from .camera import PinholeCamera
from .strips import band_count, run_bands

NEAR, FAR = 0.5, 200.0  # metres: the depths the rig's bands are found for
MARGIN = 16             # pixels added around each band


def _carrier(camera_a: PinholeCamera, a_from_lidar, camera_b: PinholeCamera, b_from_lidar,
             rows: np.ndarray, columns: np.ndarray):
    """(Q (3, len(rows), len(columns)) float64, k (3,)): B's homogeneous pixel of A's pixel
    (u, v) = (columns[c], rows[r]) at depth w is w Q[:, r, c] + k (A's pixel lifted as
    ``depth_to_points`` does)."""
    b_from_a = (np.asarray(b_from_lidar, np.float64).reshape(4, 4)
                @ np.linalg.inv(np.asarray(a_from_lidar, np.float64).reshape(4, 4)))
    M = camera_b.P @ b_from_a                       # (3, 4): A's optical frame -> B's pixels
    inverse = np.linalg.inv(camera_a.P[:, :3])
    v, u = np.meshgrid(rows.astype(np.float64), columns.astype(np.float64), indexing="ij")
    Q = np.einsum("ij,jhw->ihw", M[:, :3] @ inverse, np.stack([u, v, np.ones_like(u)]))
    k = M[:, :3] @ (-inverse @ camera_a.P[:, 3]) + M[:, 3]
    return Q, k


def _carry(w, Q: np.ndarray, k: np.ndarray, shape: tuple[int, int]):
    """Depths ``w`` ((h, w), or one depth for all) of A's pixels whose carriers are ``Q``
    (3, h, w), ``k`` -> (their depth in B, B's column, B's row, where they land inside B in
    front of it); NaN or <= 0 depths land nowhere."""
    z, u, v = _carry_pixels(w, Q, k)
    with np.errstate(invalid="ignore"):
        inside = (w > 0) & (z >= 1e-6) & (u >= 0) & (u < shape[1]) & (v >= 0) & (v < shape[0])
    return z, u, v, inside


def _carry_pixels(w, Q: np.ndarray, k: np.ndarray):
    """Depths ``w`` ((h, w), or one depth for all) carried as :func:`_carry` says -> (depth in
    B, B's column, B's row), the pixels whole numbers in ``Q``'s dtype (float32 maps for
    ``cv2.remap`` in the blend), computed in place."""
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        z = np.multiply(w, Q[2])
        z += k[2]
        pixels = []
        for row in (0, 1):
            p = np.multiply(w, Q[row])
            p += k[row]
            p /= z
            p += np.float32(0.5)
            pixels.append(np.floor(p, out=p))
    return z, pixels[0], pixels[1]


class SeamBlender:
    """Blends the seams of one rig's views (module docstring).

    Args:
        cameras: the views' PinholeCameras; lidar_to_cameras: their (4, 4) LiDAR -> optical
            frame transforms; pairs: indices of views that overlap (e.g. adjacent views on a
            ring, ``core.surround.ring_pairs``); a pair whose views cannot see a common point
            costs nothing; tolerance: the relative disagreement (> 0) up to which two views are
            taken to see the same surface.
    """

    def __init__(self, cameras: Sequence[PinholeCamera], lidar_to_cameras: Sequence,
                 pairs: Sequence[tuple[int, int]], *, tolerance: float = 0.05) -> None:
        if not tolerance > 0:
            raise ValueError(f"tolerance must be positive, got {tolerance}")
        if len(cameras) != len(lidar_to_cameras):
            raise ValueError(f"{len(cameras)} cameras but {len(lidar_to_cameras)} transforms")
        self.cameras = list(cameras)
        self.tolerance = float(tolerance)
        self.pairs = [(int(a), int(b)) for a, b in pairs]
        self.lidar_to_cameras = [np.asarray(t, np.float64).reshape(4, 4)
                                 for t in lidar_to_cameras]
        self.directions = []   # (i, j, (rows, columns) slices of A, Q float32 there, k)
        for a, b in self.pairs:
            for i, j in ((a, b), (b, a)):
                ends = (cameras[i].height, cameras[i].width)
                carrier = (cameras[i], self.lidar_to_cameras[i], cameras[j],
                           self.lidar_to_cameras[j])
                coarse, k = _carrier(*carrier, np.arange(0, ends[0], 8),
                                     np.arange(0, ends[1], 8))
                shape = (cameras[j].height, cameras[j].width)
                seen = np.zeros(coarse.shape[1:], bool)
                for depth in np.geomspace(NEAR, FAR, 16):
                    seen |= _carry(depth, coarse, k, shape)[3]
                if not seen.any():
                    continue
                band = tuple(slice(max(int(x.min()) * 8 - MARGIN, 0),
                                   min(int(x.max()) * 8 + MARGIN + 1, end))
                             for x, end in zip(np.nonzero(seen), ends))
                Q, _ = _carrier(*carrier, np.arange(band[0].start, band[0].stop),
                                np.arange(band[1].start, band[1].stop))
                self.directions.append((i, j, band, Q.astype(np.float32), k.astype(np.float32)))

    def matches(self, cameras: Sequence[PinholeCamera], lidar_to_cameras: Sequence) -> bool:
        """Whether this blender was built for these cameras (sizes and P) and transforms."""
        return (len(cameras) == len(self.cameras) == len(lidar_to_cameras)
                and all(a.size == b.size and np.array_equal(a.P, b.P)
                        for a, b in zip(cameras, self.cameras))
                and all(np.array_equal(np.asarray(t, np.float64).reshape(4, 4), mine)
                        for t, mine in zip(lidar_to_cameras, self.lidar_to_cameras)))

    def __call__(self, depths: Sequence[np.ndarray], *,
                 threads: int | None = None) -> list[np.ndarray]:
        """The views' (H, W) depths in metres (NaN or <= 0 = none) -> new float32 images (NaN =
        none) that meet halfway at the seams; inputs are not modified. ``threads``: views
        blended side by side (None: one per usable core; 1: in the calling thread only); the
        answer does not depend on it."""
        if len(depths) != len(self.cameras):
            raise ValueError(f"got {len(depths)} depth images for {len(self.cameras)} cameras")
        for depth, camera in zip(depths, self.cameras):
            if np.shape(depth) != (camera.height, camera.width):
                raise ValueError(f"a depth image of shape {np.shape(depth)} for a "
                                 f"{camera.width}x{camera.height} camera")
        views = [np.asarray(d, dtype=np.float32) for d in depths]
        out: list[np.ndarray | None] = [None] * len(views)

        def blend(lo: int, hi: int, first: int, last: int) -> None:
            for i in range(first, last):   # each view reads the others and writes its own
                out[i] = self._blend_view(i, views)

        run_bands(len(views), band_count(threads, len(views), 1), 0, blend)
        return out

    def _blend_view(self, i: int, views: list[np.ndarray]) -> np.ndarray:
        """View ``i`` moved halfway towards every neighbour it meets (a new array)."""
        view = views[i]
        # The half log ratios summed and the number of moves, per pixel (only the parts met
        # below are written).
        sums = counts = None
        parts: list[tuple[slice, slice]] = []
        low, high = np.float32(1.0 / (1.0 + self.tolerance)), np.float32(1.0 + self.tolerance)
        half = np.float32(0.5)
        for a, j, band, Q, k in self.directions:
            if a != i:
                continue
            shape = views[j].shape
            # This sweep's depths land in B on part of the band: find it on every 8th pixel.
            _, _, _, coarse = _carry(view[band][::8, ::8], Q[:, ::8, ::8], k, shape)
            if not coarse.any():
                continue
            rows, columns = np.nonzero(coarse)
            part = tuple(slice(max(int(x.min()) * 8 - MARGIN, 0) + b.start,
                               min(int(x.max()) * 8 + MARGIN + 1 + b.start, b.stop))
                         for x, b in zip((rows, columns), band))
            local = tuple(slice(p.start - b.start, p.stop - b.start) for p, b in zip(part, band))
            w = view[part]
            z, u, v = _carry_pixels(w, Q[(slice(None), *local)], k)
            # B's depth where each pixel of the part lands (NaN beyond B's edges), looked up by
            # OpenCV at the whole-number pixel; a pixel behind B or without a depth is masked.
            seen = cv2.remap(views[j], u, v, cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT,
                             borderValue=np.nan)
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = np.divide(seen, z, out=seen)
                same = (w > 0) & (z >= 1e-6) & (ratio >= low) & (ratio <= high)  # NaN fails
                moves = np.log(ratio, out=np.zeros_like(ratio), where=same)
                moves *= half
            if sums is None:
                sums = np.zeros(view.shape, np.float32)
                counts = np.zeros(view.shape, np.uint8)
            sums[part] += moves
            np.add(counts[part], same.view(np.uint8), out=counts[part])
            parts.append(part)
        moved = view.copy()
        for part in parts:   # a part met twice moves its pixels once, by the mean
            n = counts[part]
            moves = n > 0
            factor = np.divide(sums[part], n, out=np.zeros(n.shape, np.float32), where=moves)
            np.exp(factor, out=factor, where=moves)
            np.multiply(moved[part], factor, out=moved[part], where=moves)
            n[moves] = 0   # done: an overlapping part must not move them again
        return moved


__all__ = ["SeamBlender"]
