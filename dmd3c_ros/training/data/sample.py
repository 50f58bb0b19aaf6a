"""The one sample dictionary every loader yields, its checker, and the loaders' common base.

A sample is a plain ``dict`` with exactly these keys (shapes use the RGB image's H x W):

- ``name``: str, unique within its loader (``"2011_09_26_drive_0001_sync/image_02/0000000005"``).
- ``source``: str, the dataset and layout it came from (``"kitti_dc/train"``, ``"nuscenes"``...).
- ``rgb``: (H, W, 3) uint8, RGB channel order.
- ``sparse``: (H, W) float32 LiDAR depth in metres along the optical axis, 0 = no value; all zero
  when the source has no LiDAR (stereo-only data, a bag without a points topic).
- ``gt``: (H, W) float32 ground-truth depth in metres, 0 = no value; None when unknown.
- ``camera``: ``core.camera.PinholeCamera`` of ``rgb`` (size W x H); pixel = P . [X; 1].
- ``lidar_to_camera``: (4, 4) float64 transform taking LiDAR-frame points (metres) into the
  rectified optical frame of ``camera``; None without LiDAR or when only a pre-projected sparse
  map is known.
- ``points``: (N, >=4) float32 LiDAR sweep in the LiDAR frame: x, y, z in metres, then intensity
  (or reflectance, in the source's units) and any further source columns; None when absent.
- ``stereo``: None, or a dict for the other image of a rectified stereo pair: ``rgb`` (H, W, 3)
  uint8; ``camera`` its PinholeCamera; ``baseline_m`` float > 0, the distance between the two
  optical centres in metres; ``gt_disparity`` (H, W) float32 disparity of the reference image
  ``sample["rgb"]`` in pixels, 0 = no value, or None.
- ``stamp``: float acquisition time of ``rgb`` in seconds (epoch or bag time), or None.

Arrays are fresh copies owned by the sample (loaders never hand out views of cached data), so
callers may modify them. Depth and disparity maps use 0 for "no value", never NaN.
"""
from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.io import InputFileError

SAMPLE_KEYS = ("name", "source", "rgb", "sparse", "gt", "camera", "lidar_to_camera", "points",
               "stereo", "stamp")
STEREO_KEYS = ("rgb", "camera", "baseline_m", "gt_disparity")


class SampleError(ValueError):
    """A sample dictionary breaks the contract above; the text names the key."""


class LayoutError(InputFileError):
    """A dataset folder or file that the layout needs is missing (the text names the path)."""


def _check_map(sample_key: str, value: Any, shape: tuple[int, int], optional: bool) -> None:
    if value is None and optional:
        return
    if not isinstance(value, np.ndarray) or value.dtype != np.float32 or value.shape != shape:
        got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value)
        raise SampleError(f"sample[{sample_key!r}] must be a float32 {shape} array, got {got}")
    if not np.all(np.isfinite(value)) or np.any(value < 0):
        raise SampleError(f"sample[{sample_key!r}] must be finite and >= 0 (0 = no value)")


def _check_rgb(sample_key: str, value: Any) -> tuple[int, int]:
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim != 3 \
            or value.shape[2] != 3:
        got = f"{value.dtype} {value.shape}" if isinstance(value, np.ndarray) else type(value)
        raise SampleError(f"sample[{sample_key!r}] must be an (H, W, 3) uint8 array, got {got}")
    return value.shape[:2]


def _check_camera(sample_key: str, value: Any, shape: tuple[int, int]) -> None:
    if not isinstance(value, PinholeCamera):
        raise SampleError(f"sample[{sample_key!r}] must be a PinholeCamera, got {type(value)}")
    if (value.height, value.width) != shape:
        raise SampleError(f"sample[{sample_key!r}] is {value.width}x{value.height} but its image "
                          f"is {shape[1]}x{shape[0]}")


