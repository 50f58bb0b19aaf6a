"""Message <-> numpy conversion: the one place that reads or writes message buffers.

Images (sensor_msgs/Image) use the table in ``encodings``; depth follows REP 118 (32FC1 metres,
16UC1 millimetres with 0 = no value). Point clouds (sensor_msgs/PointCloud2) are read with a
structured dtype built from the message's own fields, so any layout with float32 or float64
x, y, z works (KITTI, Velodyne, Ouster, Livox...). Arrays returned are fresh, C-contiguous copies
in native byte order; messages written are little-endian (``is_bigendian`` 0) whatever
``sys.byteorder`` is. Malformed or unsupported input raises ``MessageError`` naming the field.
No function mutates its inputs, and nothing here needs ``rclpy.init()``.
"""
from __future__ import annotations

import array as _array
from typing import Mapping

import numpy as np
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from dmd3c_ros.core.camera import CalibrationError, PinholeCamera
from dmd3c_ros.ros.encodings import (FLOAT32, FLOAT64, IMAGE_ENCODINGS, POINTFIELD_DTYPES,
                                     POINTFIELD_NAMES, MessageError, image_encoding)

__all__ = ["MessageError", "image_to_array", "image_to_rgb", "depth_image_to_metres",
           "array_to_image", "pointcloud2_to_xyz", "pointcloud2_fields", "xyz_to_pointcloud2",
           "camera_info_to_camera", "camera_to_camera_info"]

COLOUR_ENCODINGS = tuple(name for name, enc in IMAGE_ENCODINGS.items() if enc.colour)
DEPTH_ENCODINGS = tuple(name for name, enc in IMAGE_ENCODINGS.items() if not enc.colour)
_TO_RGB = {
    "rgb8": lambda a: a,
    "bgr8": lambda a: a[..., ::-1],
    "rgba8": lambda a: a[..., :3],
    "bgra8": lambda a: a[..., 2::-1],
    "mono8": lambda a: np.repeat(a[..., None], 3, axis=2),
}
_WIRE_ORDER = "<"  # messages we write are little-endian, so is_bigendian is 0 on any host
_MAX_POINT_STEP = 2**31 - 1  # bytes: numpy keeps a record's size in a C int


def _bytes(data) -> np.ndarray:
    """A (n,) uint8 view of a message's data field (array.array, bytes, or a list of ints)."""
    try:
        return np.frombuffer(data, dtype=np.uint8)
    except TypeError:
        return np.asarray(data, dtype=np.uint8).reshape(-1)


def _to_data(array: np.ndarray) -> _array.array:
    """The bytes of a C-contiguous array as the array.array('B') that message data fields hold."""
    data = _array.array("B")
    data.frombytes(array.reshape(-1).view(np.uint8))
    return data


# --------------------------------------------------------------------------------------- images

def image_to_array(msg: Image) -> np.ndarray:
    """The pixels of an Image: (H, W) for one channel, else (H, W, C).

    dtype per encoding: uint8 for rgb8/bgr8/rgba8/bgra8/mono8 (channel order as encoded), uint16 for
    16UC1, float32 for 32FC1 (no unit conversion here). Row padding (``step``) is dropped and
    big-endian data byte-swapped into native order; the result never aliases ``msg.data``.
    """
    enc = image_encoding(msg.encoding)
    height, width, step = int(msg.height), int(msg.width), int(msg.step)
    if height <= 0 or width <= 0:
        raise MessageError(f"Image.width x Image.height {width}x{height}: an image needs at least "
                           "one pixel")
    row_bytes = width * enc.pixel_bytes
    if step < row_bytes:
        raise MessageError(f"Image.step {step} is smaller than width * bytes per pixel = "
                           f"{width} * {enc.pixel_bytes} = {row_bytes} ({msg.encoding})")
    data = _bytes(msg.data)
    if data.size != step * height:
        problem = "too short" if data.size < step * height else "too long"
        raise MessageError(f"Image.data has {data.size} bytes, expected step * height = "
                           f"{step} * {height} = {step * height} ({problem})")
    rows = data.reshape(height, step)[:, :row_bytes].copy()  # drops padding; never aliases data
    wire = enc.dtype.newbyteorder(">" if msg.is_bigendian else "<")
    pixels = rows.view(wire)
    if not wire.isnative:
        pixels = pixels.astype(enc.dtype)  # byte-swap into native order
    shape = (height, width) if enc.channels == 1 else (height, width, enc.channels)
    return pixels.reshape(shape)


