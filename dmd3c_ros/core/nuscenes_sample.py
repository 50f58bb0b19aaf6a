"""One exported nuScenes keyframe as arrays: six cameras and the LIDAR_TOP sweep (surround eval).

The sample folder (``../shared/data/nuscenes_sample``) holds::

    calibration.json    {"lidar": {"file", "timestamp", ...},
                         "cameras": {CAM_*: {"file", "K" 3x3, "lidar2cam" 4x4, "timestamp", ...}}}
    CAM_FRONT.jpg ...   1600x900 colour images (undistorted: nuScenes publishes K only)
    LIDAR_TOP.pcd.bin   float32 x, y, z, intensity, ring (5 per point), LiDAR frame, metres

``lidar2cam`` takes LiDAR-frame points into the camera's optical frame (x right, y down, z forward)
and is used as given: it ignores the ego motion between the LiDAR and camera timestamps (up to
about 40 ms), so distant points can land a few pixels off. Each camera gets P = [K | 0].
Timestamps are seconds since the epoch.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmd3c_ros.core.camera import CalibrationError, PinholeCamera
from dmd3c_ros.core.io import InputFileError, read_rgb

# nuScenes' six cameras in ring order (clockwise seen from above, starting at the front).
CAMERAS = ("CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK", "CAM_BACK_LEFT",
           "CAM_FRONT_LEFT")
POINT_COLUMNS = 5  # float32 x, y, z, intensity, ring index
CALIBRATION_FILE = "calibration.json"


@dataclass(frozen=True)
class NuScenesCamera:
    """One camera of a keyframe.

    Attributes:
        name: the camera's nuScenes channel (``CAM_FRONT``...).
        rgb: (H, W, 3) uint8 RGB image.
        camera: its PinholeCamera (P = [K | 0], size of ``rgb``).
        lidar_to_camera: (4, 4) float64, LiDAR frame -> this camera's optical frame (metres).
        stamp: acquisition time in seconds since the epoch, or None.
    """

    name: str
    rgb: np.ndarray
    camera: PinholeCamera
    lidar_to_camera: np.ndarray
    stamp: float | None = None


@dataclass(frozen=True)
class NuScenesSample:
    """A keyframe: its cameras (ring order, see ``load_nuscenes_sample``) and the sweep.

    Attributes:
        cameras: the loaded cameras.
        points: (N, 5) float32 sweep in the LiDAR frame: x, y, z metres, intensity, ring index.
        lidar_stamp: the sweep's time in seconds since the epoch, or None.
        name: the sample folder's name.
    """

    cameras: tuple[NuScenesCamera, ...]
    points: np.ndarray
    lidar_stamp: float | None = None
    name: str = ""

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.cameras]

    def camera(self, name: str) -> NuScenesCamera:
        for cam in self.cameras:
            if cam.name == name:
                return cam
        raise KeyError(f"camera {name!r} not in {self.names}")


def read_nuscenes_sweep(path: str | Path) -> np.ndarray:
    """A nuScenes ``*.pcd.bin`` sweep as (N, 5) float32 (x, y, z metres, intensity, ring).

    Raises:
        InputFileError: no such file, or a size that is not a whole number of 20-byte points.
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such LiDAR sweep")
    size = path.stat().st_size
    if size % (4 * POINT_COLUMNS):
        raise InputFileError(f"{path}: {size} bytes is not a whole number of 20-byte points "
                             "(float32 x, y, z, intensity, ring)")
    return np.fromfile(path, dtype="<f4").reshape(-1, POINT_COLUMNS)


def camera_from_k(K, width: int, height: int, source: str) -> PinholeCamera:
    """A distortion-free ``width`` x ``height`` camera with P = [K | 0].

    Raises:
        CalibrationError: K is not 9 numbers, is all zero or is otherwise unusable (``source``
            names it in the message).
    """
    try:
        K = np.array(K, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise CalibrationError(f"{source}: K must be a 3x3 matrix of numbers: {error}") from None
    if K.size != 9 or not K.any():
        raise CalibrationError(f"{source}: K must be a non-zero 3x3 matrix, got {K.tolist()}")
    K = K.reshape(3, 3)
    try:
        return PinholeCamera(width, height, K, np.hstack([K, np.zeros((3, 1))]))
    except CalibrationError as error:
        raise CalibrationError(f"{source}: {error}") from None


def transform_from_list(value, source: str) -> np.ndarray:
    """A (4, 4) float64 rigid transform from nested lists; CalibrationError when it is not 16
    finite numbers with a last row of (0, 0, 0, 1)."""
    try:
        T = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise CalibrationError(f"{source}: expected a 4x4 matrix of numbers: {error}") from None
    if T.size != 16 or not np.all(np.isfinite(T)):
        raise CalibrationError(f"{source}: expected 16 finite numbers, got {T.tolist()}")
    T = T.reshape(4, 4)
    if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0)):
        raise CalibrationError(f"{source}: the last row must be 0 0 0 1, got {T[3].tolist()}")
    return T


