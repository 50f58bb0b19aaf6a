"""KITTI depth completion, pre-cropped selections: ``val_selection_cropped`` (with ground truth)
and ``test_depth_completion_anonymous`` (without).

Official tree (``root`` may be the subset folder itself or the folder that holds it)::

    <subset>/
      image/<prefix>image_<suffix>.png                 colour image, 1216x352 in the official sets
      velodyne_raw/<prefix>velodyne_raw_<suffix>.png   sparse input: uint16, metres x 256, 0 = none
      groundtruth_depth/<prefix>groundtruth_depth_<suffix>.png   ground truth (val only)
      intrinsics/<prefix>image_<suffix>.txt            9 numbers: 3x3 K of the crop, row-major

e.g. ``2011_09_26_drive_0002_sync_velodyne_raw_0000000005_image_02.png`` pairs with
``2011_09_26_drive_0002_sync_image_0000000005_image_02.png``; the anonymous test set names every
folder's files alike (``0000000000.png``, ``0000000000.txt``). Samples come from the
``velodyne_raw`` files. The folder holds K only, so the camera's P is [K | 0] (the sparse map is
already projected; no extrinsic, sweep, stereo partner or stamp is known).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dmd3c_ros.core.camera import CalibrationError, PinholeCamera
from dmd3c_ros.core.io import InputFileError, read_kitti_depth, read_rgb

from .sample import LayoutError, SampleDataset, make_sample, require_dir

SPARSE_TOKEN = "velodyne_raw"


def _partner_name(sparse_name: str, token: str) -> str:
    """The file name in another folder of the selection for a ``velodyne_raw`` file name."""
    marker = f"_{SPARSE_TOKEN}_"
    if marker in sparse_name:
        return sparse_name.replace(marker, f"_{token}_", 1)
    return sparse_name  # anonymous test set: one name for every folder


def read_intrinsics(path: Path, width: int, height: int) -> PinholeCamera:
    """A KITTI selection intrinsics file (9 numbers, 3x3 K row-major) -> camera with P = [K | 0]."""
    if not path.is_file():
        raise LayoutError(f"{path}: no such intrinsics file")
    try:
        values = np.array([float(v) for v in path.read_text().split()], dtype=np.float64)
    except ValueError as error:
        raise CalibrationError(f"{path}: intrinsics must be 9 numbers: {error}") from error
    if values.size != 9:
        raise CalibrationError(f"{path}: intrinsics must be 9 numbers (3x3 K), got {values.size}")
    K = values.reshape(3, 3)
    if not K.any():
        raise CalibrationError(f"{path}: all-zero K (uncalibrated camera)")
    return PinholeCamera(width, height, K, np.hstack([K, np.zeros((3, 1))]))


class KittiDepthSelection(SampleDataset):
    """Samples of ``val_selection_cropped`` or ``test_depth_completion_anonymous``.

    Args:
        root: the subset folder, or the folder that holds ``subset``.
        subset: the subset's folder name when ``root`` is its parent.
    """

    def __init__(self, root, subset: str = "val_selection_cropped") -> None:
        root = Path(root)
        folder = root if (root / SPARSE_TOKEN).is_dir() else root / subset
        require_dir(folder, f"KITTI depth-completion subset '{subset}' with image/, velodyne_raw/, "
                            "intrinsics/ (and groundtruth_depth/ for validation)")
        for name in ("image", SPARSE_TOKEN, "intrinsics"):
            require_dir(folder / name, f"the {name} folder of {folder.name}")
        self.has_gt = (folder / "groundtruth_depth").is_dir()
        self.source = f"kitti_dc/{folder.name}"
        items = sorted(p.name for p in (folder / SPARSE_TOKEN).glob("*.png"))
        if not items:
            raise LayoutError(f"{folder / SPARSE_TOKEN}: no .png files")
        self.folder = folder
        super().__init__(folder, items)

    def _load(self, sparse_name: str) -> dict:
        folder = self.folder
        image_name = _partner_name(sparse_name, "image")
        rgb = read_rgb(folder / "image" / image_name)
        height, width = rgb.shape[:2]
        sparse = read_kitti_depth(folder / SPARSE_TOKEN / sparse_name)
        gt = read_kitti_depth(folder / "groundtruth_depth"
                              / _partner_name(sparse_name, "groundtruth_depth")) \
            if self.has_gt else None
        for label, depth in ((SPARSE_TOKEN, sparse), ("groundtruth_depth", gt)):
            if depth is not None and depth.shape != (height, width):
                raise InputFileError(f"{sparse_name}: {label} is {depth.shape[1]}x"
                                     f"{depth.shape[0]} but the image is {width}x{height}")
        camera = read_intrinsics(folder / "intrinsics" / Path(image_name).with_suffix(".txt").name,
                                 width, height)
        name = Path(sparse_name).stem.replace(f"{SPARSE_TOKEN}_", "", 1)
        return make_sample(name, self.source, rgb, camera, sparse=sparse, gt=gt)

    def _details(self) -> str:
        return "with ground truth" if self.has_gt else "no ground truth"
