"""nuScenes: one sample per camera of a keyframe, the LIDAR_TOP sweep projected as ``sparse``.

Two sources:

- ``NuScenesSampleFolder``: the exported keyframe of ../shared/data (no devkit needed)::

      <root>/
        calibration.json       {"lidar": {"file", "timestamp", ...},
                                "cameras": {CAM_*: {"file", "K" 3x3, "lidar2cam" 4x4, "timestamp"}}}
        CAM_FRONT.jpg ...      1600x900 colour images
        LIDAR_TOP.pcd.bin      float32 x, y, z, intensity, ring (5 per point), LiDAR frame, metres

  Read through ``core.nuscenes_sample`` (the surround evaluation's loader); ``lidar2cam`` is
  used as given; it ignores the ego motion between the LiDAR and camera timestamps (up to about
  40 ms), so distant points can land a few pixels off.
- ``NuScenesDevkit``: a full dataroot (``<dataroot>/v1.0-*/``, ``samples/``, ``sweeps/``) read with
  nuscenes-devkit (imported only here; ``pip install nuscenes-devkit``). The extrinsic chains
  LiDAR -> ego (at the LiDAR time) -> global -> ego (at the camera time) -> camera.

nuScenes has no dense ground truth: ``gt`` is None. Timestamps are seconds since the epoch.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from dmd3c_ros.core import nuscenes_sample as core_nuscenes
from dmd3c_ros.core.calibration import transform_from_quaternion
from dmd3c_ros.core.io import read_rgb
from dmd3c_ros.core.nuscenes_sample import (CAMERAS, POINT_COLUMNS,  # noqa: F401 (re-exported)
                                            camera_from_k)
from dmd3c_ros.core.projection import project_to_depth

from .sample import LayoutError, SampleDataset, make_sample, require_dir


def read_nuscenes_sweep(path: Path) -> np.ndarray:
    """A nuScenes ``*.pcd.bin`` sweep as (N, 5) float32 (x, y, z metres, intensity, ring);
    ``core.nuscenes_sample.read_nuscenes_sweep`` with a missing file as a LayoutError."""
    if not Path(path).is_file():
        raise LayoutError(f"{path}: no such LiDAR sweep")
    return core_nuscenes.read_nuscenes_sweep(path)


class NuScenesSampleFolder(SampleDataset):
    """The six cameras of one exported nuScenes keyframe (``calibration.json`` layout)."""

    source = "nuscenes"

    def __init__(self, root, cameras=None, *, max_depth: float = float("inf")) -> None:
        root = require_dir(Path(root), "a nuScenes sample folder with calibration.json")
        path = root / core_nuscenes.CALIBRATION_FILE
        if not path.is_file():
            raise LayoutError(f"{path}: no such file (nuScenes sample layout)")
        calib = core_nuscenes.read_calibration(root)
        self._lidar_file = root / calib["lidar"]["file"]
        entries = calib["cameras"]
        names = list(entries) if cameras is None else list(cameras)
        unknown = [n for n in names if n not in entries]
        if unknown or not names:
            raise LayoutError(f"{path}: cameras {unknown or names} not in {list(entries)}")
        self._entries, self.max_depth = entries, max_depth
        super().__init__(root, names)

    def _load(self, name: str) -> dict:
        view = core_nuscenes.load_camera(self.root, name, self._entries[name])
        points = read_nuscenes_sweep(self._lidar_file)
        sparse = project_to_depth(points, view.camera, view.lidar_to_camera,
                                  max_depth=self.max_depth)
        return make_sample(f"{self.root.name}/{name}", self.source, view.rgb, view.camera,
                           sparse=sparse, lidar_to_camera=view.lidar_to_camera, points=points,
                           stamp=view.stamp)


def _pose(record: dict) -> np.ndarray:
    """(4, 4) transform of a nuScenes calibrated_sensor / ego_pose record (rotation w, x, y, z)."""
    w, x, y, z = record["rotation"]
    return transform_from_quaternion(record["translation"], (x, y, z, w))


class NuScenesDevkit(SampleDataset):
    """Every keyframe x camera of a full nuScenes dataroot, through nuscenes-devkit.

    Untested here (the devkit is not a dependency); follows the devkit's tables: ``sample``,
    ``sample_data``, ``calibrated_sensor``, ``ego_pose``.
    """

    source = "nuscenes"

    def __init__(self, dataroot, version: str = "v1.0-mini", cameras=CAMERAS, *,
                 lidar: str = "LIDAR_TOP", max_depth: float = float("inf")) -> None:
        dataroot = require_dir(Path(dataroot), "a nuScenes dataroot")
        require_dir(dataroot / version, f"the nuScenes '{version}' tables")
        try:
            from nuscenes.nuscenes import NuScenes
        except ImportError as error:
            raise ImportError(f"{dataroot} is a full nuScenes dataroot, which is read with "
                              "nuscenes-devkit: pip install nuscenes-devkit") from error
        self._nusc = NuScenes(version=version, dataroot=str(dataroot), verbose=False)
        self.lidar, self.max_depth = lidar, max_depth
        super().__init__(dataroot, [(s["token"], c) for s in self._nusc.sample for c in cameras])

    def _record(self, sample_data_token: str):
        nusc = self._nusc
        data = nusc.get("sample_data", sample_data_token)
        sensor = nusc.get("calibrated_sensor", data["calibrated_sensor_token"])
        ego = nusc.get("ego_pose", data["ego_pose_token"])
        return data, sensor, _pose(ego) @ _pose(sensor)  # sensor -> global at its own time

    def _load(self, item) -> dict:
        sample_token, name = item
        sample = self._nusc.get("sample", sample_token)
        cam, cam_sensor, global_from_cam = self._record(sample["data"][name])
        lidar, _, global_from_lidar = self._record(sample["data"][self.lidar])
        rgb = read_rgb(Path(self._nusc.dataroot) / cam["filename"])
        camera = camera_from_k(cam_sensor["camera_intrinsic"], rgb.shape[1], rgb.shape[0], name)
        cam_from_lidar = np.linalg.inv(global_from_cam) @ global_from_lidar
        points = read_nuscenes_sweep(Path(self._nusc.dataroot) / lidar["filename"])
        sparse = project_to_depth(points, camera, cam_from_lidar, max_depth=self.max_depth)
        return make_sample(f"{sample_token}/{name}", self.source, rgb, camera, sparse=sparse,
                           lidar_to_camera=cam_from_lidar, points=points,
                           stamp=cam["timestamp"] / 1e6)  # microseconds to seconds


def open_nuscenes(root, **kwargs) -> SampleDataset:
    """``NuScenesSampleFolder`` when ``root`` holds calibration.json, else ``NuScenesDevkit``."""
    if (Path(root) / "calibration.json").is_file():
        return NuScenesSampleFolder(root, **kwargs)
    return NuScenesDevkit(root, **kwargs)
