"""Write a synthetic drive as a rosbag2 bag (mcap or sqlite3) with ``rosbags`` alone (no rclpy).

Topics (standard types, ROS 2 Kilted definitions), per camera NAME of the rig:
``/NAME/image`` (sensor_msgs/Image rgb8), ``/NAME/camera_info`` (sensor_msgs/CameraInfo),
``/NAME/depth_gt`` (sensor_msgs/Image 32FC1, metres, NaN = no surface); and
``/LIDAR/points`` (sensor_msgs/PointCloud2: x, y, z, intensity float32, ring uint16),
``/tf_static`` (base_link -> LiDAR and camera optical frames, transient-local like
robot_state_publisher's) and ``/tf`` (odom -> base_link per frame).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from rosbags.interfaces import (Qos, QosDurability, QosHistory, QosLiveliness, QosReliability,
                                QosTime)
from rosbags.rosbag2 import StoragePlugin, Writer
from rosbags.typesys import Stores, get_typestore

from dmd3c_ros.core.calibration import quaternion_from_rotation
from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.training.sim.drive import SimFrame
from dmd3c_ros.training.sim.rig import Rig

FORMATS = {"rosbag2-mcap": StoragePlugin.MCAP, "rosbag2-sqlite3": StoragePlugin.SQLITE3}
_TS = get_typestore(Stores.ROS2_KILTED)
_T = _TS.types
_FLOAT32, _UINT16 = 7, 4  # sensor_msgs/PointField datatypes
_NEVER = QosTime(sec=0, nsec=0)
# /tf_static is latched (transient local), so `ros2 bag play` republishes it that way.
_STATIC_QOS = Qos(history=QosHistory.KEEP_LAST, depth=1, reliability=QosReliability.RELIABLE,
                  durability=QosDurability.TRANSIENT_LOCAL, deadline=_NEVER, lifespan=_NEVER,
                  liveliness=QosLiveliness.AUTOMATIC, liveliness_lease_duration=_NEVER,
                  avoid_ros_namespace_conventions=False)


def _time(seconds: float):
    ns = int(round(seconds * 1e9))
    return _T["builtin_interfaces/msg/Time"](sec=ns // 1_000_000_000, nanosec=ns % 1_000_000_000)


def _header(seconds: float, frame_id: str):
    return _T["std_msgs/msg/Header"](stamp=_time(seconds), frame_id=frame_id)


def _image(array: np.ndarray, encoding: str, stamp: float, frame_id: str):
    array = np.ascontiguousarray(array)
    height, width = array.shape[:2]
    return _T["sensor_msgs/msg/Image"](
        header=_header(stamp, frame_id), height=height, width=width, encoding=encoding,
        is_bigendian=0, step=array.strides[0], data=array.reshape(-1).view(np.uint8))


def _camera_info(camera: PinholeCamera, stamp: float, frame_id: str):
    roi = _T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                 do_rectify=False)
    return _T["sensor_msgs/msg/CameraInfo"](
        header=_header(stamp, frame_id), height=camera.height, width=camera.width,
        distortion_model="plumb_bob", d=np.zeros(5), k=camera.K.reshape(-1).copy(),
        r=camera.R.reshape(-1).copy(), p=camera.P.reshape(-1).copy(), binning_x=0, binning_y=0,
        roi=roi)


def _cloud(points: np.ndarray, stamp: float, frame_id: str):
    """(N, 5) x, y, z, intensity, ring -> PointCloud2 with a ring uint16 field (point_step 18)."""
    dtype = np.dtype([("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"),
                      ("ring", "<u2")])
    packed = np.empty(len(points), dtype)
    for i, name in enumerate(("x", "y", "z", "intensity")):
        packed[name] = points[:, i]
    packed["ring"] = points[:, 4].astype(np.uint16)
    field = _T["sensor_msgs/msg/PointField"]
    fields = [field(name=n, offset=dtype.fields[n][1], datatype=_FLOAT32, count=1)
              for n in ("x", "y", "z", "intensity")]
    fields.append(field(name="ring", offset=dtype.fields["ring"][1], datatype=_UINT16, count=1))
    return _T["sensor_msgs/msg/PointCloud2"](
        header=_header(stamp, frame_id), height=1, width=len(points), fields=fields,
        is_bigendian=False, point_step=dtype.itemsize, row_step=dtype.itemsize * len(points),
        data=packed.view(np.uint8), is_dense=True)


def _tf(parent: str, child: str, matrix: np.ndarray, stamp: float):
    x, y, z, w = quaternion_from_rotation(matrix[:3, :3])
    tr = matrix[:3, 3]
    transform = _T["geometry_msgs/msg/Transform"](
        translation=_T["geometry_msgs/msg/Vector3"](x=float(tr[0]), y=float(tr[1]),
                                                    z=float(tr[2])),
        rotation=_T["geometry_msgs/msg/Quaternion"](x=x, y=y, z=z, w=w))
    return _T["geometry_msgs/msg/TransformStamped"](header=_header(stamp, parent),
                                                    child_frame_id=child, transform=transform)


class BagWriter:
    """Streams SimFrames into a rosbag2 bag at ``path`` (the bag folder itself)."""

    def __init__(self, path: str | Path, rig: Rig, fmt: str = "rosbag2-mcap") -> None:
        if fmt not in FORMATS:
            raise ValueError(f"unknown bag format {fmt!r}; formats: {', '.join(FORMATS)}")
        self.path, self.rig = Path(path), rig
        if self.path.exists():
            raise FileExistsError(f"{self.path} exists; rosbag2 writes a new folder")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._writer = Writer(self.path, version=9, storage_plugin=FORMATS[fmt])
        self._writer.open()
        self._connections: dict[str, object] = {}
        self._static_written = False

    def _write(self, topic: str, msg, stamp: float) -> None:
        if topic not in self._connections:
            qos = [_STATIC_QOS] if topic == "/tf_static" else []
            self._connections[topic] = self._writer.add_connection(
                topic, msg.__msgtype__, typestore=_TS, offered_qos_profiles=qos)
        data = _TS.serialize_cdr(msg, msg.__msgtype__)
        self._writer.write(self._connections[topic], int(round(stamp * 1e9)), bytes(data))

    def write(self, frame: SimFrame) -> None:
        rig = self.rig
        first = min([frame.lidar_stamp] + [c.stamp for c in frame.cameras])
        if not self._static_written:
            transforms = [_tf("base_link", rig.lidar_frame_id, rig.base_from_lidar, first)]
            transforms += [_tf("base_link", m.frame_id, m.base_from_camera, first)
                           for m in rig.cameras]
            self._write("/tf_static", _T["tf2_msgs/msg/TFMessage"](transforms=transforms), first)
            self._static_written = True
        self._write("/tf", _T["tf2_msgs/msg/TFMessage"](transforms=[
            _tf("odom", "base_link", frame.world_from_base, first)]), first)
        self._write(f"/{rig.lidar_frame_id}/points",
                    _cloud(frame.points, frame.lidar_stamp, rig.lidar_frame_id), frame.lidar_stamp)
        for cam in frame.cameras:
            name, frame_id = cam.mount.name, cam.mount.frame_id
            self._write(f"/{name}/image", _image(cam.rgb, "rgb8", cam.stamp, frame_id), cam.stamp)
            self._write(f"/{name}/camera_info",
                        _camera_info(cam.mount.camera, cam.stamp, frame_id), cam.stamp)
            self._write(f"/{name}/depth_gt",
                        _image(cam.depth.astype(np.float32), "32FC1", cam.stamp, frame_id),
                        cam.stamp)

    def close(self) -> None:
        self._writer.close()
