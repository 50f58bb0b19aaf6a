"""``dmd3c bench``'s frames: the KITTI sample folder, a synthetic KITTI-like frame made here,
and the same frame at another image size."""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.kitti_sample import load_kitti_frame
from dmd3c_ros.paths import kitti_sample_dir

DEFAULT_DATA = kitti_sample_dir()


@dataclass(frozen=True)
class BenchFrame:
    """One camera frame and LiDAR sweep (the fields of ``ros.feeder.KittiFrame``).

    rgb: (H, W, 3) uint8; points: (N, 4) float32 x, y, z metres (LiDAR frame), intensity;
    camera: the rectified camera of ``rgb``; lidar_to_camera: (4, 4) float64; source: where
    it came from (a folder or "synthetic").
    """

    rgb: np.ndarray
    points: np.ndarray
    camera: PinholeCamera
    lidar_to_camera: np.ndarray
    name: str
    source: str

    @property
    def size(self) -> tuple[int, int]:
        return self.camera.size


def load_frame(folder) -> BenchFrame:
    """Camera 2 of a KITTI depth-completion sample folder (no ROS package needed)."""
    frame = load_kitti_frame(folder)
    return BenchFrame(frame.rgb, frame.points, frame.camera, frame.lidar_to_camera, frame.name,
                      str(folder))


def choose_frame(data=None, *, synthetic: bool = False,
                 say: Callable[[str], None] | None = None) -> BenchFrame:
    """The frame to measure: the synthetic one when asked for, else the KITTI sample folder
    ``data`` (default :data:`DEFAULT_DATA`), falling back to the synthetic frame (and saying so)
    when no folder is given and the default sample is absent."""
    if not synthetic and data is None and not (DEFAULT_DATA / "velodyne.bin").is_file():
        if say is not None:
            say(f"{DEFAULT_DATA} not found: benchmarking a synthetic KITTI-like frame")
        synthetic = True
    if synthetic:
        return synthetic_frame()
    return load_frame(data if data is not None else DEFAULT_DATA)


def synthetic_frame(width: int = 1242, height: int = 375, seed: int = 0) -> BenchFrame:
    """A KITTI-like frame made here: a 64-beam 360 degree sweep (about 130k points) of a flat
    road with a wall 40 m away, a KITTI camera 2 (scaled to width x height) and a textured image.
    """
    rng = np.random.default_rng(seed)
    # KITTI camera 2 at 1242x375 (P_rect_02 rounded), then scaled to the size asked for.
    camera = PinholeCamera.from_intrinsics(721.5, 721.5, 609.6, 172.9, 1242, 375)
    if (width, height) != camera.size:
        camera = camera.resized(width, height)
    elevation = np.deg2rad(np.linspace(-24.8, 2.0, 64))[:, None]
    azimuth = np.linspace(-np.pi, np.pi, 2048, endpoint=False)[None, :]
    lidar_height = 1.73  # metres above the road, as KITTI's Velodyne
    with np.errstate(divide="ignore"):
        ground = np.where(elevation < 0, lidar_height / np.tan(-elevation), np.inf)
    distance = np.minimum(ground, 40.0) * np.ones_like(azimuth)  # horizontal range, metres
    distance *= 1.0 + 0.002 * rng.standard_normal(distance.shape)
    points = np.stack([distance * np.cos(azimuth), distance * np.sin(azimuth),
                       np.maximum(distance * np.tan(elevation), -lidar_height),
                       rng.random(distance.shape)], axis=-1).reshape(-1, 4).astype(np.float32)
    # LiDAR (x forward, y left, z up) -> camera optical frame (x right, y down, z forward).
    lidar_to_camera = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, -0.08],
                                [1.0, 0.0, 0.0, -0.27], [0.0, 0.0, 0.0, 1.0]])
    rows = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    rgb = np.clip(rows * np.array([0.6, 0.7, 0.8], np.float32)
                  + rng.normal(0, 25, (height, width, 3)), 0, 255).astype(np.uint8)
    return BenchFrame(rgb, points, camera, lidar_to_camera, "synthetic", "synthetic")


def frame_at(frame: BenchFrame, width: int, height: int) -> BenchFrame:
    """The frame with its image resized to width x height (cv2; the camera scaled to match with
    PinholeCamera.resized); the LiDAR points stay the same."""
    if (width, height) == frame.size:
        return frame
    shrink = width * height < frame.size[0] * frame.size[1]
    rgb = cv2.resize(frame.rgb, (width, height),
                     interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    return BenchFrame(rgb, frame.points, frame.camera.resized(width, height),
                      frame.lidar_to_camera, frame.name, frame.source)


def parse_resolution(text: str) -> tuple[int, int]:
    """'WxH' -> (W, H) in pixels."""
    try:
        width, height = (int(v) for v in str(text).lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"resolution must be WxH, e.g. 1242x375, got {text!r}")
    if width < 1 or height < 1:
        raise argparse.ArgumentTypeError(f"resolution must be positive, got {text!r}")
    return width, height
