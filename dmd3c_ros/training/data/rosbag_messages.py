"""numpy decoders for the message objects that ``rosbags`` deserialises (ROS 2 Humble, Jazzy,
Kilted: sensor_msgs/Image, CameraInfo, PointCloud2, tf2_msgs/TFMessage).

``rosbags`` messages carry the same field names as the ROS 2 ones (``header.stamp.sec``,
``data`` as a uint8 array, ``fields`` of PointField...), so these functions read them without
rclpy or any message package (training may not import ROS; ``ros.adapters`` does the same for
live rclpy messages). Every function returns fresh arrays and raises ``MessageError`` naming the
message field for malformed or unsupported input.
"""
from __future__ import annotations

import numpy as np

from dmd3c_ros.core.calibration import transform_from_quaternion
from dmd3c_ros.core.camera import CalibrationError, PinholeCamera


class MessageError(ValueError):
    """A bag message is malformed or uses an unsupported encoding/layout."""


# Image encoding -> (element type, channels); REP 118 depth: 32FC1 metres, 16UC1 millimetres.
IMAGE_ENCODINGS = {
    "rgb8": (np.uint8, 3), "bgr8": (np.uint8, 3), "rgba8": (np.uint8, 4), "bgra8": (np.uint8, 4),
    "mono8": (np.uint8, 1), "16UC1": (np.uint16, 1), "32FC1": (np.float32, 1),
}
COLOUR_ENCODINGS = ("rgb8", "bgr8", "rgba8", "bgra8", "mono8")
DEPTH_ENCODINGS = ("32FC1", "16UC1")
# sensor_msgs/PointField datatype -> element type
POINTFIELD_DTYPES = {1: np.int8, 2: np.uint8, 3: np.int16, 4: np.uint16, 5: np.int32,
                     6: np.uint32, 7: np.float32, 8: np.float64}


def stamp_seconds(header) -> float:
    """A std_msgs/Header's stamp in seconds."""
    return int(header.stamp.sec) + int(header.stamp.nanosec) * 1e-9


def stamp_nanoseconds(header) -> int:
    """A std_msgs/Header's stamp in integer nanoseconds (exact, for names and matching)."""
    return int(header.stamp.sec) * 1_000_000_000 + int(header.stamp.nanosec)


def image_pixels(msg, allowed) -> np.ndarray:
    """Pixels of a sensor_msgs/Image: (H, W) or (H, W, C) in the encoding's dtype, native order;
    row padding (``step``) dropped."""
    if msg.encoding not in allowed:
        raise MessageError(f"Image.encoding {msg.encoding!r} not supported here "
                           f"(supported: {', '.join(allowed)})")
    element, channels = IMAGE_ENCODINGS[msg.encoding]
    dtype = np.dtype(element).newbyteorder(">" if msg.is_bigendian else "<")
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    row_bytes = width * channels * dtype.itemsize
    data = np.frombuffer(np.asarray(msg.data, dtype=np.uint8), dtype=np.uint8)
    if height <= 0 or width <= 0 or step < row_bytes or data.size != step * height:
        raise MessageError(f"Image {width}x{height} {msg.encoding} with step {step} does not "
                           f"match its {data.size} data bytes")
    rows = data.reshape(height, step)[:, :row_bytes]
    pixels = np.ascontiguousarray(rows).view(dtype).astype(element)  # native-order copy
    return pixels.reshape((height, width) if channels == 1 else (height, width, channels))


def image_to_rgb(msg) -> np.ndarray:
    """A colour/grey Image as (H, W, 3) uint8 RGB."""
    pixels = image_pixels(msg, COLOUR_ENCODINGS)
    if msg.encoding == "mono8":
        return np.repeat(pixels[..., None], 3, axis=2)
    order = {"rgb8": [0, 1, 2], "rgba8": [0, 1, 2], "bgr8": [2, 1, 0], "bgra8": [2, 1, 0]}
    return np.ascontiguousarray(pixels[..., order[msg.encoding]])


def depth_image_to_metres(msg) -> np.ndarray:
    """A depth Image (REP 118) as (H, W) float32 metres with 0 = no value.

    32FC1 is metres (NaN, inf and values <= 0 become 0); 16UC1 is millimetres (0 = no value).
    """
    pixels = image_pixels(msg, DEPTH_ENCODINGS)
    if msg.encoding == "16UC1":
        return pixels.astype(np.float32) / 1000.0  # millimetres to metres (REP 118)
    return np.where(np.isfinite(pixels) & (pixels > 0), pixels, 0).astype(np.float32)


def _field_dtype(field, big_endian: bool) -> np.dtype:
    if field.datatype not in POINTFIELD_DTYPES:
        raise MessageError(f"PointCloud2.fields[{field.name!r}].datatype {field.datatype} is not "
                           "a PointField datatype (1 to 8)")
    return np.dtype(POINTFIELD_DTYPES[field.datatype]).newbyteorder(">" if big_endian else "<")


