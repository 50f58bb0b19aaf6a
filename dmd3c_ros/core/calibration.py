"""KITTI calibration files -> camera model + LiDAR-to-camera extrinsic.

Two formats:
- raw recordings: ``calib_cam_to_cam.txt`` (S_rect_0i, R_rect_00, P_rect_0i) and
  ``calib_velo_to_cam.txt`` (R, T), given as the directory that holds both;
- object / tracking benchmark: one ``calib.txt`` with P0..P3, R0_rect and Tr_velo_to_cam (no image
  size: it comes from the image).

In both, a LiDAR point X projects into rectified camera i as P_i . R_rect_00 . Tr_velo_to_cam . X,
so ``lidar_to_camera`` = R_rect_00 (as 4x4) . Tr_velo_to_cam and the camera's P is P_i.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .camera import CalibrationError, PinholeCamera

RAW_CAM_TO_CAM = "calib_cam_to_cam.txt"
RAW_VELO_TO_CAM = "calib_velo_to_cam.txt"


@dataclass(frozen=True)
class LidarCameraCalibration:
    """A camera and the (4, 4) float64 transform taking LiDAR-frame points (metres) into its
    rectified optical frame."""

    camera: PinholeCamera
    lidar_to_camera: np.ndarray


def parse_calibration_text(text: str, source: str = "calibration") -> dict[str, np.ndarray]:
    """Parse ``key: v1 v2 ...`` lines into float64 arrays; non-numeric lines (dates) are skipped."""
    values: dict[str, np.ndarray] = {}
    for line in text.splitlines():
        key, sep, rest = line.partition(":")
        if not sep:
            continue
        try:
            values[key.strip()] = np.array([float(v) for v in rest.split()], dtype=np.float64)
        except ValueError:
            continue  # e.g. "calib_time: 09-Jan-2012 13:57:47"
    if not values:
        raise CalibrationError(f"{source}: no 'key: numbers' lines found")
    return values


def _get(values: dict[str, np.ndarray], key: str, size: int, source: str) -> np.ndarray:
    if key not in values:
        raise CalibrationError(f"{source}: missing '{key}' (found: {', '.join(sorted(values))})")
    if values[key].size != size:
        raise CalibrationError(f"{source}: '{key}' has {values[key].size} values, expected {size}")
    return values[key]


def rigid_transform(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """(4, 4) float64 transform from a (3, 3) rotation and a (3,) translation."""
    T = np.eye(4)
    T[:3, :3] = np.asarray(R, dtype=np.float64).reshape(3, 3)
    T[:3, 3] = np.asarray(t, dtype=np.float64).reshape(3)
    return T


def transform_from_quaternion(translation, quaternion_xyzw) -> np.ndarray:
    """(4, 4) float64 transform from a translation (x, y, z) and a unit quaternion (x, y, z, w),
    as in geometry_msgs/Transform. The quaternion is normalised; a zero one is an error."""
    x, y, z, w = (float(q) for q in quaternion_xyzw)
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    if not np.isfinite(norm) or norm < 1e-9:
        raise CalibrationError(f"quaternion {quaternion_xyzw} is not a rotation")
    x, y, z, w = x / norm, y / norm, z / norm, w / norm
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    return rigid_transform(R, translation)


def quaternion_from_rotation(rotation) -> tuple[float, float, float, float]:
    """(3, 3) rotation matrix -> unit quaternion (x, y, z, w), the inverse of the above.

    Shepperd's method: start from the largest of w, x, y, z so that no division is by a small
    number (also exact for 180-degree rotations)."""
    m = np.asarray(rotation, dtype=np.float64)
    trace = m[0, 0] + m[1, 1] + m[2, 2]
    if trace >= max(m[0, 0], m[1, 1], m[2, 2]):
        w = np.sqrt(1.0 + trace) / 2
        x, y, z = (m[2, 1] - m[1, 2]) / (4 * w), (m[0, 2] - m[2, 0]) / (4 * w), \
            (m[1, 0] - m[0, 1]) / (4 * w)
    elif m[0, 0] >= m[1, 1] and m[0, 0] >= m[2, 2]:
        x = np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2]) / 2
        w, y, z = (m[2, 1] - m[1, 2]) / (4 * x), (m[0, 1] + m[1, 0]) / (4 * x), \
            (m[0, 2] + m[2, 0]) / (4 * x)
    elif m[1, 1] >= m[2, 2]:
        y = np.sqrt(1.0 - m[0, 0] + m[1, 1] - m[2, 2]) / 2
        w, x, z = (m[0, 2] - m[2, 0]) / (4 * y), (m[0, 1] + m[1, 0]) / (4 * y), \
            (m[1, 2] + m[2, 1]) / (4 * y)
    else:
        z = np.sqrt(1.0 - m[0, 0] - m[1, 1] + m[2, 2]) / 2
        w, x, y = (m[1, 0] - m[0, 1]) / (4 * z), (m[0, 2] + m[2, 0]) / (4 * z), \
            (m[1, 2] + m[2, 1]) / (4 * z)
    norm = np.sqrt(x * x + y * y + z * z + w * w)
    return float(x / norm), float(y / norm), float(z / norm), float(w / norm)


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise CalibrationError(f"{path}: no such calibration file")
    return path.read_text()


def load_kitti_raw_calibration(directory: str | Path, camera_index: int = 2) -> LidarCameraCalibration:
    """Read the raw-recording pair in ``directory`` for rectified camera ``camera_index`` (0-3)."""
    directory = Path(directory)
    cam_path, velo_path = directory / RAW_CAM_TO_CAM, directory / RAW_VELO_TO_CAM
    cam = parse_calibration_text(_read_text(cam_path), str(cam_path))
    velo = parse_calibration_text(_read_text(velo_path), str(velo_path))
    size = _get(cam, f"S_rect_0{camera_index}", 2, str(cam_path))
    P = _get(cam, f"P_rect_0{camera_index}", 12, str(cam_path)).reshape(3, 4)
    rect = rigid_transform(_get(cam, "R_rect_00", 9, str(cam_path)), np.zeros(3))
    velo_to_cam = rigid_transform(_get(velo, "R", 9, str(velo_path)), _get(velo, "T", 3, str(velo_path)))
    camera = PinholeCamera.from_projection(P, int(round(size[0])), int(round(size[1])))
    return LidarCameraCalibration(camera, rect @ velo_to_cam)


def load_kitti_object_calibration(path: str | Path, image_size: tuple[int, int],
                                  camera_index: int = 2) -> LidarCameraCalibration:
    """Read an object-benchmark ``calib.txt`` for camera ``camera_index``; image_size = (W, H)."""
    path = Path(path)
    values = parse_calibration_text(_read_text(path), str(path))
    P = _get(values, f"P{camera_index}", 12, str(path)).reshape(3, 4)
    rect = rigid_transform(_get(values, "R0_rect", 9, str(path)), np.zeros(3))
    velo_to_cam = np.vstack([_get(values, "Tr_velo_to_cam", 12, str(path)).reshape(3, 4),
                             [0.0, 0.0, 0.0, 1.0]])
    camera = PinholeCamera.from_projection(P, image_size[0], image_size[1])
    return LidarCameraCalibration(camera, rect @ velo_to_cam)


def load_kitti_calibration(path: str | Path, image_size: tuple[int, int] | None = None,
                           camera_index: int = 2) -> LidarCameraCalibration:
    """A directory means the raw pair, a file the object ``calib.txt`` (which needs image_size).

    For the raw pair, a given image_size must match S_rect (an image of another size was not
    taken with this calibration).
    """
    path = Path(path)
    if path.is_dir():
        calib = load_kitti_raw_calibration(path, camera_index)
        if image_size is not None and tuple(image_size) != calib.camera.size:
            raise CalibrationError(
                f"{path}: calibrated image size {calib.camera.size[0]}x{calib.camera.size[1]} "
                f"(S_rect_0{camera_index}) does not match the image's {image_size[0]}x{image_size[1]}")
        return calib
    if image_size is None:
        raise CalibrationError(f"{path}: an object calib.txt holds no image size; pass the image's")
    return load_kitti_object_calibration(path, image_size, camera_index)
