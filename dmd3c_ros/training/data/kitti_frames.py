"""Single KITTI frames, one folder each (the layout of ../shared/data), and the KITTI object
benchmark.

``KittiFrameFolders`` reads raw-recording frames with their depth-completion PNGs::

    <root>/<frame>/                      (or <root> itself is one frame folder)
      image_02.png, image_03.png         left / right colour images (rectified)
      velodyne_raw_02.png                official sparse input, uint16 metres x 256, 0 = none
      groundtruth_02.png                 official ground truth, same encoding (optional)
      velodyne.bin                       raw sweep, float32 x, y, z, reflectance
      calib_cam_to_cam.txt, calib_velo_to_cam.txt   raw calibration pair (here or in <root>)

When ``velodyne_raw_0i.png`` is absent the sparse map is the sweep projected with
``core.projection`` (a slightly different input, see ../shared/data/README.md).

``KittiObjectFrames`` reads the object benchmark, either one folder per frame
(``<root>/<id>/{image_2.png, image_3.png, velodyne.bin, calib.txt}``) or the official layout
(``<root>/<split>/{image_2,image_3,velodyne,calib}/<id>.png|.bin|.txt``). It has no depth ground
truth: ``sparse`` is the projected sweep and ``gt`` is None.
"""
from __future__ import annotations

from pathlib import Path

from dmd3c_ros.core.calibration import load_kitti_object_calibration
from dmd3c_ros.core.io import InputFileError, read_kitti_depth, read_kitti_velodyne, read_rgb
from dmd3c_ros.core.projection import project_to_depth

from .kitti_common import (STEREO_PARTNER, camera_indices, find_raw_calibration, raw_calibration,
                           stereo_baseline)
from .sample import LayoutError, SampleDataset, make_sample, require_dir, stereo_partner


def _frame_folders(root: Path, marker: str) -> list[Path]:
    """``[root]`` if ``root`` holds ``marker``, else its sub-folders that do."""
    if (root / marker).is_file():
        return [root]
    return sorted(p for p in root.iterdir() if (p / marker).is_file())


class KittiFrameFolders(SampleDataset):
    """Raw-recording frames stored one folder each; one sample per frame and camera.

    Args:
        root: a folder of frame folders, or one frame folder.
        cameras: colour cameras to make samples of (2 = left, 3 = right).
        stereo: attach the other camera's image as ``stereo`` when it exists.
        points: attach the raw sweep (``velodyne.bin``) when it exists.
    """

    source = "kitti_dc/frames"

    def __init__(self, root, cameras=(2,), *, stereo: bool = True, points: bool = True) -> None:
        root = require_dir(Path(root), "KITTI frame folders <frame>/image_02.png ...")
        self.stereo, self.points = stereo, points
        items = [(folder, index) for index in camera_indices(cameras)
                 for folder in _frame_folders(root, f"image_0{index}.png")]
        if not items:
            raise LayoutError(f"{root}: no frame folder with image_0i.png for cameras {cameras}")
        self._calib_dir = {folder: find_raw_calibration([folder, folder.parent])
                           for folder, _ in items}
        super().__init__(root, sorted(items))

    def _load(self, item) -> dict:
        folder, index = item
        rgb = read_rgb(folder / f"image_0{index}.png")
        size = (rgb.shape[1], rgb.shape[0])
        calib = raw_calibration(self._calib_dir[folder], index, size)
        sweep_path = folder / "velodyne.bin"
        sweep = read_kitti_velodyne(sweep_path) if sweep_path.is_file() else None
        sparse_path = folder / f"velodyne_raw_0{index}.png"
        if sparse_path.is_file():
            sparse = read_kitti_depth(sparse_path)
        elif sweep is not None:
            sparse = project_to_depth(sweep, calib.camera, calib.lidar_to_camera)
        else:
            raise LayoutError(f"{folder}: neither {sparse_path.name} nor velodyne.bin")
        gt_path = folder / f"groundtruth_0{index}.png"
        gt = read_kitti_depth(gt_path) if gt_path.is_file() else None
        for path, depth in ((sparse_path, sparse), (gt_path, gt)):
            if depth is not None and depth.shape != rgb.shape[:2]:
                raise InputFileError(f"{path}: {depth.shape[1]}x{depth.shape[0]} does not match "
                                     f"the {size[0]}x{size[1]} image")
        stereo = None
        partner = STEREO_PARTNER[index]
        if self.stereo and (folder / f"image_0{partner}.png").is_file():
            other = raw_calibration(self._calib_dir[folder], partner, size).camera
            stereo = stereo_partner(read_rgb(folder / f"image_0{partner}.png"), other,
                                    stereo_baseline(calib.camera, other))
        return make_sample(f"{folder.name}/image_0{index}", self.source, rgb, calib.camera,
                           sparse=sparse, gt=gt, lidar_to_camera=calib.lidar_to_camera,
                           points=sweep if self.points else None, stereo=stereo)


class KittiObjectFrames(SampleDataset):
    """KITTI object-benchmark frames (camera 2): the sweep projected as ``sparse``, no ``gt``.

    Args:
        root: a folder of ``<id>/`` folders, one such folder, the official benchmark root (then
            ``split`` picks ``training`` or ``testing``) or the split folder itself.
        stereo: attach ``image_3`` as ``stereo`` when it exists (camera P3).
        max_depth: metres; projected points farther away are dropped.
    """

    source = "kitti_object"

    def __init__(self, root, split: str = "training", *, stereo: bool = True,
                 max_depth: float = float("inf")) -> None:
        root = require_dir(Path(root), "KITTI object frames")
        self.stereo, self.max_depth = stereo, max_depth
        official = root if (root / "image_2").is_dir() else root / split
        if (official / "image_2").is_dir():
            for name in ("velodyne", "calib"):
                require_dir(official / name, f"the {name} folder of the KITTI object layout")
            items = [(p, official / "velodyne" / f"{p.stem}.bin",
                      official / "calib" / f"{p.stem}.txt", official / "image_3" / p.name, p.stem)
                     for p in sorted((official / "image_2").glob("*.png"))]
        else:
            items = [(f / "image_2.png", f / "velodyne.bin", f / "calib.txt", f / "image_3.png",
                      f.name) for f in _frame_folders(root, "image_2.png")]
        if not items:
            raise LayoutError(f"{root}: no KITTI object frames (<id>/image_2.png or "
                              f"{split}/image_2/<id>.png)")
        super().__init__(root, items)

    def _load(self, item) -> dict:
        image_path, sweep_path, calib_path, partner_path, name = item
        rgb = read_rgb(image_path)
        size = (rgb.shape[1], rgb.shape[0])
        calib = load_kitti_object_calibration(calib_path, size, camera_index=2)
        sweep = read_kitti_velodyne(sweep_path)
        sparse = project_to_depth(sweep, calib.camera, calib.lidar_to_camera,
                                  max_depth=self.max_depth)
        stereo = None
        if self.stereo and partner_path.is_file():
            other = load_kitti_object_calibration(calib_path, size, camera_index=3).camera
            stereo = stereo_partner(read_rgb(partner_path), other,
                                    stereo_baseline(calib.camera, other))
        return make_sample(name, self.source, rgb, calib.camera, sparse=sparse,
                           lidar_to_camera=calib.lidar_to_camera, points=sweep, stereo=stereo)