def image_to_rgb(msg: Image) -> np.ndarray:
    """A colour or grey Image as (H, W, 3) uint8 RGB; depth encodings raise MessageError."""
    image_encoding(msg.encoding, COLOUR_ENCODINGS)
    return np.ascontiguousarray(_TO_RGB[msg.encoding](image_to_array(msg)))


def depth_image_to_metres(msg: Image) -> np.ndarray:
    """A depth Image (REP 118) as (H, W) float32 metres along the optical axis, NaN = no value.

    32FC1 is returned as is (already metres; NaN/inf kept); 16UC1 is millimetres with 0 = no value.
    Colour encodings raise MessageError.
    """
    image_encoding(msg.encoding, DEPTH_ENCODINGS)
    raw = image_to_array(msg)
    if msg.encoding == "32FC1":
        return raw
    metres = raw.astype(np.float32) / 1000.0  # 16UC1 millimetres to metres (REP 118)
    metres[raw == 0] = np.nan  # 16UC1 0 means no measurement (REP 118)
    return metres


def array_to_image(array: np.ndarray, encoding: str, header: Header | None = None) -> Image:
    """An Image holding ``array``: (H, W) or (H, W, 1) for one channel, (H, W, C) otherwise.

    The dtype must be the encoding's (uint8, uint16 for 16UC1, float32 for 32FC1; either byte
    order); values are written unchanged (no unit conversion). ``step`` = W * bytes per pixel,
    little-endian data, ``is_bigendian`` 0.
    """
    enc = image_encoding(encoding)
    array = np.asarray(array)
    if array.dtype.kind != enc.dtype.kind or array.dtype.itemsize != enc.dtype.itemsize:
        raise MessageError(f"Image.encoding {encoding!r} needs a {enc.dtype} array, "
                           f"got {array.dtype}")
    channels_ok = (array.ndim == 3 and array.shape[2] == enc.channels) or (
        array.ndim == 2 and enc.channels == 1)
    if not channels_ok or 0 in array.shape[:2]:
        wanted = "(H, W)" if enc.channels == 1 else f"(H, W, {enc.channels})"
        raise MessageError(f"Image.encoding {encoding!r} needs a non-empty {wanted} array, "
                           f"got shape {array.shape}")
    height, width = array.shape[:2]
    wire = np.ascontiguousarray(array, dtype=enc.dtype.newbyteorder(_WIRE_ORDER))
    msg = Image(header=header if header is not None else Header(), height=height, width=width,
                encoding=encoding, is_bigendian=0, step=width * enc.pixel_bytes)
    msg.data = _to_data(wire)
    return msg


# --------------------------------------------------------------------------------- point clouds

def _field(msg: PointCloud2, name: str) -> PointField:
    for field in msg.fields:
        if field.name == name:
            return field
    names = ", ".join(repr(f.name) for f in msg.fields) or "none"
    raise MessageError(f"PointCloud2.fields has no {name!r} field (fields: {names})")


def _cloud_view(msg: PointCloud2, names) -> np.ndarray:
    """A (height, width) structured view of ``msg.data`` holding ``names`` (aliases the message)."""
    point_step, order = int(msg.point_step), (">" if msg.is_bigendian else "<")
    if point_step > _MAX_POINT_STEP:
        raise MessageError(f"PointCloud2.point_step {point_step} is larger than the "
                           f"{_MAX_POINT_STEP} bytes a point can have here")
    formats, offsets = [], []
    for name in names:
        field = _field(msg, name)
        if field.datatype not in POINTFIELD_DTYPES:
            raise MessageError(f"PointCloud2.fields[{name!r}].datatype {field.datatype} is not a "
                               "PointField datatype (1 to 8)")
        if field.count < 1:
            raise MessageError(f"PointCloud2.fields[{name!r}].count {field.count} must be >= 1")
        dtype = POINTFIELD_DTYPES[field.datatype].newbyteorder(order)
        size = dtype.itemsize * field.count
        if field.offset + size > point_step:
            raise MessageError(f"PointCloud2.point_step {point_step} is smaller than field "
                               f"{name!r} (offset {field.offset}, {size} bytes)")
        formats.append(dtype if field.count == 1 else (dtype, (field.count,)))
        offsets.append(field.offset)
    height, width, row_step = int(msg.height), int(msg.width), int(msg.row_step)
    if row_step < width * point_step:
        raise MessageError(f"PointCloud2.row_step {row_step} is smaller than width * point_step = "
                           f"{width} * {point_step} = {width * point_step}")
    data = _bytes(msg.data)
    if data.size != row_step * height:
        raise MessageError(f"PointCloud2.data has {data.size} bytes, expected row_step * height = "
                           f"{row_step} * {height} = {row_step * height}")
    record = np.dtype({"names": list(names), "formats": formats, "offsets": offsets,
                       "itemsize": point_step})
    return data.reshape(height, row_step)[:, :width * point_step].view(record)