def validate_sample(sample: dict) -> dict:
    """Check ``sample`` against the contract in this module's docstring; return it unchanged.

    Raises SampleError naming the first offending key.
    """
    if not isinstance(sample, dict):
        raise SampleError(f"a sample must be a dict, got {type(sample)}")
    missing = [k for k in SAMPLE_KEYS if k not in sample]
    extra = [k for k in sample if k not in SAMPLE_KEYS]
    if missing or extra:
        raise SampleError(f"sample keys: missing {missing}, unexpected {extra}")
    for key in ("name", "source"):
        if not isinstance(sample[key], str) or not sample[key]:
            raise SampleError(f"sample[{key!r}] must be a non-empty str, got {sample[key]!r}")
    shape = _check_rgb("rgb", sample["rgb"])
    _check_map("sparse", sample["sparse"], shape, optional=False)
    _check_map("gt", sample["gt"], shape, optional=True)
    _check_camera("camera", sample["camera"], shape)
    T = sample["lidar_to_camera"]
    if T is not None and (not isinstance(T, np.ndarray) or T.dtype != np.float64
                          or T.shape != (4, 4) or not np.all(np.isfinite(T))
                          or not np.allclose(T[3], [0, 0, 0, 1])):
        raise SampleError("sample['lidar_to_camera'] must be None or a finite (4, 4) float64 "
                          "rigid transform with last row [0, 0, 0, 1]")
    points = sample["points"]
    if points is not None and (not isinstance(points, np.ndarray) or points.dtype != np.float32
                               or points.ndim != 2 or points.shape[1] < 4):
        raise SampleError("sample['points'] must be None or an (N, >=4) float32 array")
    stereo = sample["stereo"]
    if stereo is not None:
        if not isinstance(stereo, dict) or set(stereo) != set(STEREO_KEYS):
            raise SampleError(f"sample['stereo'] must be None or a dict with keys {STEREO_KEYS}")
        if _check_rgb("stereo.rgb", stereo["rgb"]) != shape:
            raise SampleError(f"sample['stereo.rgb'] is {stereo['rgb'].shape[:2]}, rgb is {shape}")
        _check_camera("stereo.camera", stereo["camera"], shape)
        baseline = stereo["baseline_m"]
        if not isinstance(baseline, float) or not np.isfinite(baseline) or baseline <= 0:
            raise SampleError(f"sample['stereo.baseline_m'] must be a float > 0, got {baseline!r}")
        _check_map("stereo.gt_disparity", stereo["gt_disparity"], shape, optional=True)
    stamp = sample["stamp"]
    if stamp is not None and (not isinstance(stamp, float) or not np.isfinite(stamp)):
        raise SampleError(f"sample['stamp'] must be None or a finite float, got {stamp!r}")
    return sample


def make_sample(name: str, source: str, rgb: np.ndarray, camera: PinholeCamera, *,
                sparse: np.ndarray | None = None, gt: np.ndarray | None = None,
                lidar_to_camera: np.ndarray | None = None, points: np.ndarray | None = None,
                stereo: dict | None = None, stamp: float | None = None) -> dict:
    """Assemble and validate a sample; ``sparse=None`` means no LiDAR (an all-zero map).

    Arrays are stored as given (loaders pass fresh arrays); ``lidar_to_camera`` is copied to
    float64 and ``stamp`` converted to float.
    """
    if sparse is None:
        sparse = np.zeros(rgb.shape[:2], np.float32)  # no LiDAR: the "no value" map
    sample = {
        "name": name, "source": source, "rgb": rgb, "sparse": sparse, "gt": gt, "camera": camera,
        "lidar_to_camera": None if lidar_to_camera is None
        else np.array(lidar_to_camera, dtype=np.float64).reshape(4, 4),
        "points": points, "stereo": stereo, "stamp": None if stamp is None else float(stamp),
    }
    return validate_sample(sample)


def stereo_partner(rgb: np.ndarray, camera: PinholeCamera, baseline_m: float,
                   gt_disparity: np.ndarray | None = None) -> dict:
    """The ``stereo`` entry of a sample (see the module docstring)."""
    return {"rgb": rgb, "camera": camera, "baseline_m": float(baseline_m),
            "gt_disparity": gt_disparity}


def require_dir(path, what: str):
    """``path`` if it is a directory, else LayoutError naming ``what`` it should hold."""
    if not path.is_dir():
        raise LayoutError(f"{path}: no such folder ({what})")
    return path


class SampleDataset:
    """Base of the loaders: a fixed, sorted list of items that ``_load`` turns into samples.

    Subclasses set ``source`` and ``root``, fill ``self._items`` in ``__init__`` (finding files,
    never decoding them) and implement ``_load(item) -> sample``. Indexing accepts negative
    indices; iteration loads one sample at a time.
    """

    source = "unknown"

    def __init__(self, root, items: list) -> None:
        self.root = root
        self._items = list(items)

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> dict:
        if not isinstance(index, (int, np.integer)):
            raise TypeError(f"{type(self).__name__} indices must be integers, got {type(index)}")
        count = len(self._items)
        if not -count <= index < count:
            raise IndexError(f"{type(self).__name__} index {index} out of range ({count} samples)")
        return self._load(self._items[int(index)])

    def __iter__(self) -> Iterator[dict]:
        for index in range(len(self)):
            yield self[index]

    def _load(self, item) -> dict:
        raise NotImplementedError

    def _details(self) -> str:
        return ""

    def describe(self) -> str:
        """One line: loader, sample count, root and what the samples hold."""
        details = self._details()
        return (f"{type(self).__name__}: {len(self)} samples ({self.source}) from {self.root}"
                + (f"; {details}" if details else ""))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(root={str(self.root)!r}, samples={len(self)})"
