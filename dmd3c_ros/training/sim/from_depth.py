"""Stage 1 of DMD3C: LiDAR scans simulated from a depth map through mesh reconstruction.

DMD3C pre-trains on LiDAR simulated from the monocular depth of any image; its simulation code was
never released. Ours, written from the paper's description:

1. depth (a teacher's dense output, or ground truth) + the camera's P -> a triangle mesh: pixel
   centres back-projected with P, two triangles per 2x2 pixel quad, and no triangle across a depth
   discontinuity (relative depth jump within the triangle above ``max_relative_jump``), so that
   foreground and background are not joined by "skins";
2. a virtual LiDAR at a given, KITTI-like or randomised pose near the camera casts one of the beam
   patterns of ``lidar.LIDAR_MODELS`` at that mesh; occlusion from the LiDAR's own viewpoint comes
   with the ray casting: background that the camera sees but the LiDAR does not (its shadow
   beside a foreground edge) gets no returns, as in real data. Background that only the LiDAR
   sees is not in a mesh made from the camera's view, so beams towards it pass through the gap
   at the edge and return nothing: the "see-through" points of real sweeps (far returns on
   foreground pixels, next to edges) do not appear;
3. the returns that fall in the image become sparse depth with a z-buffer (core.projection).

The picture in docs/images (HDL-64 from KITTI's ground truth, the real sweep, 2x crops of both):

    python -m dmd3c_ros.training.sim.from_depth --kitti ../shared/data/kitti_dc/0000000005 \
        --out docs/images/lidar_from_depth_kitti.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from dmd3c_ros.core.calibration import rigid_transform
from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import project_to_depth, transform_points
from dmd3c_ros.training.sim.lidar import LIDAR_MODELS, LidarModel, simulate_lidar
from dmd3c_ros.training.sim.raycast import RayCaster

# LiDAR axes (x forward, y left, z up) in the camera optical frame (x right, y down, z forward).
LIDAR_AXES_IN_OPTICAL = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
# KITTI: the Velodyne is about 0.27 m behind and 0.08 m above the cameras (optical frame).
KITTI_LIDAR_IN_OPTICAL = (0.0, -0.08, -0.27)


def default_camera_from_lidar(offset=KITTI_LIDAR_IN_OPTICAL) -> np.ndarray:
    """(4, 4) pose of a level LiDAR (x forward) at ``offset`` metres in the optical frame."""
    return rigid_transform(LIDAR_AXES_IN_OPTICAL, offset)


def random_camera_from_lidar(rng: np.random.Generator, translation_m: float = 0.15,
                             rotation_deg: float = 1.5, base: np.ndarray | None = None
                             ) -> np.ndarray:
    """``base`` (default: KITTI's pose) moved by up to ``translation_m`` per optical axis and
    turned by up to ``rotation_deg`` of roll, pitch and yaw about the LiDAR's own axes
    (uniform draws)."""
    base = default_camera_from_lidar() if base is None else np.asarray(base, dtype=np.float64)
    roll, pitch, yaw = np.radians(rng.uniform(-rotation_deg, rotation_deg, 3))
    cr, cp, cy = np.cos([roll, pitch, yaw])
    sr, sp, sy = np.sin([roll, pitch, yaw])
    turn = (np.array([[cy, -sy, 0], [sy, cy, 0], [0, 0, 1]])
            @ np.array([[cp, 0, sp], [0, 1, 0], [-sp, 0, cp]])
            @ np.array([[1, 0, 0], [0, cr, -sr], [0, sr, cr]]))
    offset = base[:3, 3] + rng.uniform(-translation_m, translation_m, 3)
    return rigid_transform(base[:3, :3] @ turn, offset)


def depth_to_mesh(depth: np.ndarray, camera: PinholeCamera, *, stride: int = 1,
                  max_relative_jump: float = 0.1, min_depth: float = 0.1,
                  max_depth: float = np.inf) -> tuple[np.ndarray, np.ndarray]:
    """Grid-triangulate a depth map in the camera's optical frame.

    Every ``stride``-th pixel centre (u, v) with depth w becomes the vertex X solving
    P . [X; 1] = w . [u, v, 1] (as ``core.projection.depth_to_points``). Each 2x2 quad of samples
    gives two triangles, split along the diagonal whose ends differ least in depth (so that a
    quad with one invalid corner keeps the triangle of the other three). A triangle is dropped
    when a corner has no value (NaN, <= 0, outside [min_depth, max_depth]) or when
    (max - min) / min of its corner depths exceeds ``max_relative_jump``.

    The default 0.1 cuts objects from whatever is 10% farther behind them and keeps a flat road:
    at KITTI's geometry neighbouring rows of the road differ by z / (fy * 1.65 m) relatively,
    under 0.1 out to about 120 m at stride 1 (the limit shrinks with the stride).

    Args:
        depth: (H, W) metres along the optical axis of ``camera``.
    Returns:
        vertices: (V, 3) float32 metres in the camera's optical frame (V = number of samples;
            samples without a value sit at the origin and belong to no triangle);
        triangles: (T, 3) int32 vertex indices.
    """
    depth = np.asarray(depth, dtype=np.float64)
    if depth.shape != (camera.height, camera.width):
        raise ValueError(f"depth {depth.shape} does not match the "
                         f"{camera.width}x{camera.height} camera")
    if int(stride) < 1:
        raise ValueError(f"stride must be >= 1, got {stride}")
    stride = int(stride)
    rows, cols = np.arange(0, camera.height, stride), np.arange(0, camera.width, stride)
    sampled = depth[np.ix_(rows, cols)]
    valid = np.isfinite(sampled) & (sampled > 0) & (sampled >= min_depth) & (sampled <= max_depth)
    w = np.where(valid, sampled, 0.0)
    v, u = np.meshgrid(rows, cols, indexing="ij")
    pixels = np.stack([u * w, v * w, w], -1).reshape(-1, 3) - camera.P[:, 3] * valid.reshape(-1, 1)
    vertices = (pixels @ np.linalg.inv(camera.P[:, :3]).T).astype(np.float32)

    # Quad corners a b / c d: their depths (NaN = no value) and vertex indices.
    depth_nan = np.where(valid, sampled, np.nan).astype(np.float32)
    wa, wb = depth_nan[:-1, :-1].ravel(), depth_nan[:-1, 1:].ravel()
    wc, wd = depth_nan[1:, :-1].ravel(), depth_nan[1:, 1:].ravel()
    index = np.arange(sampled.size, dtype=np.int32).reshape(sampled.shape)
    ia, ib = index[:-1, :-1].ravel(), index[:-1, 1:].ravel()
    ic, id_ = index[1:, :-1].ravel(), index[1:, 1:].ravel()
    with np.errstate(invalid="ignore"):
        jump_ad = np.abs(wa - wd) / np.minimum(wa, wd)
        jump_bc = np.abs(wb - wc) / np.minimum(wb, wc)
        along_ad = (jump_ad < jump_bc) | (np.isnan(jump_bc) & ~np.isnan(jump_ad))
        # Split a-d: (a, c, d) and (d, b, a); split b-c: (a, c, b) and (d, b, c). Same winding.
        keep1 = _spread(wa, wc, np.where(along_ad, wd, wb)) <= max_relative_jump
        keep2 = _spread(wd, wb, np.where(along_ad, wa, wc)) <= max_relative_jump  # NaN fails
    first = np.stack([ia, ic, np.where(along_ad, id_, ib)], 1)[keep1]
    second = np.stack([id_, ib, np.where(along_ad, ia, ic)], 1)[keep2]
    return vertices, np.concatenate([first, second]).astype(np.int32)


def _spread(x: np.ndarray, y: np.ndarray, z: np.ndarray) -> np.ndarray:
    """(max - min) / min of three depths, elementwise; NaN where any is NaN."""
    low = np.minimum(np.minimum(x, y), z)
    return (np.maximum(np.maximum(x, y), z) - low) / low


def simulate_lidar_from_depth(depth: np.ndarray, camera: PinholeCamera, model: LidarModel,
                              camera_from_lidar: np.ndarray | None,
                              rng: np.random.Generator, *, randomise_pose: bool = False,
                              pose_jitter: tuple[float, float] = (0.15, 1.5), stride: int = 1,
                              max_relative_jump: float = 0.1, min_depth: float = 0.1,
                              max_depth: float = np.inf
                              ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Simulate a sweep of ``model`` from a depth map (DMD3C stage 1).

    Args:
        depth: (H, W) metres along the optical axis (NaN or <= 0 = no value).
        camera: the depth map's camera; the mesh lives in the frame its P projects from.
        camera_from_lidar: (4, 4) LiDAR pose in that frame (= lidar_to_camera); None: a level
            LiDAR 0.27 m behind and 0.08 m above the camera, as on KITTI's car.
        rng: noise, dropout and pose draws.
        randomise_pose: jitter the pose by up to ``pose_jitter`` = (metres per axis, degrees of
            roll, pitch and yaw), see ``random_camera_from_lidar``.
        stride, max_relative_jump, min_depth, max_depth: meshing, see ``depth_to_mesh``.
    Returns:
        sparse: (H, W) float32 metres, 0 = no return (z-buffer: the nearest return wins);
        points: (N, 5) float32 x, y, z, intensity, ring in the LiDAR frame: the returns that
            project into the image (azimuth-major, as ``simulate_lidar``);
        camera_from_lidar: the (4, 4) pose used (the lidar_to_camera of ``sparse``).
    """
    base = default_camera_from_lidar() if camera_from_lidar is None \
        else np.asarray(camera_from_lidar, dtype=np.float64).reshape(4, 4)
    pose = random_camera_from_lidar(rng, *pose_jitter, base=base) if randomise_pose else base
    vertices, triangles = depth_to_mesh(depth, camera, stride=stride,
                                        max_relative_jump=max_relative_jump,
                                        min_depth=min_depth, max_depth=max_depth)
    points = simulate_lidar(RayCaster(vertices, triangles), model, pose, rng)
    uv, z = camera.project(transform_points(points, pose))
    with np.errstate(invalid="ignore"):  # NaN uv behind the camera fails the tests
        inside = (z >= 0.1) & (uv[:, 0] >= -0.5) & (uv[:, 0] < camera.width - 0.5) & \
            (uv[:, 1] >= -0.5) & (uv[:, 1] < camera.height - 0.5)
    points = points[inside]
    return project_to_depth(points, camera, pose, min_depth=0.1), points, pose