def pointcloud2_to_points(msg, extra: str = "intensity") -> np.ndarray:
    """A PointCloud2 as (N, 4) float32: x, y, z in metres (frame ``header.frame_id``) and the
    ``extra`` field (0 where the cloud has none).

    x, y, z may be float32 or float64 at any offsets; other fields, point and row padding,
    organised clouds and big-endian data are handled; points with non-finite x, y or z are
    dropped (row-major order is kept).
    """
    fields = {f.name: f for f in msg.fields}
    if int(msg.height) * int(msg.width) == 0:
        return np.zeros((0, 4), np.float32)
    names = ["x", "y", "z"] + ([extra] if extra in fields else [])
    point_step, height, width = int(msg.point_step), int(msg.height), int(msg.width)
    formats, offsets = [], []
    for name in names:
        if name not in fields:
            raise MessageError(f"PointCloud2.fields has no {name!r} (fields: {list(fields)})")
        field = fields[name]
        dtype = _field_dtype(field, bool(msg.is_bigendian))
        if name in "xyz" and dtype.kind != "f":
            raise MessageError(f"PointCloud2.fields[{name!r}] must be float32 or float64, got "
                               f"datatype {field.datatype}")
        if field.offset + dtype.itemsize > point_step:
            raise MessageError(f"PointCloud2.point_step {point_step} is smaller than field "
                               f"{name!r} at offset {field.offset}")
        formats.append(dtype)
        offsets.append(int(field.offset))
    row_step = int(msg.row_step)
    data = np.frombuffer(np.asarray(msg.data, dtype=np.uint8), dtype=np.uint8)
    if row_step < width * point_step or data.size != row_step * height:
        raise MessageError(f"PointCloud2 {width}x{height}, point_step {point_step}, row_step "
                           f"{row_step} does not match its {data.size} data bytes")
    record = np.dtype({"names": names, "formats": formats, "offsets": offsets,
                       "itemsize": point_step})
    rows = np.ascontiguousarray(data.reshape(height, row_step)[:, :width * point_step])
    view = rows.view(record).reshape(-1)
    points = np.zeros((view.size, 4), np.float32)
    with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 -> inf: dropped
        for column, name in enumerate(names):
            points[:, column] = view[name]
    return points[np.isfinite(points[:, :3]).all(axis=1)]


def camera_info_to_camera(msg) -> PinholeCamera:
    """A sensor_msgs/CameraInfo as a PinholeCamera (k, p, r, d, width, height).

    All-zero k (an uncalibrated camera) is an error; an all-zero p becomes [K | 0] and an all-zero
    r the identity. Binning and a partial region of interest are not supported.
    """
    K = np.asarray(msg.k, dtype=np.float64).reshape(-1)
    if K.size != 9 or not K.any():
        raise MessageError(f"CameraInfo.k is all zero or malformed ({K.tolist()}): an "
                           "uncalibrated camera cannot be used")
    if int(msg.binning_x) > 1 or int(msg.binning_y) > 1:
        raise MessageError("CameraInfo.binning_x/binning_y > 1 is not supported")
    roi = msg.roi
    if (int(roi.x_offset), int(roi.y_offset)) != (0, 0) or (int(roi.width), int(roi.height)) \
            not in ((0, 0), (int(msg.width), int(msg.height))):
        raise MessageError("CameraInfo.roi other than the full image is not supported")
    K = K.reshape(3, 3)
    P = np.asarray(msg.p, dtype=np.float64).reshape(3, 4)
    R = np.asarray(msg.r, dtype=np.float64).reshape(3, 3)
    try:
        return PinholeCamera(int(msg.width), int(msg.height), K,
                             P if P.any() else np.hstack([K, np.zeros((3, 1))]),
                             R if R.any() else np.eye(3), tuple(np.asarray(msg.d, float)),
                             msg.distortion_model or "plumb_bob")
    except CalibrationError as error:
        raise MessageError(f"CameraInfo: unusable calibration: {error}") from error


def tf_edges(msg) -> list[tuple[str, str, np.ndarray]]:
    """(parent, child, parent_from_child 4x4) for each transform of a tf2_msgs/TFMessage."""
    edges = []
    for stamped in msg.transforms:
        t, q = stamped.transform.translation, stamped.transform.rotation
        edges.append((stamped.header.frame_id.lstrip("/"), stamped.child_frame_id.lstrip("/"),
                      transform_from_quaternion((t.x, t.y, t.z), (q.x, q.y, q.z, q.w))))
    return edges


def lookup_transform(edges, target: str, source: str) -> np.ndarray:
    """(4, 4) target_from_source through a tree of (parent, child, parent_from_child) edges.

    Raises LookupError naming both frames when they are not connected.
    """
    target, source = target.lstrip("/"), source.lstrip("/")
    neighbours: dict[str, list[tuple[str, np.ndarray]]] = {}
    for parent, child, parent_from_child in edges:
        neighbours.setdefault(child, []).append((parent, parent_from_child))
        neighbours.setdefault(parent, []).append((child, np.linalg.inv(parent_from_child)))
    found = {source: np.eye(4)}  # frame -> frame_from_source
    queue = [source]
    while queue:
        frame = queue.pop(0)
        if frame == target:
            return found[frame]
        for other, other_from_frame in neighbours.get(frame, []):
            if other not in found:
                found[other] = other_from_frame @ found[frame]
                queue.append(other)
    raise LookupError(f"no static transform from {source!r} to {target!r} "
                      f"(frames in /tf_static: {sorted(neighbours)})")
