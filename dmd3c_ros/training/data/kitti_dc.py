"""KITTI depth completion, train / val drives: the official layout, which ``dmd3c sim --format
kitti`` also writes.

The depth-completion archive and the KITTI raw recordings are two roots (they may be the same
folder; ``raw_root`` defaults to ``root``). The loader expects this tree; names in <> vary, the
rest is literal, ``<frame>`` is the 10-digit frame index (``0000000005``) and ``<drive>`` is
``<date>_drive_<id>_sync`` (``2011_09_26_drive_0001_sync``; ``<date>`` is everything before
``_drive_``)::

    <root>/
      <split>/                               train or val (any folder name; ``split=``)
        <drive>/
          proj_depth/
            velodyne_raw/image_02/<frame>.png    sparse input: uint16 PNG, metres x 256, 0 = none
            groundtruth/image_02/<frame>.png     ground truth, same encoding (folder optional:
                                                 without it gt is None)
            velodyne_raw/image_03/...            camera 3 likewise (optional)
            groundtruth/image_03/...
    <raw_root>/
      <date>/
        calib_cam_to_cam.txt                 S_rect_0i, R_rect_00, P_rect_0i (i = 2, 3)
        calib_velo_to_cam.txt                R, T (LiDAR -> unrectified camera 0)
        <drive>/
          calib_cam_to_cam.txt               optional per-drive pair; wins over the date's pair
          calib_velo_to_cam.txt              (synthetic drives each carry their own rig)
          image_02/data/<frame>.png          colour image of camera 2, size S_rect_02
          image_02/timestamps.txt            optional: line <frame> = 'YYYY-MM-DD HH:MM:SS.fff...'
          image_03/data/<frame>.png          camera 3: the stereo partner (and its own samples)
          velodyne_points/data/<frame>.bin   optional raw sweep, float32 x, y, z, reflectance

``<raw_root>/<drive>/`` (no date level) is accepted in place of ``<raw_root>/<date>/<drive>/``.
A writer following the tree with ``raw_root == root`` (what ``dmd3c sim --format kitti`` does)
needs: per frame the two depth PNGs and the image, per drive the calibration pair in the drive's
raw folder. The camera is P_rect_0i with image size S_rect_0i (checked against the image);
``lidar_to_camera`` = R_rect_00 . [R | T] (see ``core.calibration``).

One sample per (drive, camera, frame) with a sparse PNG; ``stereo`` holds the other colour
camera's image when it exists (baseline from P_rect_02 / P_rect_03, no ground-truth disparity).
"""
from __future__ import annotations

from pathlib import Path

from dmd3c_ros.core.calibration import LidarCameraCalibration
from dmd3c_ros.core.io import InputFileError, read_kitti_depth, read_kitti_velodyne, read_rgb

from .kitti_common import (STEREO_PARTNER, camera_indices, find_raw_calibration, raw_calibration,
                           read_frame_timestamp, stereo_baseline)
from .sample import LayoutError, SampleDataset, make_sample, require_dir, stereo_partner


def raw_drive_folder(raw_root: Path, drive: str, camera_index: int) -> Path:
    """The raw folder of ``drive`` (``<raw>/<date>/<drive>`` or ``<raw>/<drive>``) whose
    ``image_0i/data`` exists; LayoutError naming both candidates otherwise."""
    date = drive.split("_drive_")[0]
    candidates = [raw_root / date / drive, raw_root / drive]
    for folder in candidates:
        if (folder / f"image_0{camera_index}" / "data").is_dir():
            return folder
    raise LayoutError(f"no image_0{camera_index}/data folder for drive {drive} in "
                      + " or ".join(str(c) for c in candidates) + " (KITTI raw root)")