def fill_small_holes(depth: np.ndarray, size: int = 5) -> np.ndarray:
    """Close holes of up to about ``size`` - 1 pixels in semi-dense depth, for meshing only.

    KITTI's ground truth (accumulated sweeps) is pierced by gaps a few pixels wide; a mesh of it
    as is would let beams through. An empty pixel inside the morphological closing of the valid
    mask (so not outside the measured region) takes the nearest depth of its size x size
    neighbourhood (the foreground, so no background bleeds into objects). Larger holes stay.
    Returns (H, W) float32 metres, 0 = no value; the input is not modified.
    """
    depth = np.asarray(depth, dtype=np.float32)
    valid = np.isfinite(depth) & (depth > 0)
    kernel = np.ones((size, size), np.uint8)
    enclosed = cv2.morphologyEx(valid.astype(np.uint8), cv2.MORPH_CLOSE, kernel).astype(bool)
    inverse = np.where(valid, 1.0 / np.where(valid, depth, 1.0), 0.0).astype(np.float32)
    nearest = cv2.dilate(inverse, kernel)  # largest inverse depth = nearest surface
    fill = enclosed & ~valid & (nearest > 0)
    out = np.where(valid, depth, 0.0).astype(np.float32)
    out[fill] = 1.0 / nearest[fill]
    return out


