"""One KITTI depth-completion sample folder as arrays (the demo, the feeder, ``dmd3c bench``).

A sample folder holds ``image_0i.png``, ``velodyne.bin``, the raw calibration pair
(``calib_cam_to_cam.txt``, ``calib_velo_to_cam.txt``) and optionally ``groundtruth_0i.png``, as
``../shared/data/kitti_dc/<frame>``.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmd3c_ros.core.calibration import load_kitti_calibration
from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.io import read_kitti_depth, read_kitti_velodyne, read_rgb


@dataclass(frozen=True)
class KittiFrame:
    """One KITTI depth-completion sample.

    Attributes:
        rgb: (H, W, 3) uint8 RGB image of camera 2 (or the chosen camera).
        points: (N, 4) float32 Velodyne sweep: x, y, z metres in the LiDAR frame, reflectance.
        camera: the rectified camera (P = P_rect_0i).
        lidar_to_camera: (4, 4) float64, R_rect_00 . Tr_velo_to_cam.
        ground_truth: (H, W) float32 metres (0 = none), or None when the sample has none.
        name: the sample folder's name.
    """

    rgb: np.ndarray
    points: np.ndarray
    camera: PinholeCamera
    lidar_to_camera: np.ndarray
    ground_truth: np.ndarray | None = None
    name: str = ""


def load_kitti_frame(folder: str | Path, camera_index: int = 2) -> KittiFrame:
    """Read ``image_0i.png``, ``velodyne.bin``, the raw calibration pair and, when present,
    ``groundtruth_0i.png`` from a KITTI depth-completion sample folder."""
    folder = Path(folder)
    rgb = read_rgb(folder / f"image_0{camera_index}.png")
    calibration = load_kitti_calibration(folder, (rgb.shape[1], rgb.shape[0]), camera_index)
    gt_path = folder / f"groundtruth_0{camera_index}.png"
    ground_truth = read_kitti_depth(gt_path) if gt_path.is_file() else None
    return KittiFrame(rgb, read_kitti_velodyne(folder / "velodyne.bin"), calibration.camera,
                      calibration.lidar_to_camera, ground_truth, folder.name)


__all__ = ["KittiFrame", "load_kitti_frame"]