def pointcloud2_to_xyz(msg: PointCloud2) -> np.ndarray:
    """(N, 3) float32 x, y, z in metres, in the cloud's frame; points with NaN or inf dropped.

    x, y, z may be float32 or float64 at any offsets; other fields, point padding, row padding
    (organised clouds) and big-endian data are handled. Points keep row-major order. An empty cloud
    (width * height == 0) gives (0, 3) whatever its fields.
    """
    height, width = int(msg.height), int(msg.width)
    if height * width == 0:
        return np.empty((0, 3), np.float32)
    for name in ("x", "y", "z"):
        field = _field(msg, name)
        if field.datatype not in (FLOAT32, FLOAT64):
            kind = POINTFIELD_NAMES.get(field.datatype, "unknown")
            raise MessageError(f"PointCloud2.fields[{name!r}].datatype {field.datatype} ({kind}) "
                               "is not supported: x, y, z must be float32 (7) or float64 (8)")
        if field.count != 1:
            raise MessageError(f"PointCloud2.fields[{name!r}].count {field.count} is not "
                               "supported: x, y, z must have count 1")
    view = _cloud_view(msg, ("x", "y", "z"))
    fields = [_field(msg, name) for name in ("x", "y", "z")]
    if (not msg.is_bigendian and [f.offset for f in fields] == [0, 4, 8]
            and all(f.datatype == FLOAT32 for f in fields) and int(msg.point_step) % 4 == 0
            and int(msg.row_step) == width * int(msg.point_step)):
        # The common layout (PCL, Velodyne and Ouster drivers): one strided copy.
        floats = _bytes(msg.data).view("<f4").reshape(-1, int(msg.point_step) // 4)
        points = floats[:, :3].astype(np.float32)  # a native-order copy
    else:
        points = np.empty((height, width, 3), np.float32)
        with np.errstate(over="ignore", invalid="ignore"):  # float64 beyond float32 -> inf
            for axis, name in enumerate(("x", "y", "z")):
                points[..., axis] = view[name]
        points = points.reshape(-1, 3)
    finite = np.isfinite(points)
    if finite.all():  # one pass; a per-row all() is ~10x slower
        return points
    return points[finite[:, 0] & finite[:, 1] & finite[:, 2]]


def pointcloud2_fields(msg: PointCloud2, names) -> dict[str, np.ndarray]:
    """Named fields of every point (invalid ones included), row-major: name -> (N,) or (N, count).

    Native-order copies in the field's own dtype (e.g. intensity float32, ring uint16); N is
    width * height, so rows line up with each other but not with ``pointcloud2_to_xyz``, which
    drops non-finite points.
    """
    names = [names] if isinstance(names, str) else list(dict.fromkeys(names))
    view = _cloud_view(msg, names)
    count = int(msg.height) * int(msg.width)
    out = {}
    for name in names:
        values = view[name]
        values = values.astype(values.dtype.newbyteorder("="))  # a copy in native order
        out[name] = values.reshape((count,) + values.shape[2:])
    return out


def xyz_to_pointcloud2(points: np.ndarray, header: Header | None = None,
                       fields: Mapping[str, np.ndarray] | None = None) -> PointCloud2:
    """A dense (height 1) PointCloud2 of (N, 3) points in metres, x, y, z float32 at 0, 4, 8.

    ``fields`` adds float32 columns after z (name -> (N,) array, e.g. intensity). Values are cast
    to float32; ``is_dense`` is True only when every x, y, z is finite.
    """
    points = np.asarray(points)
    if points.ndim != 2 or points.shape[1] != 3 or points.dtype.kind not in "fiu":
        raise MessageError(f"PointCloud2 points must be a numeric (N, 3) array, got shape "
                           f"{points.shape} {points.dtype}")
    extra = dict(fields or {})
    count = points.shape[0]
    for name, values in extra.items():
        values = np.asarray(values)
        if name in ("x", "y", "z") or values.shape != (count,) or values.dtype.kind not in "fiu":
            raise MessageError(f"PointCloud2.fields[{name!r}] must be a new numeric ({count},) "
                               f"column, got shape {values.shape} {values.dtype}")
    table = np.empty((count, 3 + len(extra)), np.dtype(np.float32).newbyteorder(_WIRE_ORDER))
    with np.errstate(over="ignore"):  # float64 beyond float32 range becomes inf
        table[:, :3] = points
        for column, values in enumerate(extra.values(), start=3):
            table[:, column] = values
    names = ["x", "y", "z", *extra]
    point_step = 4 * len(names)  # float32 columns
    msg = PointCloud2(header=header if header is not None else Header(), height=1, width=count,
                      fields=[PointField(name=name, offset=4 * i, datatype=FLOAT32, count=1)
                              for i, name in enumerate(names)],
                      is_bigendian=False, point_step=point_step, row_step=point_step * count,
                      is_dense=bool(np.isfinite(table[:, :3]).all()))
    msg.data = _to_data(table)
    return msg


# ------------------------------------------------------------------------------------- cameras

def _matrix(msg: CameraInfo, name: str, rows: int, cols: int) -> np.ndarray:
    values = np.asarray(getattr(msg, name), dtype=np.float64).reshape(-1)
    if values.size != rows * cols:
        raise MessageError(f"CameraInfo.{name} has {values.size} values, expected {rows * cols}")
    return values.reshape(rows, cols)


def camera_info_to_camera(msg: CameraInfo) -> PinholeCamera:
    """The PinholeCamera of a CameraInfo (k, p, r, d, distortion_model, width, height).

    An all-zero p is built from k with zero translation; an all-zero r is the identity. All-zero k
    (an uncalibrated camera), a zero size, binning > 1 and a region of interest other than the full
    image raise MessageError.
    """
    width, height = int(msg.width), int(msg.height)
    if width <= 0 or height <= 0:
        raise MessageError(f"CameraInfo.width x CameraInfo.height {width}x{height} is not an image "
                           "size")
    if msg.binning_x > 1 or msg.binning_y > 1:
        raise MessageError(f"CameraInfo.binning_x/binning_y {msg.binning_x}/{msg.binning_y}: "
                           "binned cameras are not supported")
    roi = msg.roi
    if (roi.x_offset, roi.y_offset) != (0, 0) or (roi.width, roi.height) not in (
            (0, 0), (width, height)):
        raise MessageError(
            f"CameraInfo.roi (x_offset {roi.x_offset}, y_offset {roi.y_offset}, width {roi.width}, "
            f"height {roi.height}) is not supported: only the full {width}x{height} image")
    K = _matrix(msg, "k", 3, 3)
    if not K.any():
        raise MessageError("CameraInfo.k is all zero: uncalibrated camera: all-zero K")
    P = _matrix(msg, "p", 3, 4)
    if not P.any():
        P = np.hstack([K, np.zeros((3, 1))])  # monocular camera: P = [K | 0]
    R = _matrix(msg, "r", 3, 3)
    if not R.any():
        R = np.eye(3)
    try:
        return PinholeCamera(width, height, K, P, R, tuple(float(d) for d in msg.d),
                             msg.distortion_model)
    except CalibrationError as error:
        raise MessageError(f"CameraInfo.k/p: unusable calibration: {error}") from error


def camera_to_camera_info(camera: PinholeCamera, header: Header | None = None) -> CameraInfo:
    """A CameraInfo (k, p, r, d, distortion_model, width, height) describing ``camera``."""
    msg = CameraInfo(header=header if header is not None else Header(), width=camera.width,
                     height=camera.height, distortion_model=camera.distortion_model)
    msg.k = np.array(camera.K, dtype=np.float64).reshape(-1)
    msg.p = np.array(camera.P, dtype=np.float64).reshape(-1)
    msg.r = np.array(camera.R, dtype=np.float64).reshape(-1)
    msg.d = [float(d) for d in camera.D]
    return msg
