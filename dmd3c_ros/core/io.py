"""File formats of the KITTI depth-completion benchmark and plain images.

Depth PNGs are uint16 with metres = value / 256 and 0 = no value. In memory, sparse depth is
float32 metres with 0 = no value, and dense predictions are float32 metres with NaN = no value.
"""
from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from pathlib import Path

import cv2
import numpy as np

KITTI_DEPTH_SCALE = 256.0  # KITTI PNG depth units per metre
_KITTI_MAX_METRES = 65535 / KITTI_DEPTH_SCALE


def json_safe(value):
    """A copy fit for strict JSON: NaN / inf -> None, numpy scalars -> Python numbers, tuples ->
    lists, mapping keys -> str (recursively). The one copy for every JSON the package writes."""
    if isinstance(value, Mapping):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def write_json(path, data) -> Path:
    """Write ``data`` as strict, indented JSON (via :func:`json_safe`) to ``path``, creating its
    folder; returns the path."""
    import json
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n")
    return path


class InputFileError(ValueError):
    """An input file is missing or cannot be decoded."""


def _read(path: str | Path, flags: int) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    image = cv2.imread(str(path), flags)
    if image is None:
        raise InputFileError(f"{path}: not a readable image")
    return image


def read_rgb(path: str | Path) -> np.ndarray:
    """Read a colour image as (H, W, 3) uint8 in RGB order (grey images are replicated)."""
    image = _read(path, cv2.IMREAD_COLOR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def read_kitti_depth(path: str | Path) -> np.ndarray:
    """Read a KITTI uint16 depth PNG as (H, W) float32 metres, 0 = no value."""
    raw = _read(path, cv2.IMREAD_UNCHANGED)
    if raw.dtype != np.uint16 or raw.ndim != 2:
        raise InputFileError(f"{path}: expected a single-channel uint16 KITTI depth PNG, "
                             f"got {raw.dtype} with shape {raw.shape}")
    return raw.astype(np.float32) / KITTI_DEPTH_SCALE  # KITTI PNG depth to metres


def to_kitti_depth(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres (NaN or <= 0 = no value) -> uint16 KITTI depth (metres x 256, 0 = none).

    Depths beyond 255.996 m (the uint16 limit) are clipped to it.
    """
    depth = np.asarray(depth, dtype=np.float64)
    valid = np.isfinite(depth) & (depth > 0)
    scaled = np.where(valid, np.clip(depth, 0.0, _KITTI_MAX_METRES), 0.0)
    scaled = np.rint(scaled * KITTI_DEPTH_SCALE)  # metres to KITTI PNG units
    # A valid depth below half a unit must not turn into "no value".
    scaled[valid & (scaled == 0)] = 1
    return scaled.astype(np.uint16)


def write_kitti_depth(path: str | Path, depth: np.ndarray) -> None:
    """Write (H, W) metres as a KITTI uint16 depth PNG (see to_kitti_depth)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), to_kitti_depth(depth)):
        raise OSError(f"{path}: could not write PNG")


def write_rgb(path: str | Path, rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"{path}: could not write image")


def read_kitti_velodyne(path: str | Path) -> np.ndarray:
    """Read a KITTI Velodyne sweep (.bin, float32 x, y, z, reflectance) as (N, 4) float32.

    x, y, z are metres in the LiDAR frame (x forward, y left, z up).
    """
    path = Path(path)
    if not path.is_file():
        raise InputFileError(f"{path}: no such file")
    size = path.stat().st_size
    if size % 16:
        raise InputFileError(f"{path}: {size} bytes is not a whole number of "
                             "16-byte (float32 x, y, z, reflectance) points")
    return np.fromfile(path, dtype="<f4").reshape(-1, 4)


def sha256_file(path) -> str:
    """Lower-case hex sha256 of a file's bytes (model specs name their ONNX file by it)."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
