"""KITTI stereo 2015: rectified left/right pairs with ground-truth disparity, as depth samples.

Two layouts (``root`` may also be the split folder or a single frame folder)::

    <root>/<split>/                       official (split: training or testing)
      image_2/<id>_10.png                 left colour image (the reference view)
      image_3/<id>_10.png                 right colour image
      disp_occ_0/<id>_10.png              disparity of image_2: uint16, pixels x 256, 0 = none
                                          (absent for testing: gt None)
      calib_cam_to_cam/<id>.txt           P_rect_02, P_rect_03 (optional, see below)

    <root>/<id>/                          the flat layout of ../shared/data
      image_2.png, image_3.png, disp_occ_0.png

Ground-truth depth is gt = f * B / d (metres) wherever the disparity d > 0; there is no LiDAR, so
``sparse`` is all zero and ``lidar_to_camera`` / ``points`` are None; ``stereo`` holds the right
image, its camera, the baseline and the ground-truth disparity.

Focal length and baseline come from ``calib_cam_to_cam/<id>.txt`` (fx of P_rect_02, baseline from
P_rect_02 / P_rect_03) when it exists. The flat layout has no calibration: then ``focal_px`` and
``baseline_m`` are used, by default KITTI's typical fx = 721.5377 px and nominal baseline 0.54 m.
That is an approximation: KITTI 2015 frames come from many drives whose fx ranges from about 707
to 722 px (and whose calibrated baseline is about 0.53-0.54 m), so depth can be off by a few per
cent; the principal point is then taken as the image centre. Explicit ``focal_px`` /
``baseline_m`` take precedence over calibration files too (a value not given comes from the file;
the cameras are then built as without calibration).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dmd3c_ros.core.calibration import parse_calibration_text
from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.io import InputFileError, read_rgb

from .kitti_common import disparity_to_depth, read_kitti_disparity, stereo_baseline
from .sample import LayoutError, SampleDataset, make_sample, require_dir, stereo_partner

KITTI_DEFAULT_FOCAL_PX = 721.5377  # fx of P_rect_02 on the 2011_09_26 drives; an approximation
KITTI_DEFAULT_BASELINE_M = 0.54    # nominal distance between KITTI's colour cameras


def approximate_stereo_cameras(width: int, height: int, focal_px: float,
                               baseline_m: float) -> tuple[PinholeCamera, PinholeCamera]:
    """Left and right rectified cameras with the principal point at the image centre.

    The right camera's P[0, 3] = -fx * B puts its centre B metres to the right of the left one.
    """
    cx, cy = (width - 1) / 2.0, (height - 1) / 2.0  # image centre in pixel-centre coordinates
    left = PinholeCamera.from_intrinsics(focal_px, focal_px, cx, cy, width, height)
    P = left.P.copy()
    P[0, 3] = -focal_px * baseline_m
    return left, PinholeCamera.from_projection(P, width, height)


def read_stereo_calibration(path: Path, width: int,
                            height: int) -> tuple[PinholeCamera, PinholeCamera]:
    """Cameras 2 and 3 of a KITTI stereo ``calib_cam_to_cam/<id>.txt`` for a W x H image."""
    values = parse_calibration_text(path.read_text(), str(path))
    cameras = []
    for key in ("P_rect_02", "P_rect_03"):
        if values.get(key, np.empty(0)).size != 12:
            raise InputFileError(f"{path}: missing or malformed '{key}' (12 numbers)")
        cameras.append(PinholeCamera.from_projection(values[key], width, height))
    return cameras[0], cameras[1]


class KittiStereo2015(SampleDataset):
    """KITTI stereo 2015 frames as samples with stereo ground truth (see module docstring).

    Args:
        root: dataset root, split folder, a folder of ``<id>/`` folders or one such folder.
        split: ``training`` or ``testing`` when ``root`` is the dataset root.
        disparity: ground-truth folder/file stem: ``disp_occ_0`` (all pixels) or ``disp_noc_0``.
        focal_px, baseline_m: override (or, without calibration files, replace) fx in pixels and
            the baseline in metres used for cameras and depth = f * B / d.
    """

    source = "kitti_stereo2015"

    def __init__(self, root, split: str = "training", *, disparity: str = "disp_occ_0",
                 focal_px: float | None = None, baseline_m: float | None = None) -> None:
        root = require_dir(Path(root), "KITTI stereo 2015 data")
        self.disparity, self.focal_px, self.baseline_m = disparity, focal_px, baseline_m
        for label, value in (("focal_px", focal_px), ("baseline_m", baseline_m)):
            if value is not None and not value > 0:
                raise ValueError(f"{label} must be > 0, got {value}")
        official = root if (root / "image_2").is_dir() else root / split
        if (official / "image_2").is_dir():
            require_dir(official / "image_3", "the right images of the KITTI stereo layout")
            with_gt = (official / disparity).is_dir()
            frames = sorted((official / disparity if with_gt else official / "image_2")
                            .glob("*_10.png"))
            items = [(p.stem, official / "image_2" / p.name, official / "image_3" / p.name,
                      official / disparity / p.name if with_gt else None,
                      official / "calib_cam_to_cam" / f"{p.stem.split('_')[0]}.txt")
                     for p in frames]
        else:
            folders = [root] if (root / "image_2.png").is_file() else sorted(
                p for p in root.iterdir() if (p / "image_2.png").is_file())
            items = [(f.name, f / "image_2.png", f / "image_3.png",
                      f / f"{disparity}.png" if (f / f"{disparity}.png").is_file() else None,
                      None) for f in folders]
        if not items:
            raise LayoutError(f"{root}: no KITTI stereo 2015 frames ({split}/image_2/<id>_10.png "
                              "or <id>/image_2.png)")
        super().__init__(root, items)

    def _cameras(self, calib_path: Path | None, width: int, height: int):
        """(left, right, focal_px, baseline_m) from the calibration file or the defaults."""
        if calib_path is not None and calib_path.is_file():
            left, right = read_stereo_calibration(calib_path, width, height)
            focal, baseline = left.fx, stereo_baseline(left, right)
            if self.focal_px is None and self.baseline_m is None:
                return left, right, focal, baseline
        else:
            focal, baseline = KITTI_DEFAULT_FOCAL_PX, KITTI_DEFAULT_BASELINE_M
        focal = self.focal_px if self.focal_px is not None else focal
        baseline = self.baseline_m if self.baseline_m is not None else baseline
        left, right = approximate_stereo_cameras(width, height, focal, baseline)
        return left, right, focal, baseline

    def _load(self, item) -> dict:
        name, left_path, right_path, disparity_path, calib_path = item
        rgb = read_rgb(left_path)
        height, width = rgb.shape[:2]
        right_rgb = read_rgb(right_path)
        if right_rgb.shape != rgb.shape:
            raise InputFileError(f"{right_path}: {right_rgb.shape[1]}x{right_rgb.shape[0]} does "
                                 f"not match the left image's {width}x{height}")
        left, right, focal, baseline = self._cameras(calib_path, width, height)
        disparity = gt = None
        if disparity_path is not None:
            disparity = read_kitti_disparity(disparity_path)
            if disparity.shape != (height, width):
                raise InputFileError(f"{disparity_path}: {disparity.shape[1]}x"
                                     f"{disparity.shape[0]} does not match the image")
            gt = disparity_to_depth(disparity, focal, baseline)
        return make_sample(name, self.source, rgb, left, gt=gt,
                           stereo=stereo_partner(right_rgb, right, baseline, disparity))

    def _details(self) -> str:
        focal = self.focal_px or f"calibration or {KITTI_DEFAULT_FOCAL_PX}"
        baseline = self.baseline_m or f"calibration or {KITTI_DEFAULT_BASELINE_M}"
        return f"depth = f * B / d with f = {focal} px, B = {baseline} m"
