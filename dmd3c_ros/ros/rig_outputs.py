"""The surround node's rig-level outputs: every view as one fused cloud (``depth/points_fused``),
the rig's extrinsics as static TF (``publish_rig_tf``) and the seam blending of its views
(``seam_blend``)."""
from __future__ import annotations

import numpy as np
from rclpy.node import Node
from sensor_msgs.msg import PointCloud2
from std_msgs.msg import Header

from dmd3c_ros.core.calibration import quaternion_from_rotation
from dmd3c_ros.core.seam_blend import SeamBlender
from dmd3c_ros.core.surround import fuse_views, ring_index_pairs
from dmd3c_ros.ros.adapters import xyz_to_pointcloud2
from dmd3c_ros.ros.node_common import StartupError, output_qos


class FusedCloud:
    """``depth/points_fused``: the views of one sweep as one PointCloud2 in the sweep's frame,
    stamped with the sweep; fields x, y, z (metres) and ``camera`` (the view's index in the
    node's ``cameras``), every ``stride``-th pixel of each view in both directions."""

    def __init__(self, node: Node, cameras: list[str], stride: int, reliability: str) -> None:
        self.index = {name: float(i) for i, name in enumerate(cameras)}
        self.stride = int(stride)
        self.publisher = node.create_publisher(PointCloud2, "depth/points_fused",
                                               output_qos(reliability))

    def publish(self, sweep_header: Header, views: list[tuple[str, object, np.ndarray, object]]
                ) -> int:
        """views: (camera name, PinholeCamera, (4, 4) lidar_to_camera, depth (H, W) metres).
        Returns the number of points published."""
        points, owners = fuse_views([v[3] for v in views], [v[1] for v in views],
                                    [v[2] for v in views], self.stride)
        camera = np.array([self.index[v[0]] for v in views], np.float32)[owners]
        self.publisher.publish(xyz_to_pointcloud2(points, sweep_header, {"camera": camera}))
        return len(points)


class RigTf:
    """Broadcasts each camera's ``lidar_to_camera`` parameter as a static transform from the
    sweep's frame to the camera image's frame, once per pair of frame ids (again when one
    changes). Needs tf2_ros (a full ROS 2 install)."""

    def __init__(self, node: Node, extrinsics: dict[str, np.ndarray]) -> None:
        try:
            import tf2_ros
        except ImportError as error:
            raise StartupError(
                "publish_rig_tf needs tf2_ros, which a pip-only ROS install lacks: set "
                "publish_rig_tf false, or run under a full ROS 2 install") from error
        self.broadcaster = tf2_ros.StaticTransformBroadcaster(node)
        self.extrinsics = extrinsics
        self.sent: dict[str, tuple[str, str]] = {}

    def update(self, sweep_frame: str, image_frames: dict[str, str], stamp) -> bool:
        """Send the transforms when a camera's (sweep frame, image frame) pair is new; True when
        it sent."""
        pairs = {name: (sweep_frame, frame) for name, frame in image_frames.items()}
        if all(self.sent.get(name) == pair for name, pair in pairs.items()):
            return False
        self.sent.update(pairs)
        self.broadcaster.sendTransform([self._transform(name, *pair, stamp)
                                        for name, pair in sorted(self.sent.items())])
        return True

    def _transform(self, name: str, parent: str, child: str, stamp):
        from geometry_msgs.msg import TransformStamped
        lidar_from_camera = np.linalg.inv(self.extrinsics[name])
        message = TransformStamped()
        message.header.stamp, message.header.frame_id = stamp, parent
        message.child_frame_id = child
        t = message.transform
        t.translation.x, t.translation.y, t.translation.z = (
            float(v) for v in lidar_from_camera[:3, 3])
        (t.rotation.x, t.rotation.y, t.rotation.z,
         t.rotation.w) = quaternion_from_rotation(lidar_from_camera[:3, :3])
        return message


__all__ = ["FusedCloud", "RigTf"]


class RigSeams:
    """The :class:`SeamBlender` of a sweep's views, kept while the cameras present, their
    calibration and their extrinsics stay the same; adjacent views are neighbours on the ring
    of the node's ``cameras`` (in that order)."""

    def __init__(self, cameras: list[str], tolerance: float, logger) -> None:
        self.cameras = list(cameras)
        self.tolerance = float(tolerance)
        self.logger = logger
        self._kept: tuple[list[str], SeamBlender] | None = None

    def blender(self, names: list[str], views: list) -> SeamBlender | None:
        """For the views (``runtime.pipeline.View``) of cameras ``names``, in that order; None
        without two views that have the LiDAR's extrinsics, or when an image and its
        CameraInfo differ in size (the pipeline rejects that sweep; its calibration is not
        to be trusted with a blender's memory)."""
        if len(views) < 2 or any(v.lidar_to_camera is None for v in views):
            return None
        if any((v.rgb.shape[1], v.rgb.shape[0]) != v.camera.size for v in views):
            return None
        cameras = [v.camera for v in views]
        extrinsics = [v.lidar_to_camera for v in views]
        if (self._kept is not None and self._kept[0] == list(names)
                and self._kept[1].matches(cameras, extrinsics)):
            return self._kept[1]
        ring = [c for c in self.cameras if c in names]
        blender = SeamBlender(cameras, extrinsics, ring_index_pairs(names, ring),
                              tolerance=self.tolerance)
        self._kept = (list(names), blender)
        self.logger.info(f"seam blending: {len(blender.directions)} overlapping directions "
                         f"among {', '.join(ring)} (tolerance {self.tolerance:g})")
        return blender
