"""rosbag2 bags (sqlite3 or mcap storage) as samples, read with ``rosbags`` alone (no rclpy).

A ``RosbagTopics`` mapping names the topics: ``image`` (sensor_msgs/Image: rgb8, bgr8, rgba8,
bgra8, mono8), ``camera_info`` (its CameraInfo; default: the ``camera_info`` topic next to the
image topic), optionally ``points`` (PointCloud2 with float32/float64 x, y, z, any padding or byte
order) and ``gt`` (a depth Image, 32FC1 metres or 16UC1 millimetres, in the image's pixels).

Pairing: messages are matched by header stamp. Every image takes the camera_info, sweep and gt
message whose stamps are nearest to its own, each within ``slop`` seconds (``info_slop`` for
camera_info; pass ``float('inf')`` for a camera_info published once); an image lacking any of
them is dropped and counted in ``dropped`` under the first role it lacks (camera_info, points,
gt). A sweep may serve several images.

Images are used as recorded and sweeps are projected with the CameraInfo's P (image_geometry
semantics), so record rectified images (``image_rect``) of cameras with lens distortion.

Extrinsic: ``lidar_to_camera`` (16 floats, row-major 4x4 taking points of the sweep's frame into
the image's optical frame, as the node's parameter) or, when not given, the static transform from
the sweep's ``header.frame_id`` to the image's found in ``/tf_static`` (dynamic /tf is not read).

Bags that embed their message definitions (Jazzy, Kilted) need nothing else; for bags that do
not (Humble sqlite3), ``typestore`` names the distribution whose definitions to use.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmd3c_ros.core.projection import project_to_depth

from .rosbag_messages import (MessageError, camera_info_to_camera, depth_image_to_metres,
                              image_to_rgb, lookup_transform, pointcloud2_to_points,
                              stamp_nanoseconds, tf_edges)
from .sample import LayoutError, SampleDataset, make_sample, require_dir

ROLES = ("image", "camera_info", "points", "gt")


@dataclass(frozen=True)
class RosbagTopics:
    """Topic names of one camera (+ LiDAR) in a bag; see the module docstring."""

    image: str
    camera_info: str | None = None
    points: str | None = None
    gt: str | None = None
    tf_static: str = "/tf_static"

    def resolved(self) -> dict[str, str]:
        """role -> topic for the roles in use (camera_info defaulted next to the image)."""
        info = self.camera_info or self.image.rsplit("/", 1)[0] + "/camera_info"
        topics = {"image": self.image, "camera_info": info, "points": self.points, "gt": self.gt}
        return {role: topic for role, topic in topics.items() if topic}


def _typestore(typestore):
    from rosbags.typesys import Stores, get_typestore
    return get_typestore(Stores(typestore)) if isinstance(typestore, str) else typestore


def _nearest(stamps: np.ndarray, t: int, slop_ns: float) -> int | None:
    """Index of the stamp nearest to ``t`` in sorted ``stamps`` if within ``slop_ns``."""
    if not stamps.size:
        return None
    i = int(np.searchsorted(stamps, t))
    best = min((j for j in (i - 1, i) if 0 <= j < stamps.size), key=lambda j: abs(stamps[j] - t))
    return best if abs(int(stamps[best]) - t) <= slop_ns else None


class RosbagFrames(SampleDataset):
    """Paired frames of one camera in a rosbag2 bag (see the module docstring).

    Args:
        bag: the bag folder (holding ``metadata.yaml``).
        topics: a RosbagTopics or a dict of its fields.
        slop: seconds; the largest stamp difference between an image and its sweep / gt.
        info_slop: seconds for camera_info (default: ``slop``).
        lidar_to_camera: 16 floats or (4, 4); None = look it up in /tf_static.
        typestore: rosbags store name for bags without embedded definitions.
    """

    source = "rosbag2"

    def __init__(self, bag, topics, *, slop: float = 0.05, info_slop: float | None = None,
                 lidar_to_camera=None, typestore: str = "ros2_humble") -> None:
        from rosbags.highlevel import AnyReader, AnyReaderError
        from rosbags.rosbag2 import ReaderError
        bag = require_dir(Path(bag), "a rosbag2 bag folder")
        self.topics = topics if isinstance(topics, RosbagTopics) else RosbagTopics(**topics)
        self.slop = float(slop)
        self.info_slop = self.slop if info_slop is None else float(info_slop)
        self._typestore_name, self._reader = typestore, None
        roles = self.topics.resolved()
        entries: dict[str, list] = {role: [] for role in roles}
        edges, frames = [], {}
        if not (bag / "metadata.yaml").is_file():
            raise LayoutError(f"{bag}: not a readable rosbag2 bag: no metadata.yaml")
        try:
            reader = AnyReader([bag], default_typestore=_typestore(typestore))
            reader.open()
        except (AnyReaderError, ReaderError) as error:
            raise LayoutError(f"{bag}: not a readable rosbag2 bag: {error}") from error
        try:
            available = sorted({c.topic for c in reader.connections})
            missing = [t for t in roles.values() if t not in available]
            if missing:
                raise LayoutError(f"{bag}: topics {missing} not in the bag (topics: {available})")
            role_of = {topic: role for role, topic in roles.items()}
            wanted = [c for c in reader.connections
                      if c.topic in role_of or c.topic == self.topics.tf_static]
            for conn, bag_time, raw in reader.messages(connections=wanted):
                msg = reader.deserialize(raw, conn.msgtype)
                if conn.topic == self.topics.tf_static:
                    edges += tf_edges(msg)
                    continue
                role = role_of[conn.topic]
                entries[role].append((stamp_nanoseconds(msg.header), bag_time))
                frames.setdefault(role, msg.header.frame_id)
        finally:
            reader.close()
        self._entries = {role: sorted(values) for role, values in entries.items()}
        self._stamps = {role: np.array([s for s, _ in values], dtype=np.int64)
                        for role, values in self._entries.items()}
        items, self.dropped = self._pair(roles)
        if not items:
            others = ", ".join(role for role in roles if role != "image")
            raise LayoutError(f"{bag}: no image paired with its {others} within the slop "
                              f"(dropped: {self.dropped})")
        self.lidar_to_camera = self._extrinsic(lidar_to_camera, frames, edges)
        super().__init__(bag, items)

    def _pair(self, roles) -> tuple[list[dict], dict[str, int]]:
        items, dropped = [], {role: 0 for role in roles if role != "image"}
        for stamp, bag_time in self._entries["image"]:
            item, ok = {"image": (stamp, bag_time)}, True
            for role in dropped:
                slop = self.info_slop if role == "camera_info" else self.slop
                index = _nearest(self._stamps[role], stamp, slop * 1e9)  # seconds to ns
                if index is None:
                    dropped[role] += 1
                    ok = False
                    break
                item[role] = self._entries[role][index]
            if ok:
                items.append(item)
        return items, dropped

    def _extrinsic(self, lidar_to_camera, frames, edges) -> np.ndarray | None:
        if lidar_to_camera is not None:
            T = np.asarray(lidar_to_camera, dtype=np.float64)
            if T.size != 16 or not np.all(np.isfinite(T)):
                raise ValueError(f"lidar_to_camera must be 16 finite numbers, got {T.size}")
            return T.reshape(4, 4)
        if "points" not in frames:
            return None
        try:
            return lookup_transform(edges, frames["image"], frames["points"])
        except LookupError as error:
            raise LookupError(f"{error}; pass lidar_to_camera (16 floats) or record "
                              f"{self.topics.tf_static}") from error

    # ----------------------------------------------------------------------------- reading

    def _open(self):
        if self._reader is None:
            from rosbags.highlevel import AnyReader
            self._reader = AnyReader([self.root],
                                     default_typestore=_typestore(self._typestore_name))
            self._reader.open()
        return self._reader

    def close(self) -> None:
        """Close the bag (it reopens on the next access)."""
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    def __enter__(self) -> "RosbagFrames":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_reader": None}  # worker processes reopen the bag

    def _message(self, role: str, entry):
        stamp, bag_time = entry
        reader, topic = self._open(), self.topics.resolved()[role]
        connections = [c for c in reader.connections if c.topic == topic]
        for conn, _, raw in reader.messages(connections=connections, start=bag_time,
                                            stop=bag_time + 1):
            msg = reader.deserialize(raw, conn.msgtype)
            if stamp_nanoseconds(msg.header) == stamp:
                return msg
        raise LayoutError(f"{self.root}: {topic} message stamped {stamp} ns vanished from the bag")

    def _load(self, item: dict) -> dict:
        image = self._message("image", item["image"])
        rgb = image_to_rgb(image)
        camera = camera_info_to_camera(self._message("camera_info", item["camera_info"]))
        if camera.size != (rgb.shape[1], rgb.shape[0]):
            raise MessageError(f"CameraInfo {camera.width}x{camera.height} does not match the "
                               f"{rgb.shape[1]}x{rgb.shape[0]} image on {self.topics.image}")
        sparse = points = gt = None
        if "points" in item:
            points = pointcloud2_to_points(self._message("points", item["points"]))
            sparse = project_to_depth(points, camera, self.lidar_to_camera)
        if "gt" in item:
            gt = depth_image_to_metres(self._message("gt", item["gt"]))
            if gt.shape != rgb.shape[:2]:
                raise MessageError(f"gt image {gt.shape[::-1]} does not match the image "
                                   f"{rgb.shape[1]}x{rgb.shape[0]}")
        stamp = item["image"][0]
        return make_sample(f"{self.root.name}/{stamp}", self.source, rgb, camera, sparse=sparse,
                           gt=gt, lidar_to_camera=None if points is None else self.lidar_to_camera,
                           points=points, stamp=stamp * 1e-9)  # ns to seconds

    def _details(self) -> str:
        return (f"topics {self.topics.resolved()}, slop {self.slop} s, "
                f"dropped images {self.dropped}")