def read_calibration(folder: str | Path) -> dict:
    """The parsed ``calibration.json`` of a sample folder (checked for the keys used here).

    Raises:
        InputFileError: no such file, not JSON, or without ``lidar.file`` / ``cameras``.
    """
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        raise InputFileError(f"{path}: no such file (nuScenes sample layout)")
    try:
        calib = json.loads(path.read_text())
        calib["lidar"]["file"]
        if not isinstance(calib["cameras"], dict):
            raise TypeError("'cameras' is not an object")
    except (ValueError, KeyError, TypeError) as error:
        raise InputFileError(f"{path}: expected {{'lidar': {{'file': ...}}, 'cameras': "
                             f"{{CAM_*: {{'file', 'K', 'lidar2cam'}}}}}}: {error!r}") from error
    return calib


def load_camera(folder: str | Path, name: str, entry: dict) -> NuScenesCamera:
    """Read one camera of ``calibration.json`` (its ``entry``) and its image from ``folder``.

    Raises:
        InputFileError: a missing key or an unreadable image; CalibrationError: bad K or
            lidar2cam.
    """
    folder = Path(folder)
    where = f"{folder / CALIBRATION_FILE}: camera {name}"
    try:
        image_file, K, lidar2cam = entry["file"], entry["K"], entry["lidar2cam"]
        stamp = entry.get("timestamp")
    except (KeyError, TypeError, AttributeError) as error:
        raise InputFileError(f"{where}: needs 'file', 'K' and 'lidar2cam': {error!r}") from None
    rgb = read_rgb(folder / image_file)
    camera = camera_from_k(K, rgb.shape[1], rgb.shape[0], f"{where}: K")
    lidar_to_camera = transform_from_list(lidar2cam, f"{where}: lidar2cam")
    return NuScenesCamera(name, rgb, camera, lidar_to_camera,
                          None if stamp is None else float(stamp))


def ring_order(names) -> list[str]:
    """``names`` with nuScenes' cameras first, in ring order (``CAMERAS``), then any others in
    the order given."""
    names = list(names)
    return [c for c in CAMERAS if c in names] + [n for n in names if n not in CAMERAS]


def load_nuscenes_sample(folder: str | Path, cameras=None) -> NuScenesSample:
    """Load a nuScenes sample folder (layout in the module docstring).

    Args:
        folder: the folder holding ``calibration.json``.
        cameras: camera names to load, in that order; None = every camera of the file in ring
            order (``ring_order``).
    Raises:
        InputFileError: a missing folder, file or key, a camera the file does not have, or a
            sweep size that is not whole points; CalibrationError: a bad K (all zero included)
            or lidar2cam.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputFileError(f"{folder}: no such folder (nuScenes sample with calibration.json)")
    calib = read_calibration(folder)
    entries = calib["cameras"]
    names = ring_order(entries) if cameras is None else list(cameras)
    unknown = [n for n in names if n not in entries]
    if unknown or not names:
        raise InputFileError(f"{folder / CALIBRATION_FILE}: cameras {unknown or names} not in "
                             f"{list(entries)}")
    loaded = tuple(load_camera(folder, name, entries[name]) for name in names)
    stamp = calib["lidar"].get("timestamp")
    return NuScenesSample(loaded, read_nuscenes_sweep(folder / calib["lidar"]["file"]),
                          None if stamp is None else float(stamp), folder.name)


__all__ = ["CAMERAS", "NuScenesCamera", "NuScenesSample", "POINT_COLUMNS", "camera_from_k",
           "load_camera", "load_nuscenes_sample", "read_calibration", "read_nuscenes_sweep",
           "ring_order", "transform_from_list"]
