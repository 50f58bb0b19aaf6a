"""Small KITTI helpers shared by the KITTI loaders: stereo baselines, disparity PNGs, raw
timestamps, and the rectified camera + extrinsic of a raw calibration pair."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import cv2
import numpy as np

from dmd3c_ros.core.calibration import (RAW_CAM_TO_CAM, RAW_VELO_TO_CAM, LidarCameraCalibration,
                                        load_kitti_raw_calibration)
from dmd3c_ros.core.camera import CalibrationError, PinholeCamera
from dmd3c_ros.core.io import InputFileError

from .sample import LayoutError

KITTI_DISPARITY_SCALE = 256.0  # KITTI PNG disparity units per pixel

# KITTI's colour cameras: 2 is the left (reference) one, 3 the right one.
STEREO_PARTNER = {2: 3, 3: 2}


def camera_indices(cameras) -> tuple[int, ...]:
    """KITTI colour camera indices from ints or names ('image_02') -> (2, 3) etc."""
    indices = tuple(int(str(c)[-1]) if isinstance(c, str) else int(c) for c in cameras)
    if not indices or any(i not in STEREO_PARTNER for i in indices):
        raise ValueError(f"cameras must be KITTI colour cameras 2 and/or 3, got {cameras!r}")
    return indices


def stereo_baseline(left: PinholeCamera, right: PinholeCamera) -> float:
    """Distance in metres between the optical centres of two rectified cameras.

    For a rectified camera P = K [I | t] with P[0, 3] = fx * t_x, so the centre sits at
    x = -P[0, 3] / fx in the common rectified frame; the baseline is the difference of the two.
    KITTI camera 2 vs 3 gives about 0.53 m (nominally 0.54 m).
    """
    baseline = abs(left.P[0, 3] / left.fx - right.P[0, 3] / right.fx)
    if not np.isfinite(baseline) or baseline <= 0:
        raise CalibrationError(f"cameras with P[0, 3] = {left.P[0, 3]} and {right.P[0, 3]} are "
                               "not a rectified stereo pair (zero baseline)")
    return float(baseline)


def read_kitti_disparity(path: str | Path) -> np.ndarray:
    """Read a KITTI stereo uint16 disparity PNG as (H, W) float32 pixels, 0 = no value."""
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    raw = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if raw is None or raw.dtype != np.uint16 or raw.ndim != 2:
        raise InputFileError(f"{path}: expected a single-channel uint16 KITTI disparity PNG")
    return raw.astype(np.float32) / KITTI_DISPARITY_SCALE  # KITTI PNG disparity to pixels


def disparity_to_depth(disparity: np.ndarray, focal_px: float, baseline_m: float) -> np.ndarray:
    """(H, W) disparity in pixels (0 = none) -> float32 depth in metres = f * B / d (0 = none)."""
    disparity = np.asarray(disparity, dtype=np.float64)
    depth = np.zeros(disparity.shape, np.float32)
    valid = np.isfinite(disparity) & (disparity > 0)
    depth[valid] = focal_px * baseline_m / disparity[valid]  # pixels to metres
    return depth


def parse_kitti_timestamp(line: str) -> float:
    """'2011-09-26 13:02:25.964389445' (KITTI raw timestamps.txt) -> seconds since the epoch.

    KITTI does not state the time zone; the text is read as UTC.
    """
    whole, _, fraction = line.strip().partition(".")
    try:
        moment = datetime.strptime(whole, "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc)
        return moment.timestamp() + (float("0." + fraction) if fraction else 0.0)
    except ValueError as error:
        raise InputFileError(f"not a KITTI timestamp: {line!r}") from error


def read_frame_timestamp(path: Path, frame_index: int) -> float | None:
    """Line ``frame_index`` of a KITTI raw ``timestamps.txt`` in seconds, None if the file is
    absent or too short."""
    if not path.is_file():
        return None
    lines = path.read_text().splitlines()
    if frame_index >= len(lines) or not lines[frame_index].strip():
        return None
    return parse_kitti_timestamp(lines[frame_index])


def find_raw_calibration(folders: list[Path]) -> Path:
    """The first folder holding both raw calibration files, else LayoutError."""
    for folder in folders:
        if (folder / RAW_CAM_TO_CAM).is_file() and (folder / RAW_VELO_TO_CAM).is_file():
            return folder
    raise LayoutError(f"no {RAW_CAM_TO_CAM} + {RAW_VELO_TO_CAM} pair in any of: "
                         + ", ".join(str(f) for f in folders))


def raw_calibration(folder: Path, camera_index: int,
                    image_size: tuple[int, int]) -> LidarCameraCalibration:
    """The raw pair in ``folder`` for camera ``camera_index``, checked against the image size
    (W, H): S_rect_0i must match the image it describes."""
    calib = load_kitti_raw_calibration(folder, camera_index)
    if calib.camera.size != tuple(image_size):
        raise CalibrationError(
            f"{folder}: S_rect_0{camera_index} is {calib.camera.width}x{calib.camera.height} but "
            f"the image is {image_size[0]}x{image_size[1]}")
    return calib
