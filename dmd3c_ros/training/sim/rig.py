"""Sensor rigs of the synthetic world: where cameras and the LiDAR sit on the vehicle.

``base_link`` is on the ground under the LiDAR, x forward, y left, z up. Values:
- ``front`` / ``stereo``: KITTI's rig (Geiger et al., IJRR 2013): colour cameras 1.65 m above the
  ground, the Velodyne HDL-64E at 1.73 m and 0.27 m behind the camera bar, so that the LiDAR sees
  around foreground objects that the camera does not (points "bleed" behind edges, as in KITTI).
  Camera 2 (left colour) sits 0.06 m left of camera 0; the right colour camera 3 of ``stereo`` is
  0.54 m to the right of camera 2. Intrinsics of KITTI's rectified 1242x375 images (fx = fy = 721.5).
- ``surround``: six 1600x900 cameras like nuScenes' (yaw 0, +-55, +-110, 180 degrees; fx about 1266,
  the back camera about 809), about 1.5 m high, the LiDAR on the roof at 1.84 m. Approximate values
  from the published rig, not a calibration of any vehicle.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dmd3c_ros.core.calibration import rigid_transform
from dmd3c_ros.core.camera import PinholeCamera

# Columns: the optical frame's x (right), y (down), z (forward) axes in base_link coordinates.
OPTICAL_IN_BASE = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])
RIGS = ("front", "stereo", "surround")


def yaw_rotation(yaw_deg: float) -> np.ndarray:
    """(3, 3) rotation about z (counter-clockwise seen from above, degrees)."""
    a = np.radians(yaw_deg)
    return np.array([[np.cos(a), -np.sin(a), 0.0], [np.sin(a), np.cos(a), 0.0], [0.0, 0.0, 1.0]])


def camera_mount(x: float, y: float, z: float, yaw_deg: float = 0.0) -> np.ndarray:
    """base_from_camera (4, 4) of a level camera at (x, y, z) looking along yaw."""
    return rigid_transform(yaw_rotation(yaw_deg) @ OPTICAL_IN_BASE, (x, y, z))


@dataclass(frozen=True)
class CameraMount:
    name: str                 # e.g. "camera_2", "CAM_FRONT"
    camera: PinholeCamera     # intrinsics; P has no translation (each camera has its own pose)
    base_from_camera: np.ndarray

    @property
    def frame_id(self) -> str:
        return f"{self.name}_optical"


@dataclass(frozen=True)
class Rig:
    name: str
    cameras: tuple[CameraMount, ...]
    base_from_lidar: np.ndarray
    lidar_frame_id: str = "lidar"
    reference: CameraMount | None = None  # KITTI's camera 0: the rectified reference frame

    def lidar_to_camera(self, mount: CameraMount) -> np.ndarray:
        """(4, 4) transform taking LiDAR-frame points into ``mount``'s optical frame."""
        return np.linalg.inv(mount.base_from_camera) @ self.base_from_lidar


KITTI_CAMERA = PinholeCamera.from_intrinsics(721.5377, 721.5377, 609.5593, 172.854, 1242, 375)
KITTI_CAMERA_X = 0.27   # m ahead of the LiDAR
KITTI_CAMERA_Z = 1.65   # m above the ground
KITTI_LIDAR_Z = 1.73


def make_rig(name: str, image_scale: float = 1.0) -> Rig:
    """One of RIGS. ``image_scale`` shrinks every camera (e.g. 0.5 for a fast surround rig)."""
    def scaled(camera: PinholeCamera) -> PinholeCamera:
        if image_scale == 1.0:
            return camera
        return camera.resized(max(1, round(camera.width * image_scale)),
                              max(1, round(camera.height * image_scale)))

    if name in ("front", "stereo"):
        lidar = rigid_transform(np.eye(3), (0.0, 0.0, KITTI_LIDAR_Z))
        cam0 = CameraMount("camera_0", scaled(KITTI_CAMERA),
                           camera_mount(KITTI_CAMERA_X, 0.0, KITTI_CAMERA_Z))
        cam2 = CameraMount("camera_2", scaled(KITTI_CAMERA),
                           camera_mount(KITTI_CAMERA_X, 0.06, KITTI_CAMERA_Z))
        cameras = (cam2,)
        if name == "stereo":
            cameras += (CameraMount("camera_3", scaled(KITTI_CAMERA),
                                    camera_mount(KITTI_CAMERA_X, 0.06 - 0.54, KITTI_CAMERA_Z)),)
        return Rig(name, cameras, lidar, "velodyne", reference=cam0)
    if name == "surround":
        front = PinholeCamera.from_intrinsics(1266.4, 1266.4, 816.3, 491.5, 1600, 900)
        back = PinholeCamera.from_intrinsics(809.2, 809.2, 829.2, 481.8, 1600, 900)
        layout = (("CAM_FRONT", front, 1.70, 0.00, 1.51, 0.0),
                  ("CAM_FRONT_RIGHT", front, 1.55, -0.49, 1.50, -55.0),
                  ("CAM_BACK_RIGHT", front, 1.05, -0.48, 1.56, -110.0),
                  ("CAM_BACK", back, 0.05, 0.00, 1.57, 180.0),
                  ("CAM_BACK_LEFT", front, 1.05, 0.48, 1.56, 110.0),
                  ("CAM_FRONT_LEFT", front, 1.55, 0.49, 1.50, 55.0))
        cameras = tuple(CameraMount(n, scaled(c), camera_mount(x, y, z, yaw))
                        for n, c, x, y, z, yaw in layout)
        return Rig(name, cameras, rigid_transform(np.eye(3), (0.95, 0.0, 1.84)), "lidar_top")
    raise ValueError(f"unknown rig {name!r}; rigs: {', '.join(RIGS)}")