class KittiDepthCompletion(SampleDataset):
    """Samples of one split of the KITTI depth-completion train/val drives.

    Args:
        root: the depth-completion root holding ``<split>/<drive>/proj_depth``.
        split: folder under ``root`` (``train`` or ``val``).
        raw_root: the KITTI raw root with images and calibration (default: ``root``).
        cameras: colour cameras to make samples of (2 = left, 3 = right).
        stereo: attach the other camera's image as ``stereo`` when it exists.
        points: attach the raw sweep (``velodyne_points``) when it exists.
    """

    def __init__(self, root, split: str = "train", raw_root=None, cameras=(2, 3), *,
                 stereo: bool = True, points: bool = True) -> None:
        root = Path(root)
        self.split, self.stereo, self.points = split, stereo, points
        self.raw_root = Path(raw_root) if raw_root is not None else root
        self.source = f"kitti_dc/{split}"
        split_dir = require_dir(root / split, f"the '{split}' split of the KITTI depth-completion "
                                              "layout: <split>/<drive>/proj_depth/...")
        require_dir(self.raw_root, "the KITTI raw root")
        items, self._raw, self._calib_dir = [], {}, {}
        for drive_dir in sorted(p for p in split_dir.iterdir() if (p / "proj_depth").is_dir()):
            for index in camera_indices(cameras):
                sparse_dir = drive_dir / "proj_depth" / "velodyne_raw" / f"image_0{index}"
                frames = sorted(sparse_dir.glob("*.png")) if sparse_dir.is_dir() else []
                if not frames:
                    continue
                raw = raw_drive_folder(self.raw_root, drive_dir.name, index)
                self._raw[drive_dir.name, index] = raw
                self._calib_dir[drive_dir.name] = find_raw_calibration([raw, raw.parent])
                items += [(drive_dir, index, frame.stem) for frame in frames]
        if not items:
            raise LayoutError(f"{split_dir}: no <drive>/proj_depth/velodyne_raw/image_0i/*.png "
                              "files (KITTI depth-completion layout)")
        self._calibrations: dict[tuple[str, int], LidarCameraCalibration] = {}
        super().__init__(root, items)

    def _calibration(self, drive: str, index: int, size) -> LidarCameraCalibration:
        key = (drive, index)
        if key not in self._calibrations:
            self._calibrations[key] = raw_calibration(self._calib_dir[drive], index, size)
        return self._calibrations[key]

    def _load(self, item) -> dict:
        drive_dir, index, frame = item
        drive, raw = drive_dir.name, self._raw[drive_dir.name, index]
        rgb = read_rgb(raw / f"image_0{index}" / "data" / f"{frame}.png")
        size = (rgb.shape[1], rgb.shape[0])
        calib = self._calibration(drive, index, size)
        depth_dir = drive_dir / "proj_depth"
        sparse = read_kitti_depth(depth_dir / "velodyne_raw" / f"image_0{index}" / f"{frame}.png")
        gt_dir = depth_dir / "groundtruth" / f"image_0{index}"
        gt = read_kitti_depth(gt_dir / f"{frame}.png") if gt_dir.is_dir() else None
        for label, depth in (("velodyne_raw", sparse), ("groundtruth", gt)):
            if depth is not None and depth.shape != rgb.shape[:2]:
                raise InputFileError(f"{drive}/{frame}: {label} is {depth.shape[::-1]} but the "
                                     f"image is {size}")
        stereo = None
        partner = STEREO_PARTNER[index]
        partner_path = raw / f"image_0{partner}" / "data" / f"{frame}.png"
        if self.stereo and partner_path.is_file():
            other = self._calibration(drive, partner, size).camera
            stereo = stereo_partner(read_rgb(partner_path), other,
                                    stereo_baseline(calib.camera, other))
        sweep = raw / "velodyne_points" / "data" / f"{frame}.bin"
        return make_sample(
            f"{drive}/image_0{index}/{frame}", self.source, rgb, calib.camera, sparse=sparse,
            gt=gt, lidar_to_camera=calib.lidar_to_camera,
            points=read_kitti_velodyne(sweep) if self.points and sweep.is_file() else None,
            stereo=stereo,
            stamp=read_frame_timestamp(raw / f"image_0{index}" / "timestamps.txt", int(frame))
            if frame.isdigit() else None)

    def _details(self) -> str:
        return f"raw root {self.raw_root}; {len(self._calib_dir)} drives"
