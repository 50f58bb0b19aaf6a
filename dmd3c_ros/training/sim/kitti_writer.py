"""Write a synthetic drive in KITTI's formats.

``kitti``: the official depth-completion layout with the raw recording beside it (the tree in
``training/data/kitti_dc.py``, ``raw_root == root``)::

    OUT/train/<drive>/proj_depth/{velodyne_raw,groundtruth}/image_0<i>/<frame>.png
    OUT/<date>/<drive>/{calib_cam_to_cam.txt, calib_velo_to_cam.txt}
    OUT/<date>/<drive>/image_0<i>/data/<frame>.png, image_0<i>/timestamps.txt
    OUT/<date>/<drive>/velodyne_points/data/<frame>.bin

``kitti-sample``: one folder per frame, the layout of ../shared/data/kitti_dc (what the demo and
the stream feeder read): ``OUT/<frame>/{image_02.png, image_03.png, velodyne.bin,
velodyne_raw_02.png, groundtruth_02.png, calib_cam_to_cam.txt, calib_velo_to_cam.txt}``.

Depth PNGs are uint16, metres x 256, 0 = none; the ground truth is dense (every surface pixel), the
sparse input is the sweep projected with a z-buffer. The calibration follows KITTI: R_rect_00 is
the identity (the synthetic cameras are rectified by construction), P_rect_0i carries camera i's
offset from camera 0 in its last column, and velo_to_cam takes LiDAR points into camera 0.
"""
from __future__ import annotations

import datetime
from pathlib import Path

import numpy as np

from dmd3c_ros.core.io import write_kitti_depth, write_rgb
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.training.sim.drive import SimFrame
from dmd3c_ros.training.sim.rig import CameraMount, Rig

SYNTHETIC_DATE = "2030_01_01"


def _numbers(values) -> str:
    return " ".join(f"{float(v):.12e}" for v in np.ravel(values))


def camera_index(mount: CameraMount) -> int:
    """KITTI camera number of a mount named camera_<i>."""
    try:
        return int(mount.name.rsplit("_", 1)[1])
    except (IndexError, ValueError):
        raise ValueError(f"KITTI formats need cameras named camera_<i>, got {mount.name!r} "
                         "(use --rig front or stereo)") from None


def calibration_texts(rig: Rig) -> tuple[str, str]:
    """(calib_cam_to_cam.txt, calib_velo_to_cam.txt) of a KITTI-like rig."""
    if rig.reference is None:
        raise ValueError(f"rig {rig.name!r} has no KITTI reference camera 0")
    ref = rig.reference
    lines = [f"calib_time: {SYNTHETIC_DATE} synthetic", f"R_rect_00: {_numbers(np.eye(3))}"]
    for mount in (ref,) + tuple(rig.cameras):
        i = camera_index(mount)
        # Camera 0's optical centre in camera i's frame: P_rect_0i = K [I | t].
        cam_from_ref = np.linalg.inv(mount.base_from_camera) @ ref.base_from_camera
        if not np.allclose(cam_from_ref[:3, :3], np.eye(3), atol=1e-9):
            raise ValueError(f"{mount.name} is rotated against camera 0: not a rectified rig")
        P = mount.camera.K @ np.hstack([np.eye(3), cam_from_ref[:3, 3:4]])
        lines += [f"S_rect_0{i}: {_numbers([mount.camera.width, mount.camera.height])}",
                  f"P_rect_0{i}: {_numbers(P)}"]
    velo = np.linalg.inv(ref.base_from_camera) @ rig.base_from_lidar
    velo_text = (f"calib_time: {SYNTHETIC_DATE} synthetic\nR: {_numbers(velo[:3, :3])}\n"
                 f"T: {_numbers(velo[:3, 3])}\n")
    return "\n".join(lines) + "\n", velo_text


def _timestamp(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%d %H:%M:%S.") + f"{int(round(seconds % 1 * 1e9)):09d}"[:9]


class KittiWriter:
    """Streams SimFrames into OUT in the ``kitti`` or ``kitti-sample`` layout."""

    def __init__(self, out: str | Path, rig: Rig, seed: int, layout: str = "kitti") -> None:
        if layout not in ("kitti", "kitti-sample"):
            raise ValueError(f"unknown KITTI layout {layout!r}")
        for mount in rig.cameras:
            camera_index(mount)
        self.out, self.rig, self.layout = Path(out), rig, layout
        self.drive = f"{SYNTHETIC_DATE}_drive_{seed % 10000:04d}_sync"
        self.calibration = calibration_texts(rig)
        self._raw = self.out / SYNTHETIC_DATE / self.drive
        if layout == "kitti":
            self._write_calibration(self._raw)

    def _write_calibration(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "calib_cam_to_cam.txt").write_text(self.calibration[0])
        (folder / "calib_velo_to_cam.txt").write_text(self.calibration[1])

    def write(self, frame: SimFrame) -> None:
        name = f"{frame.index:010d}"
        velodyne = frame.points[:, :4].astype("<f4")  # x, y, z, reflectance (intensity)
        if self.layout == "kitti-sample":
            folder = self.out / name
            self._write_calibration(folder)
            velodyne.tofile(folder / "velodyne.bin")
        else:
            bins = self._raw / "velodyne_points" / "data"
            bins.mkdir(parents=True, exist_ok=True)
            velodyne.tofile(bins / f"{name}.bin")
        for cam in frame.cameras:
            i = camera_index(cam.mount)
            sparse = project_to_depth(frame.points, cam.mount.camera,
                                      self.rig.lidar_to_camera(cam.mount))
            if self.layout == "kitti-sample":
                write_rgb(folder / f"image_0{i}.png", cam.rgb)
                write_kitti_depth(folder / f"velodyne_raw_0{i}.png", sparse)
                write_kitti_depth(folder / f"groundtruth_0{i}.png", cam.depth)
                continue
            depth_root = self.out / "train" / self.drive / "proj_depth"
            write_kitti_depth(depth_root / "velodyne_raw" / f"image_0{i}" / f"{name}.png", sparse)
            write_kitti_depth(depth_root / "groundtruth" / f"image_0{i}" / f"{name}.png", cam.depth)
            images = self._raw / f"image_0{i}"
            write_rgb(images / "data" / f"{name}.png", cam.rgb)
            with open(images / "timestamps.txt", "a") as stamps:
                stamps.write(_timestamp(cam.stamp) + "\n")

    def close(self) -> None:
        pass
