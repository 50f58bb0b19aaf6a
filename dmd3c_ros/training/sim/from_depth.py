"""Stage 1 of DMD3C: LiDAR scans simulated from a depth map through mesh reconstruction.

DMD3C pre-trains on LiDAR simulated from the monocular depth of any image; its simulation code was
never released. Ours, written from the paper's description:

1. image + dense depth (a teacher's output, or ground truth) + intrinsics -> a triangle mesh:
   pixel centres back-projected with the camera's P, two triangles per 2x2 pixel quad, and no
   triangle across a depth discontinuity (relative depth jump within the triangle above
   ``max_relative_jump``), so that foreground and background are not joined by "skins";
2. a virtual LiDAR at a configurable or randomised pose near the camera casts one of the beam
   patterns of ``lidar.LIDAR_MODELS`` at that mesh (occlusion from the LiDAR's own viewpoint comes
   with the ray casting, so returns can land behind foreground edges as in real data);
3. the returns that fall in the image become sparse depth with a z-buffer (core.projection).

    python -m dmd3c_ros.training.sim.from_depth --kitti DIR --out PNG   # the picture in docs/
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from dmd3c_ros.core.calibration import rigid_transform
from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.training.sim.lidar import LIDAR_MODELS, LidarModel, simulate_lidar
from dmd3c_ros.training.sim.raycast import RayCaster

# LiDAR axes (x forward, y left, z up) in the camera optical frame, as columns.
LIDAR_AXES_IN_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
# KITTI: the Velodyne is 0.27 m behind and 0.08 m above the cameras.
KITTI_LIDAR_IN_OPTICAL = (0.0, -0.08, -0.27)


def default_camera_from_lidar(offset=KITTI_LIDAR_IN_OPTICAL) -> np.ndarray:
    """(4, 4) pose of a level LiDAR near the camera (KITTI's offset by default)."""
    return rigid_transform(LIDAR_AXES_IN_OPTICAL, offset)


def random_camera_from_lidar(rng: np.random.Generator, translation_m: float = 0.15,
                             rotation_deg: float = 1.5) -> np.ndarray:
    """KITTI's pose jittered by up to ``translation_m`` per axis and small yaw/pitch/roll."""
    angles = np.radians(rng.uniform(-rotation_deg, rotation_deg, 3))
    cx, cy, cz = np.cos(angles)
    sx, sy, sz = np.sin(angles)
    jitter = (np.array([[1, 0, 0], [0, cx, -sx], [0, sx, cx]])
              @ np.array([[cy, 0, sy], [0, 1, 0], [-sy, 0, cy]])
              @ np.array([[cz, -sz, 0], [sz, cz, 0], [0, 0, 1]]))
    offset = np.asarray(KITTI_LIDAR_IN_OPTICAL) + rng.uniform(-translation_m, translation_m, 3)
    return rigid_transform(jitter @ LIDAR_AXES_IN_OPTICAL, offset)


def depth_to_mesh(depth: np.ndarray, camera: PinholeCamera, *, max_relative_jump: float = 0.1,
                  min_depth: float = 0.1, max_depth: float = np.inf
                  ) -> tuple[np.ndarray, np.ndarray]:
    """Grid-triangulate a depth map in the camera's optical frame.

    Args:
        depth: (H, W) metres along the optical axis; NaN or <= 0 = no value.
        max_relative_jump: a triangle whose (max - min) / min depth exceeds this spans a
            discontinuity and is dropped. 0.1 keeps a flat road out to about 120 m at KITTI's
            geometry (neighbouring rows differ by 1 / (v - cy) there) and cuts objects from what
            is 10% farther behind them.
    Returns:
        vertices (H * W, 3) float32 metres (unused ones at the origin), triangles (T, 3) int32.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != (camera.height, camera.width):
        raise ValueError(f"depth {depth.shape} does not match the "
                         f"{camera.width}x{camera.height} camera")
    valid = np.isfinite(depth) & (depth >= min_depth) & (depth <= max_depth)
    w = np.where(valid, depth, 0.0)
    v, u = np.mgrid[0:camera.height, 0:camera.width]
    pixels = np.stack([u * w, v * w, w], -1).reshape(-1, 3) - camera.P[:, 3] * valid.reshape(-1, 1)
    vertices = (pixels @ np.linalg.inv(camera.P[:, :3]).T).astype(np.float32)
    index = np.arange(depth.size).reshape(depth.shape)
    a, b = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()  # quad corners: a b / c d
    c, d = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    triangles = np.concatenate([np.stack([a, c, b], 1), np.stack([b, c, d], 1)])
    flat_valid, flat_w = valid.ravel(), w.ravel()
    corner = flat_w[triangles]
    keep = flat_valid[triangles].all(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        jump = (corner.max(axis=1) - corner.min(axis=1)) / corner.min(axis=1)
    keep &= jump <= max_relative_jump
    return vertices, triangles[keep].astype(np.int32)


def simulate_lidar_from_depth(depth: np.ndarray, camera: PinholeCamera, model: LidarModel,
                              rng: np.random.Generator, *,
                              camera_from_lidar: np.ndarray | None = None,
                              randomise_pose: bool = False, max_relative_jump: float = 0.1
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate a sweep of ``model`` from a depth map.

    Returns:
        sparse: (H, W) float32 metres, 0 = no return (z-buffer: the nearest return wins);
        points: (N, 5) float32 x, y, z, intensity, ring in the LiDAR frame (returns in the image);
        camera_from_lidar: the (4, 4) pose used (lidar_to_camera of the sparse map).
    """
    if camera_from_lidar is None:
        camera_from_lidar = random_camera_from_lidar(rng) if randomise_pose \
            else default_camera_from_lidar()
    vertices, triangles = depth_to_mesh(depth, camera, max_relative_jump=max_relative_jump)
    points = simulate_lidar(RayCaster(vertices, triangles), model, camera_from_lidar, rng)
    uv, z = camera.project(points[:, :3] @ camera_from_lidar[:3, :3].T + camera_from_lidar[:3, 3])
    inside = (z > 0) & (uv[:, 0] >= -0.5) & (uv[:, 0] < camera.width - 0.5) & \
        (uv[:, 1] >= -0.5) & (uv[:, 1] < camera.height - 0.5)
    points = points[inside]
    sparse = project_to_depth(points, camera, camera_from_lidar)
    return sparse, points, camera_from_lidar


def fill_small_holes(depth: np.ndarray, iterations: int = 2) -> np.ndarray:
    """Semi-dense ground truth (KITTI's) for meshing: empty pixels next to values take the
    nearest neighbour depth in a 5x5 window, ``iterations`` times. Large holes stay holes."""
    depth = np.where(np.isfinite(depth) & (depth > 0), depth, 0.0).astype(np.float32)
    for _ in range(iterations):
        inverse = np.where(depth > 0, 1.0 / np.maximum(depth, 1e-6), 0.0).astype(np.float32)
        nearest = cv2.dilate(inverse, np.ones((5, 5), np.uint8))  # largest 1/d = nearest
        depth = np.where((depth == 0) & (nearest > 0), 1.0 / np.maximum(nearest, 1e-6), depth)
    return depth


def kitti_picture(folder: str | Path, out: str | Path, seed: int = 0) -> dict:
    """Simulate HDL-64 from the KITTI sample's ground truth and draw it above the real sweep."""
    from dmd3c_ros.core.calibration import load_kitti_calibration
    from dmd3c_ros.core.colorize import colorize_depth
    from dmd3c_ros.core.io import read_kitti_depth, read_rgb, write_rgb
    folder = Path(folder)
    rgb = read_rgb(folder / "image_02.png")
    camera = load_kitti_calibration(folder).camera
    gt = read_kitti_depth(folder / "groundtruth_02.png")
    sparse, points, _ = simulate_lidar_from_depth(fill_small_holes(gt), camera,
                                                  LIDAR_MODELS["hdl64"],
                                                  np.random.default_rng(seed))
    real = read_kitti_depth(folder / "velodyne_raw_02.png")

    def overlay(depth):
        canvas = (rgb * 0.45).astype(np.uint8)
        dots = cv2.dilate(depth, np.ones((2, 2), np.uint8))
        colored = colorize_depth(dots, 3.0, 80.0)
        canvas[dots > 0] = colored[dots > 0]
        return canvas

    picture = np.vstack([overlay(sparse), overlay(real)])
    write_rgb(out, picture)
    return {"simulated_valid_share": float(np.mean(sparse > 0)),
            "real_valid_share": float(np.mean(real > 0)), "points": int(len(points))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmd3c_ros.training.sim.from_depth",
                                     description=kitti_picture.__doc__)
    parser.add_argument("--kitti", required=True, help="KITTI sample folder (../shared/data/"
                        "kitti_dc/0000000005)")
    parser.add_argument("--out", required=True, help="PNG: simulated (top) and real (bottom)")
    args = parser.parse_args(argv)
    figures = kitti_picture(args.kitti, args.out)
    print(f"wrote {args.out}: simulated HDL-64 from the ground truth covers "
          f"{100 * figures['simulated_valid_share']:.2f}% of the pixels (the real sweep "
          f"{100 * figures['real_valid_share']:.2f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