def _overlay(rgb: np.ndarray, depth: np.ndarray, label: str) -> np.ndarray:
    from dmd3c_ros.core.colorize import colorize_depth
    canvas = (rgb * 0.4).astype(np.uint8)
    dots = cv2.dilate(depth, np.ones((2, 2), np.uint8))  # 2x2 dots: visible when downscaled
    colored = colorize_depth(dots, 4.0, 60.0)
    canvas[dots > 0] = colored[dots > 0]
    cv2.putText(canvas, label, (10, 26), cv2.FONT_HERSHEY_SIMPLEX, 0.7, (255, 255, 255), 2,
                cv2.LINE_AA)
    return canvas


def kitti_picture(folder: str | Path, out: str | Path, model: str = "hdl64",
                  seed: int = 0) -> dict:
    """Simulate ``model`` from a KITTI sample's semi-dense ground truth (small holes closed by
    ``fill_small_holes``) with the virtual LiDAR at the real Velodyne's calibrated pose, and write
    a picture: the simulated points over the image (top), the real sweep's ``velodyne_raw_02``
    (middle), and 2x crops of both side by side (bottom). Colour = depth, 4-60 m, inverse scale.
    Returns the valid-pixel shares and the number of simulated points in the image."""
    from dmd3c_ros.core.calibration import load_kitti_calibration
    from dmd3c_ros.core.io import read_kitti_depth, read_rgb, write_rgb
    folder = Path(folder)
    rgb = read_rgb(folder / "image_02.png")
    calib = load_kitti_calibration(folder)
    gt = read_kitti_depth(folder / "groundtruth_02.png")
    sparse, points, _ = simulate_lidar_from_depth(fill_small_holes(gt), calib.camera,
                                                  LIDAR_MODELS[model], calib.lidar_to_camera,
                                                  np.random.default_rng(seed))
    real = read_kitti_depth(folder / "velodyne_raw_02.png")
    sim_share, real_share = float(np.mean(sparse > 0)), float(np.mean(real > 0))
    top = _overlay(rgb, sparse, f"{model} simulated from the ground truth: "
                                f"{100 * sim_share:.1f}% of the pixels")
    middle = _overlay(rgb, real, f"real HDL-64E sweep (velodyne_raw_02): "
                                 f"{100 * real_share:.1f}% of the pixels")
    h, w = rgb.shape[:2]
    y0, x0, ch, cw = h // 2 - h // 8, w // 2 - w // 4 - w // 8, h // 4, w // 4  # a road patch
    zoom = [cv2.resize(np.asarray(image[y0:y0 + ch, x0:x0 + cw]), (2 * cw, 2 * ch),
                       interpolation=cv2.INTER_NEAREST)  # nearest: points stay points
            for image in (_overlay(rgb, sparse, ""), _overlay(rgb, real, ""))]
    for image, label in zip(zoom, ("simulated, 2x", "real, 2x")):
        cv2.putText(image, label, (10, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 2,
                    cv2.LINE_AA)
    bottom = np.zeros((2 * ch, w, 3), np.uint8)
    bottom[:, :2 * cw], bottom[:, w - 2 * cw:] = zoom
    for image in (top, middle):
        cv2.rectangle(image, (x0, y0), (x0 + cw, y0 + ch), (255, 255, 255), 1)
    write_rgb(out, np.vstack([top, middle, bottom]))
    return {"simulated_valid_share": sim_share, "real_valid_share": real_share,
            "points": int(len(points))}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dmd3c_ros.training.sim.from_depth",
                                     description=kitti_picture.__doc__)
    parser.add_argument("--kitti", required=True, help="KITTI sample folder with image_02.png, "
                        "groundtruth_02.png, velodyne_raw_02.png and the raw calibration pair "
                        "(e.g. ../shared/data/kitti_dc/0000000005)")
    parser.add_argument("--out", required=True, help="PNG to write")
    parser.add_argument("--lidar", default="hdl64", choices=sorted(LIDAR_MODELS))
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    figures = kitti_picture(args.kitti, args.out, args.lidar, args.seed)
    print(f"wrote {args.out}: {args.lidar} simulated from the ground truth covers "
          f"{100 * figures['simulated_valid_share']:.2f}% of the pixels (the real sweep "
          f"{100 * figures['real_valid_share']:.2f}%)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
