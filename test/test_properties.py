"""Property-based tests (hypothesis): the message adapters and the nodes' frame processing on
generated messages, malformed ones included.

Adapters: every conversion either gives a well-formed result equal to what a slow reference
decoder written here from the message definitions gives (struct.unpack per point and pixel), or
raises ``MessageError``; no other exception escapes. Round trips (array -> message -> array) are
exact. Nodes: ``CompletionNode._process`` and ``SurroundNode._process`` (the worker side, called
directly; nothing spins) never raise, and every frame ends in a published depth or a reported
fault other than "internal" (the catch-all for exception types nobody expected).

Generated messages are valid ones with exactly one thing wrong, one test case per kind of
corruption (so that each rule is exercised with everything else right), plus fully random ones.
Examples are derandomized: the same ones on every run and in CI (about 3700 in all; run with
``--hypothesis-show-statistics`` to see them counted).
"""
from __future__ import annotations

import itertools
import math
import struct
import time

import numpy as np
import pytest
import rclpy
from builtin_interfaces.msg import Time
from hypothesis import HealthCheck, event, given, note, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField, RegionOfInterest
from std_msgs.msg import Header

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.ros.adapters import (MessageError, array_to_image, camera_info_to_camera,
                                    camera_to_camera_info, depth_image_to_metres, image_to_array,
                                    image_to_rgb, pointcloud2_fields, pointcloud2_to_xyz,
                                    xyz_to_pointcloud2)
from dmd3c_ros.ros.completion_node import CompletionNode, Frame
from dmd3c_ros.ros.encodings import IMAGE_ENCODINGS
from dmd3c_ros.ros.graph import free_domain_id
from dmd3c_ros.ros.surround_node import SurroundNode, ViewMessages
from dmd3c_ros.ros.surround_sync import SweepSet

# Reproducible (derandomize), no example database written into the tree, no per-example time
# limit (the first frame through a node is slower than the rest).
settings.register_profile(
    "dmd3c", max_examples=40, deadline=None, derandomize=True, database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.large_base_example])
PROFILE = settings.get_profile("dmd3c")      # per kind of corruption
NODE_PROFILE = settings(PROFILE, max_examples=20)  # per kind of corruption, about 0.1 s each
ROUND_TRIP_PROFILE = settings(PROFILE, max_examples=200)

UINT32_MAX = 2**32 - 1
# Written from sensor_msgs/Image and REP 118, independently of ros/encodings.py:
# encoding -> (numpy kind, channels, which channels give R, G, B; None for depth).
ENCODINGS = {"rgb8": ("u1", 3, [0, 1, 2]), "bgr8": ("u1", 3, [2, 1, 0]),
             "rgba8": ("u1", 4, [0, 1, 2]), "bgra8": ("u1", 4, [2, 1, 0]),
             "mono8": ("u1", 1, [0, 0, 0]), "16UC1": ("u2", 1, None), "32FC1": ("f4", 1, None)}
BOGUS_ENCODINGS = ["", "yuv422", "RGB8", "rgb16", "16SC1", "32FC3", "8UC3", "bayer_rggb8",
                   "32FC1 "]
# sensor_msgs/PointField datatype -> struct format character.
POINTFIELD_FORMATS = {1: "b", 2: "B", 3: "h", 4: "H", 5: "i", 6: "I", 7: "f", 8: "d"}
FIELD_NAMES = ["x", "y", "z", "intensity", "ring", "t", "", "X", "rgb"]
DISTORTION_MODELS = ["plumb_bob", "rational_polynomial", "equidistant", ""]

any_float = st.floats(allow_nan=True, allow_infinity=True)


def test_the_encoding_table_is_the_one_tested_here():
    assert set(IMAGE_ENCODINGS) == set(ENCODINGS)
    for name, (kind, channels, _) in ENCODINGS.items():
        assert (IMAGE_ENCODINGS[name].dtype, IMAGE_ENCODINGS[name].channels) == (
            np.dtype(kind), channels)


# ----------------------------------------------------------------------- reference decoders

def _size(datatype: int) -> int:
    return struct.calcsize(POINTFIELD_FORMATS.get(datatype, "B"))


def _first(fields, name):
    return next((f for f in fields if f.name == name), None)


def reference_fields(msg: PointCloud2, names) -> dict[str, np.ndarray] | None:
    """Every point's ``names`` fields decoded one value at a time; None where the message breaks
    a rule of sensor_msgs/PointCloud2 (the adapter must then raise MessageError)."""
    height, width, point_step, row_step = msg.height, msg.width, msg.point_step, msg.row_step
    fields = [_first(msg.fields, name) for name in names]
    if any(f is None or f.datatype not in POINTFIELD_FORMATS or f.count < 1
           or f.offset + _size(f.datatype) * f.count > point_step for f in fields):
        return None
    if row_step < width * point_step or len(msg.data) != row_step * height:
        return None
    if point_step > 2**31 - 1:  # the adapter's limit (numpy keeps a record's size in a C int)
        return None
    order = ">" if msg.is_bigendian else "<"
    data = bytes(msg.data)
    out = {}
    for name, f in zip(names, fields):
        code = order + POINTFIELD_FORMATS[f.datatype] * f.count
        values = [struct.unpack_from(code, data, r * row_step + c * point_step + f.offset)
                  for r in range(height) for c in range(width)]
        array = np.array(values, np.dtype(code[1])).reshape(height * width, f.count)
        out[name] = array[:, 0] if f.count == 1 else array
    return out


def reference_xyz(msg: PointCloud2) -> np.ndarray | None:
    """(N, 3) float32 finite points, or None where the adapter must raise MessageError."""
    if msg.height * msg.width == 0:
        return np.empty((0, 3), np.float32)
    fields = [_first(msg.fields, name) for name in "xyz"]
    if any(f is None or f.datatype not in (7, 8) or f.count != 1 for f in fields):
        return None
    decoded = reference_fields(msg, ["x", "y", "z"])
    if decoded is None:
        return None
    with np.errstate(over="ignore", invalid="ignore"):  # beyond float32: inf, then dropped
        points = np.stack([decoded[a].astype(np.float64).astype(np.float32) for a in "xyz"],
                          axis=1)
    return points[np.isfinite(points).all(axis=1)]


def reference_pixels(msg: Image) -> np.ndarray | None:
    """(H, W) or (H, W, C) pixels in native order, or None where MessageError is due."""
    if msg.encoding not in ENCODINGS or msg.width <= 0 or msg.height <= 0:
        return None
    kind, channels, _ = ENCODINGS[msg.encoding]
    row_bytes = msg.width * channels * np.dtype(kind).itemsize
    if msg.step < row_bytes or len(msg.data) != msg.step * msg.height:
        return None
    data = bytes(msg.data)
    rows = b"".join(data[r * msg.step:r * msg.step + row_bytes] for r in range(msg.height))
    wire = np.dtype(kind).newbyteorder(">" if msg.is_bigendian else "<")
    pixels = np.frombuffer(rows, wire).astype(np.dtype(kind))
    return pixels.reshape((msg.height, msg.width) + ((channels,) if channels > 1 else ()))


def reference_camera(msg: CameraInfo):
    """(K, P, R) the CameraInfo describes, or None where MessageError is due."""
    width, height, roi = msg.width, msg.height, msg.roi
    if width <= 0 or height <= 0 or msg.binning_x > 1 or msg.binning_y > 1:
        return None
    if (roi.x_offset, roi.y_offset) != (0, 0) or (roi.width, roi.height) not in (
            (0, 0), (width, height)):
        return None
    if (len(msg.k), len(msg.p), len(msg.r)) != (9, 12, 9):
        return None
    K = np.array(msg.k, np.float64).reshape(3, 3)
    P = np.array(msg.p, np.float64).reshape(3, 4)
    R = np.array(msg.r, np.float64).reshape(3, 3)
    if np.all(K == 0):
        return None
    if np.all(P == 0):
        P = np.hstack([K, np.zeros((3, 1))])
    if np.all(R == 0):
        R = np.eye(3)
    if not all(np.isfinite(m).all() for m in (K, P, R)):
        return None
    if not (K[0, 0] > 0 and K[1, 1] > 0 and P[0, 0] > 0 and P[1, 1] > 0):
        return None
    if np.linalg.matrix_rank(P[:, :3]) < 3:  # pixels are lifted back through it
        return None
    return K, P, R


# -------------------------------------------------------------------------- message strategies

def uint32(typical_max: int):
    """A uint32 message field: small, at a limit (of int32, of uint32), or anywhere."""
    return st.one_of(st.integers(0, typical_max), st.sampled_from([2**31 - 1, 2**31, UINT32_MAX]),
                     st.integers(0, UINT32_MAX))


def nonzero(limit: int):
    return st.integers(-limit, -1) | st.integers(1, limit)


def _float_list(size: int):
    return st.lists(any_float, min_size=size, max_size=size)


def _pack_value(datatype: int, value: float, order: str) -> bytes:
    code = POINTFIELD_FORMATS[datatype]
    if code == "f" and math.isfinite(value) and abs(value) > 3.4e38:
        value = math.copysign(math.inf, value)  # struct refuses float32 overflow
    return struct.pack(order + code, value)


CLOUD_CORRUPTIONS = ["none", "field_missing", "field_datatype", "field_count", "field_offset",
                     "field_duplicate", "random_fields", "point_step", "row_step", "empty",
                     "any_size", "data_length"]
IMAGE_CORRUPTIONS = ["none", "encoding", "empty", "any_size", "step_short", "step_any",
                     "data_length"]
CAMERA_CORRUPTIONS = ["none", "size_zero", "any_size", "k_zero", "k_focal", "k_nonfinite",
                      "k_random", "k_length", "p_random", "p_row2", "p_length", "r_random",
                      "r_length", "binning_x", "binning_y", "roi_x_offset", "roi_y_offset",
                      "roi_part", "roi_any"]


@st.composite
def point_field(draw, names=FIELD_NAMES):
    """Any PointField: valid or bogus datatype, count 0 to 3, offset near or anywhere."""
    return PointField(name=draw(st.sampled_from(names)), offset=draw(uint32(40)),
                      datatype=draw(st.one_of(st.integers(1, 8), st.integers(0, 255))),
                      count=draw(st.integers(0, 3)))


@st.composite
def clouds(draw, corruption: str | None = None) -> PointCloud2:
    """PointCloud2 messages: float32/float64 x, y, z (the common layout or any offsets) among
    other fields, organised or not, either byte order, NaN / inf / huge values where x, y, z lie,
    then ``corruption`` (one of CLOUD_CORRUPTIONS; None: any)."""
    if corruption is None:
        corruption = draw(st.sampled_from(CLOUD_CORRUPTIONS))
    if draw(st.booleans()):  # the common layout (PCL, Velodyne, Ouster): float32 at 0, 4, 8
        fields = [PointField(name=name, offset=4 * i, datatype=7, count=1)
                  for i, name in enumerate("xyz")]
    else:
        fields = [PointField(name=name, offset=draw(st.integers(0, 24)),
                             datatype=draw(st.sampled_from([7, 8])), count=1) for name in "xyz"]
    fields += draw(st.lists(st.builds(PointField, name=st.sampled_from(FIELD_NAMES[3:]),
                                      offset=st.integers(0, 40), datatype=st.integers(1, 8),
                                      count=st.integers(1, 3)), max_size=3))
    fields = list(draw(st.permutations(fields)))
    xyz = draw(st.sampled_from([i for i, f in enumerate(fields) if f.name in ("x", "y", "z")]))
    old = fields[xyz]
    if corruption == "field_missing":
        del fields[xyz]
    elif corruption == "field_datatype":
        fields[xyz] = PointField(name=old.name, offset=old.offset, count=old.count,
                                 datatype=draw(st.integers(0, 6) | st.integers(9, 255)))
    elif corruption == "field_count":
        fields[xyz] = PointField(name=old.name, offset=old.offset, datatype=old.datatype,
                                 count=draw(st.sampled_from([0, 2, 3])))
    elif corruption == "field_offset":
        fields[xyz] = PointField(name=old.name, offset=draw(uint32(64)), datatype=old.datatype,
                                 count=old.count)
    elif corruption == "field_duplicate":  # the first one counts; a later one is another field
        fields.insert(draw(st.integers(0, len(fields))), draw(point_field(["x", "y", "z"])))
    elif corruption == "random_fields":
        fields = draw(st.lists(point_field(), max_size=6))
    end = max([f.offset + _size(f.datatype) * f.count for f in fields], default=0)
    point_step = end + draw(st.integers(0, 8))
    if corruption == "point_step" or end > 4096:
        point_step = draw(st.integers(max(end - 8, 0), max(end - 1, 0)) | uint32(64))
    width, height = draw(st.integers(1, 8)), draw(st.integers(1, 3))
    if corruption == "empty":  # no rows or no columns: fine whatever the fields say
        width, height = draw(st.sampled_from([(0, height), (width, 0), (0, 0)]))
        point_step = draw(st.just(point_step) | uint32(64))
    elif corruption == "any_size":
        width, height = draw(uint32(8)), draw(uint32(3))
    row_step = width * point_step + draw(st.integers(0, 8))
    if corruption == "row_step":
        short = width * point_step
        row_step = draw(st.integers(max(short - 12, 0), short - 1) | uint32(600) if short
                        else uint32(600))
    length = row_step * height
    if corruption == "data_length" or length > 4096:
        length = max(0, min(length, 4096) + draw(nonzero(8)))
    bigendian = draw(st.booleans())
    data = bytearray(draw(st.binary(min_size=length, max_size=length)) if draw(st.booleans())
                     else bytes(length))
    if draw(st.booleans()):  # values where the first x, y, z fields say they are
        order = ">" if bigendian else "<"
        for name in "xyz":
            f = _first(fields, name)
            if f is None or f.datatype not in (7, 8) or point_step > 4096:
                continue
            for r, c in itertools.product(range(min(height, 3)), range(min(width, 8))):
                start = r * row_step + c * point_step + f.offset
                if start + _size(f.datatype) <= length:
                    value = draw(st.floats(-200, 200) | any_float)
                    data[start:start + _size(f.datatype)] = _pack_value(f.datatype, value,
                                                                        order)
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=bigendian,
                       point_step=point_step, row_step=row_step, data=bytes(data),
                       is_dense=draw(st.booleans()))


@st.composite
def images(draw, corruption: str | None = None, max_side: int = 16) -> Image:
    """Image messages: every encoding of the table, sizes 1 to ``max_side``, row padding, either
    byte order (is_bigendian 0, 1 or 255), then ``corruption`` (one of IMAGE_CORRUPTIONS;
    None: any)."""
    if corruption is None:
        corruption = draw(st.sampled_from(IMAGE_CORRUPTIONS))
    encoding = draw(st.sampled_from(BOGUS_ENCODINGS if corruption == "encoding"
                                    else list(ENCODINGS)))
    kind, channels, _ = ENCODINGS.get(encoding, ("u1", 3, None))
    width, height = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    if corruption == "empty":
        width, height = draw(st.sampled_from([(0, height), (width, 0), (0, 0)]))
    elif corruption == "any_size":
        width, height = draw(uint32(max_side)), draw(uint32(max_side))
    row_bytes = width * channels * np.dtype(kind).itemsize
    step = row_bytes + draw(st.integers(0, 5))
    if corruption == "step_short":
        step = max(0, row_bytes - draw(st.integers(1, 4)))
    elif corruption == "step_any":
        step = draw(uint32(200))
    length = step * height
    if corruption == "data_length" or length > 8192:
        length = max(0, min(length, 8192) + draw(nonzero(9)))
    return Image(height=height, width=width, encoding=encoding,
                 is_bigendian=draw(st.sampled_from([0, 1, 255])), step=step,
                 data=draw(st.binary(min_size=length, max_size=length)))


@st.composite
def camera_infos(draw, corruption: str | None = None, size: tuple[int, int] | None = None
                 ) -> CameraInfo:
    """CameraInfo messages: positive focal lengths, any principal point and skew, P all zero or
    [K | t], R all zero, identity or a rotation, full-image or no ROI, any D and distortion
    model, then ``corruption`` (one of CAMERA_CORRUPTIONS; None: any). ``size`` fixes
    (width, height) unless the corruption is about the size."""
    if corruption is None:
        corruption = draw(st.sampled_from(CAMERA_CORRUPTIONS))
    width, height = size or (draw(st.integers(1, 2000)), draw(st.integers(1, 2000)))
    if corruption == "size_zero":
        width, height = draw(st.sampled_from([(0, height), (width, 0), (0, 0)]))
    elif corruption == "any_size":
        width, height = draw(uint32(2000)), draw(uint32(2000))
    fx, fy = draw(st.floats(0.5, 3000)), draw(st.floats(0.5, 3000))
    if corruption == "k_focal":  # one focal length anything but positive and finite ... or not
        focal = draw(st.floats(max_value=0.0) | any_float)
        fx, fy = (focal, fy) if draw(st.booleans()) else (fx, focal)
    cx, cy = draw(st.floats(-10, 2000)), draw(st.floats(-10, 2000))
    k = [fx, draw(st.just(0.0) | st.floats(-5, 5)), cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    p = ([0.0] * 12 if draw(st.booleans())
         else k[:3] + [draw(st.floats(-500, 500))] + k[3:6] + [0.0] + k[6:9] + [0.0])
    angle = draw(st.floats(-math.pi, math.pi))
    r = draw(st.sampled_from([[0.0] * 9, [1.0, 0, 0, 0, 1, 0, 0, 0, 1],
                              [math.cos(angle), 0, math.sin(angle), 0, 1, 0,
                               -math.sin(angle), 0, math.cos(angle)]]))
    roi = draw(st.sampled_from([RegionOfInterest(), RegionOfInterest(width=width,
                                                                     height=height)]))
    binning = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    if corruption == "k_zero":
        k = [0.0] * 9
    elif corruption == "k_nonfinite":
        k[draw(st.integers(0, 8))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
    elif corruption == "k_random":
        k = draw(_float_list(9))
    elif corruption == "k_length":
        k = draw(st.lists(st.floats(1, 100), max_size=13).filter(lambda v: len(v) != 9))
    elif corruption == "p_random":
        p = draw(_float_list(12))
    elif corruption == "p_row2":  # no last row, any, or one that makes P[:, :3] singular
        t = draw(st.floats(0.2, 50))
        p = p[:8] if any(p) else k[:3] + [0.0] + k[3:6] + [0.0]
        p += draw(st.sampled_from([[0.0] * 4, [0.0, 0.0, 0.0, t], [fx * t, 0.0, cx * t, 1.0]])
                  | _float_list(4))
    elif corruption == "p_length":
        p = draw(st.lists(st.floats(1, 100), max_size=13).filter(lambda v: len(v) != 12))
    elif corruption == "r_random":
        r = draw(_float_list(9))
    elif corruption == "r_length":
        r = draw(st.lists(st.floats(-1, 1), max_size=10).filter(lambda v: len(v) != 9))
    elif corruption in ("binning_x", "binning_y"):
        binned = draw(st.integers(2, 8) | uint32(8).filter(lambda b: b > 1))
        binning = (binned, binning[1]) if corruption == "binning_x" else (binning[0], binned)
    elif corruption in ("roi_x_offset", "roi_y_offset"):  # an offset on the full size
        offset = draw(st.integers(1, 3) | uint32(8).filter(bool))
        roi = RegionOfInterest(x_offset=offset if corruption == "roi_x_offset" else 0,
                               y_offset=offset if corruption == "roi_y_offset" else 0,
                               width=width, height=height)
    elif corruption == "roi_part":
        roi = RegionOfInterest(width=draw(st.integers(1, 2000)),
                               height=draw(st.integers(1, 2000)))
    elif corruption == "roi_any":
        roi = draw(st.builds(RegionOfInterest, x_offset=uint32(50), y_offset=uint32(50),
                             width=uint32(2000), height=uint32(2000), do_rectify=st.booleans()))
    msg = CameraInfo(width=width, height=height,
                     distortion_model=draw(st.sampled_from(DISTORTION_MODELS)
                                           | st.text(max_size=8)),
                     d=draw(st.lists(any_float, max_size=8)),
                     binning_x=binning[0], binning_y=binning[1], roi=roi)
    msg.k, msg.p, msg.r = k, p, r  # the constructor would pad none of these to their length
    return msg


# ------------------------------------------------------------------------ adapter properties

@pytest.mark.parametrize("corruption", CLOUD_CORRUPTIONS)
@PROFILE
@given(data=st.data())
def test_pointcloud2_to_xyz_matches_the_reference_or_raises_message_error(corruption, data):
    msg = data.draw(clouds(corruption), label="cloud")
    expected = reference_xyz(msg)
    try:
        xyz = pointcloud2_to_xyz(msg)
    except MessageError as error:
        event("MessageError")
        assert expected is None, f"valid cloud refused: {error}"
        assert "PointCloud2" in str(error)
        return
    event("accepted, empty" if len(xyz) == 0 else "accepted")
    assert expected is not None, "a malformed cloud was accepted"
    assert xyz.dtype == np.float32 and xyz.ndim == 2 and xyz.shape[1] == 3
    assert xyz.flags.c_contiguous and np.isfinite(xyz).all()
    np.testing.assert_array_equal(xyz, expected)


@pytest.mark.parametrize("corruption", CLOUD_CORRUPTIONS)
@PROFILE
@given(data=st.data())
def test_pointcloud2_fields_matches_the_reference_or_raises_message_error(corruption, data):
    msg = data.draw(clouds(corruption), label="cloud")
    present = sorted({f.name for f in msg.fields})
    pool = present if present and data.draw(st.integers(0, 5)) else FIELD_NAMES
    names = data.draw(st.lists(st.sampled_from(pool), min_size=1, max_size=3, unique=True),
                      label="names")
    expected = reference_fields(msg, names)
    try:
        fields = pointcloud2_fields(msg, names)
    except MessageError as error:
        event("MessageError")
        assert expected is None, f"valid fields refused: {error}"
        assert "PointCloud2" in str(error)
        return
    event("accepted")
    assert expected is not None, "malformed fields were accepted"
    assert list(fields) == names
    for name in names:
        assert fields[name].dtype == expected[name].dtype and fields[name].dtype.isnative
        assert fields[name].shape == expected[name].shape
        np.testing.assert_array_equal(fields[name], expected[name])


@pytest.mark.parametrize("corruption", IMAGE_CORRUPTIONS)
@PROFILE
@given(data=st.data())
def test_image_conversions_match_the_reference_or_raise_message_error(corruption, data):
    msg = data.draw(images(corruption), label="image")
    expected = reference_pixels(msg)
    try:
        pixels = image_to_array(msg)
    except MessageError as error:
        event("MessageError")
        assert expected is None, f"valid image refused: {error}"
        assert "Image." in str(error)
        pixels = None
    else:
        event(f"accepted {msg.encoding}")
        assert expected is not None, "a malformed image was accepted"
        assert pixels.dtype == expected.dtype and pixels.shape == expected.shape
        assert pixels.dtype.isnative and pixels.flags.c_contiguous
        np.testing.assert_array_equal(pixels, expected)
    rgb_from = ENCODINGS.get(msg.encoding, (None, None, None))[2]
    try:
        rgb = image_to_rgb(msg)
    except MessageError:
        assert pixels is None or rgb_from is None
    else:
        assert pixels is not None and rgb_from is not None
        channels = pixels if pixels.ndim == 3 else pixels[..., None]
        assert rgb.dtype == np.uint8 and rgb.shape == (msg.height, msg.width, 3)
        assert rgb.flags.c_contiguous
        np.testing.assert_array_equal(rgb, channels[..., rgb_from])
    try:
        metres = depth_image_to_metres(msg)
    except MessageError:
        assert pixels is None or msg.encoding not in ("16UC1", "32FC1")
    else:
        assert pixels is not None and msg.encoding in ("16UC1", "32FC1")
        assert metres.dtype == np.float32 and metres.shape == (msg.height, msg.width)
        if msg.encoding == "32FC1":
            np.testing.assert_array_equal(metres, pixels)
        else:  # millimetres, 0 = no value (REP 118)
            np.testing.assert_allclose(metres, np.where(pixels == 0, np.nan, pixels / 1000.0),
                                       rtol=1e-6)


@pytest.mark.parametrize("corruption", CAMERA_CORRUPTIONS)
@PROFILE
@given(data=st.data())
def test_camera_info_to_camera_matches_the_message_or_raises_message_error(corruption, data):
    msg = data.draw(camera_infos(corruption), label="camera_info")
    expected = reference_camera(msg)
    try:
        camera = camera_info_to_camera(msg)
    except MessageError as error:
        event("MessageError")
        assert expected is None, f"usable CameraInfo refused: {error}"
        assert "CameraInfo." in str(error)
        return
    event("accepted")
    assert expected is not None, "an unusable CameraInfo was accepted"
    K, P, R = expected
    assert camera.size == (msg.width, msg.height)
    assert camera.K.shape == (3, 3) and camera.P.shape == (3, 4) and camera.R.shape == (3, 3)
    for got, want in ((camera.K, K), (camera.P, P), (camera.R, R)):
        assert got.dtype == np.float64 and np.isfinite(got).all()
        np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(camera.D, np.asarray(msg.d, np.float64))  # NaN where NaN
    assert camera.distortion_model == msg.distortion_model


# -------------------------------------------------------------------------------- round trips

@ROUND_TRIP_PROFILE
@given(points=hnp.arrays(np.float32, st.tuples(st.integers(0, 40), st.just(3)),
                         elements=st.floats(-1e6, 1e6, width=32) | st.floats(width=32)),
       intensity=st.booleans())
def test_xyz_round_trip(points, intensity):
    extra = {"intensity": np.arange(len(points), dtype=np.float32)} if intensity else None
    msg = xyz_to_pointcloud2(points, Header(frame_id="lidar"), extra)
    back = pointcloud2_to_xyz(msg)
    finite = np.isfinite(points).all(axis=1)
    np.testing.assert_array_equal(back, points[finite])
    assert msg.is_dense == bool(finite.all())
    if intensity:
        np.testing.assert_array_equal(pointcloud2_fields(msg, "intensity")["intensity"],
                                      extra["intensity"])


@st.composite
def pixel_arrays(draw, encoding: str) -> np.ndarray:
    """Any pixels of ``encoding``: (H, W[, C]) up to 16x16, either byte order."""
    kind, channels, _ = ENCODINGS[encoding]
    dtype = np.dtype(kind)
    if dtype.itemsize > 1 and draw(st.booleans()):
        dtype = dtype.newbyteorder()  # the foreign byte order
    shape = (draw(st.integers(1, 16)), draw(st.integers(1, 16)))
    if channels > 1 or draw(st.booleans()):
        shape += (channels,)
    return draw(hnp.arrays(dtype, shape))


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@settings(PROFILE, max_examples=40)
@given(data=st.data())
def test_image_round_trip(encoding, data):
    pixels = data.draw(pixel_arrays(encoding), label="pixels")
    msg = array_to_image(pixels, encoding, Header(frame_id="camera"))
    back = image_to_array(msg)
    native = pixels.astype(pixels.dtype.newbyteorder("="))
    assert back.dtype == native.dtype and back.dtype.isnative
    assert back.shape == (native.shape[:2] if ENCODINGS[encoding][1] == 1 else native.shape)
    assert back.tobytes() == native.tobytes()  # bit for bit, NaN payloads and -0.0 included


@st.composite
def cameras(draw) -> PinholeCamera:
    positive = st.floats(1e-3, 1e4)
    fx, fy = draw(positive), draw(positive)
    cx, cy = draw(st.floats(-1e4, 1e4)), draw(st.floats(-1e4, 1e4))
    K = np.array([[fx, draw(st.floats(-10, 10)), cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
    P = np.hstack([K, [[draw(st.floats(-1e3, 1e3))], [0.0], [draw(st.floats(-1, 1))]]])
    P[0, 0], P[1, 1] = draw(positive), draw(positive)
    angle = draw(st.floats(-math.pi, math.pi))
    R = np.array([[math.cos(angle), -math.sin(angle), 0.0], [math.sin(angle), math.cos(angle), 0],
                  [0.0, 0.0, 1.0]])
    return PinholeCamera(draw(st.integers(1, 5000)), draw(st.integers(1, 5000)), K, P, R,
                         tuple(draw(st.lists(st.floats(-1, 1), max_size=8))),
                         draw(st.sampled_from(DISTORTION_MODELS[:3])))


@ROUND_TRIP_PROFILE
@given(camera=cameras())
def test_camera_round_trip(camera):
    back = camera_info_to_camera(camera_to_camera_info(camera, Header(frame_id="cam")))
    for name in ("K", "P", "R"):
        np.testing.assert_array_equal(getattr(back, name), getattr(camera, name))
    assert (back.size, back.D, back.distortion_model) == (camera.size, camera.D,
                                                          camera.distortion_model)


# ---------------------------------------------------------------------------- node properties

# LiDAR x forward, y left, z up -> optical x right, y down, z forward (as test_completion_node).
FRONT = np.array([[0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]], np.float64)
LEFT = FRONT @ np.array([[0, 1, 0, 0], [-1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float64)
SURROUND_CAMERAS = {"front": FRONT, "left": LEFT}
SWEEP_FAULTS = {"bad_input", "bad_frame", "no_lidar"}
NS = 10**9


class Recorder:
    """Counts what a node publishes and the faults it reports (both still happen)."""

    def __init__(self, node, outputs: dict) -> None:
        self.published: list[str] = []
        self.faults: list[tuple[str, str]] = []
        for name, output in outputs.items():
            output.publish = self._wrap(output.publish, name)
        report = node.faults.report

        def record(kind, level, message):
            self.faults.append((kind, message))
            report(kind, level, message)
        node.faults.report = record

    def _wrap(self, publish, name):
        def counted(*args, **kwargs):
            publish(*args, **kwargs)
            self.published.append(name)
        return counted

    def clear(self) -> None:
        self.published.clear()
        self.faults.clear()


@pytest.fixture(scope="module")
def nodes():
    """A CompletionNode and a two-camera SurroundNode (classical backend, every optional output
    on) in a private rclpy context; nothing spins: the tests call the worker side directly."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
        patch.setenv("ROS_DOMAIN_ID", str(free_domain_id()))
        context = rclpy.Context()
        rclpy.init(context=context)
        flat = {name: [float(v) for v in T.reshape(-1)] for name, T in SURROUND_CAMERAS.items()}
        common = [Parameter("backend", value="classical"),  # every output, so all of it is tested
                  Parameter("publish_points", value=True),
                  Parameter("publish_colorized", value=True)]
        completion = CompletionNode(context=context, parameter_overrides=common + [
            Parameter("lidar_to_camera", value=flat["front"])])
        surround = SurroundNode(context=context, parameter_overrides=common + [
            Parameter("cameras", value=list(SURROUND_CAMERAS))] + [
            Parameter(f"{name}.lidar_to_camera", value=values) for name, values in flat.items()])
        recorders = {"completion": Recorder(completion, {"": completion.outputs}),
                     "surround": Recorder(surround, surround.outputs)}
        try:
            yield completion, surround, recorders
        finally:
            completion.destroy_node()
            surround.destroy_node()
            rclpy.shutdown(context=context)


STAMPS = itertools.count(1)


def next_header(frame_id: str) -> Header:
    """A header with a stamp never used before (the completion node answers a stamp once)."""
    ns = next(STAMPS) * NS // 100
    return Header(stamp=Time(sec=ns // NS, nanosec=ns % NS), frame_id=frame_id)


def hand_image(pixels: np.ndarray, encoding: str, pad: int, bigendian: bool) -> Image:
    height, width = pixels.shape[:2]
    wire = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = np.hstack([wire.reshape(height, -1).view(np.uint8),
                      np.full((height, pad), 0xEE, np.uint8)])
    return Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                 step=rows.shape[1], data=rows.tobytes())


CLOUD_LAYOUTS = {  # name -> [(field name, numpy type, offset)], point_step
    "kitti": ([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 12)], 16),
    "velodyne": ([("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 12),
                  ("ring", "u2", 16), ("time", "f4", 18)], 22),
    "float64": ([("intensity", "f4", 0), ("x", "f8", 8), ("y", "f8", 16), ("z", "f8", 24)], 32),
    "shuffled": ([("z", "f4", 2), ("ring", "u2", 0), ("x", "f8", 6), ("y", "f4", 14)], 20),
}
NUMPY_DATATYPES = {"i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6, "f4": 7, "f8": 8}


def hand_cloud(points: np.ndarray, layout: str, height: int, bigendian: bool) -> PointCloud2:
    """``points`` (N, 3) in a structured layout; organised as ``height`` rows if N allows."""
    fields, point_step = CLOUD_LAYOUTS[layout]
    order = ">" if bigendian else "<"
    dtype = np.dtype({"names": [f[0] for f in fields], "formats": [order + f[1] for f in fields],
                      "offsets": [f[2] for f in fields], "itemsize": point_step})
    records = np.zeros(len(points), dtype)
    with np.errstate(over="ignore"):
        for axis, name in enumerate("xyz"):
            records[name] = points[:, axis]
    height = height if len(points) % height == 0 else 1
    width = len(points) // height
    return PointCloud2(height=height if len(points) else 0, width=width,
                       fields=[PointField(name=n, offset=o, datatype=NUMPY_DATATYPES[t], count=1)
                               for n, t, o in fields],
                       is_bigendian=bigendian, point_step=point_step,
                       row_step=point_step * width, data=records.tobytes(), is_dense=False)


@st.composite
def good_views(draw):
    """(pixels, encoding, (fx, fy, cx, cy)) of a small valid colour or grey camera image."""
    width, height = draw(st.integers(1, 16)), draw(st.integers(1, 16))
    encoding = draw(st.sampled_from([e for e, v in ENCODINGS.items() if v[2] is not None]))
    _, channels, _ = ENCODINGS[encoding]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    shape = (height, width) + ((channels,) if channels > 1 else ())
    pixels = rng.integers(0, 256, shape, dtype=np.uint8)
    fx = width * draw(st.floats(0.3, 3.0))
    fy = fx * draw(st.floats(0.5, 2.0))
    cx, cy = draw(st.floats(0, width)), draw(st.floats(0, height))
    return pixels, encoding, (fx, fy, cx, cy)


@st.composite
def sweep_for(draw, intrinsics: dict, size: dict) -> np.ndarray:
    """(N, 3) float32 LiDAR points: most land in the given cameras (name -> fx, fy, cx, cy),
    a few anywhere, non-finite ones included."""
    parts = []
    for name, (fx, fy, cx, cy) in intrinsics.items():
        count = draw(st.integers(1, 40))
        width, height = size[name]
        rng = np.random.default_rng(draw(st.integers(0, 2**16)))
        u, v = rng.uniform(-0.5, width - 0.5, count), rng.uniform(-0.5, height - 0.5, count)
        z = rng.uniform(0.5, 110.0, count)  # metres; some beyond max_depth (100)
        optical = np.stack([(u - cx) * z / fx, (v - cy) * z / fy, z, np.ones(count)], axis=1)
        parts.append((optical @ np.linalg.inv(SURROUND_CAMERAS[name]).T)[:, :3])
    parts.append(np.array(draw(st.lists(st.tuples(any_float, any_float, any_float),
                                        max_size=4)), np.float64).reshape(-1, 3))
    with np.errstate(over="ignore"):  # beyond float32: inf
        return np.concatenate(parts).astype(np.float32)


FRAME_CORRUPTIONS = [
    "none", "encoding", "depth_encoding", "image_data", "image_step", "image_width",
    "info_size", "info_k_zero", "info_k_nan", "info_k_negative", "info_p_row2", "info_binning",
    "info_roi", "info_random", "image_random", "cloud_random", "cloud_no_z", "cloud_int_x",
    "cloud_data", "cloud_empty", "cloud_none", "points_nan", "points_behind", "points_huge",
    "lidar_elsewhere", "all_random"]


@st.composite
def corrupted_view(draw, name: str, corruption: str):
    """(Image, CameraInfo, intrinsics, size) of one camera: valid, then ``corruption``."""
    pixels, encoding, (fx, fy, cx, cy) = draw(good_views())
    height, width = pixels.shape[:2]
    image = hand_image(pixels, encoding, draw(st.integers(0, 3)), draw(st.booleans()))
    image.header = next_header(f"{name}_optical")
    info = CameraInfo(header=image.header, width=width, height=height,
                      distortion_model="plumb_bob", d=[0.0] * 5)
    info.k = [fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    info.p = [fx, 0.0, cx, 0.0, 0.0, fy, cy, 0.0, 0.0, 0.0, 1.0, 0.0]
    info.r = [1.0, 0, 0, 0, 1, 0, 0, 0, 1] if draw(st.booleans()) else [0.0] * 9
    if corruption == "encoding":
        image.encoding = draw(st.sampled_from(BOGUS_ENCODINGS))
    elif corruption == "depth_encoding":
        image.encoding = draw(st.sampled_from(["16UC1", "32FC1"]))
    elif corruption == "image_data":
        image.data = bytes(image.data)[:draw(st.integers(0, max(len(image.data) - 1, 0)))]
    elif corruption == "image_step":
        image.step = draw(uint32(100))
    elif corruption == "image_width":
        image.width = draw(uint32(20))
    elif corruption == "info_size":
        info.width, info.height = draw(uint32(20)), draw(uint32(20))
    elif corruption == "info_k_zero":
        info.k, info.p = [0.0] * 9, draw(st.sampled_from([[0.0] * 12, list(info.p)]))
    elif corruption == "info_k_nan":
        k = list(info.k)
        k[draw(st.integers(0, 8))] = draw(st.sampled_from([math.nan, math.inf, -math.inf]))
        info.k = k
    elif corruption == "info_k_negative":
        info.k = [-fx, 0.0, cx, 0.0, fy, cy, 0.0, 0.0, 1.0]
    elif corruption == "info_p_row2":  # any last row, or one that makes P[:, :3] singular
        t = draw(st.floats(0.2, 50))
        info.p = list(info.p[:8]) + draw(st.sampled_from(
            [[0.0, 0.0, 0.0, t], [fx * t, 0.0, cx * t, 1.0]]) | _float_list(4))
    elif corruption == "info_binning":
        info.binning_x = draw(st.integers(2, 8))
    elif corruption == "info_roi":
        info.roi = RegionOfInterest(x_offset=draw(st.integers(0, 4)), width=draw(uint32(20)),
                                    height=draw(uint32(20)))
    elif corruption == "info_random":
        info = draw(camera_infos(size=(width, height)))
    if corruption in ("image_random", "all_random"):
        image = draw(images())
        image.header = next_header(f"{name}_optical")
    if corruption == "all_random":
        info = draw(camera_infos())
    return image, info, (fx, fy, cx, cy), (width, height)


@st.composite
def corrupted_sweep(draw, intrinsics: dict, size: dict, corruption: str):
    """The sweep (PointCloud2, or None for camera-only) for the cameras, then ``corruption``."""
    if corruption == "cloud_none":
        return None
    points = draw(sweep_for(intrinsics, size))
    if corruption == "points_nan":
        points[:] = np.nan
    elif corruption == "points_behind":
        points[:, 0] = -np.abs(points[:, 0]) - 1.0  # behind both cameras (x forward, y left)
        points[:, 1] = 0.0
    elif corruption == "points_huge":
        with np.errstate(over="ignore"):
            points *= np.float32(draw(st.sampled_from([1e30, 3e38, -1e-30])))
    elif corruption == "lidar_elsewhere":
        points = draw(hnp.arrays(np.float32, st.tuples(st.integers(0, 30), st.just(3))))
    elif corruption == "cloud_empty":
        points = points[:0]
    layout = draw(st.sampled_from(list(CLOUD_LAYOUTS)))
    cloud = hand_cloud(points, layout, draw(st.integers(1, 3)), draw(st.booleans()))
    if corruption in ("cloud_random", "all_random"):
        cloud = draw(clouds())
    elif corruption == "cloud_no_z":
        cloud.fields = [f for f in cloud.fields if f.name != "z"]
    elif corruption == "cloud_int_x":
        cloud.fields = [PointField(name=f.name, offset=f.offset,
                                   datatype=5 if f.name == "x" else f.datatype, count=f.count)
                        for f in cloud.fields]
    elif corruption == "cloud_data":
        cloud.data = bytes(cloud.data) + bytes(draw(st.integers(1, 8)))
    cloud.header = next_header("lidar")
    return cloud


def describe(image: Image, info: CameraInfo) -> str:
    """One camera's input, for the report of a failure: enough to rebuild it."""
    return (f"image: {image.width}x{image.height} {image.encoding!r} step {image.step} "
            f"bigendian {image.is_bigendian} {len(image.data)} bytes\n"
            f"info: {info.width}x{info.height} k={[float(v) for v in info.k]} "
            f"p={[float(v) for v in info.p]} r={[float(v) for v in info.r]} "
            f"d={list(info.d)} binning {info.binning_x}/{info.binning_y} roi {info.roi}")


def describe_cloud(cloud: PointCloud2 | None) -> str:
    if cloud is None:
        return "cloud: None"
    fields = [(f.name, f.offset, f.datatype, f.count) for f in cloud.fields]
    text = (f"cloud: {cloud.width}x{cloud.height} fields {fields} point_step "
            f"{cloud.point_step} row_step {cloud.row_step} bigendian {cloud.is_bigendian} "
            f"{len(cloud.data)} bytes")
    try:
        return text + f"\n  xyz={pointcloud2_to_xyz(cloud).tolist()}"
    except MessageError:
        return text


@pytest.mark.parametrize("corruption", FRAME_CORRUPTIONS)
@NODE_PROFILE
@given(data=st.data())
def test_completion_node_process_answers_every_frame(nodes, corruption, data):
    node, _, recorders = nodes
    recorder = recorders["completion"]
    image, info, intrinsics, size = data.draw(corrupted_view("front", corruption), label="view")
    cloud = data.draw(corrupted_sweep({"front": intrinsics}, {"front": size}, corruption),
                      label="sweep")
    note(describe(image, info) + "\n" + describe_cloud(cloud))
    recorder.clear()
    node._process(Frame(image, info, cloud, time.monotonic()))  # must not raise
    for kind, _ in recorder.faults:
        event(f"fault {kind}")
    event("published" if recorder.published else "not published")
    internal = [message for kind, message in recorder.faults if kind == "internal"]
    assert not internal, f"unhandled exception type reached the catch-all: {internal}"
    assert recorder.published or recorder.faults, "frame neither published nor reported"
    if recorder.published:
        assert not recorder.faults and recorder.published == [""]
    if corruption == "none":  # valid: published, or no LiDAR return landed in the image
        assert recorder.published or {k for k, _ in recorder.faults} == {"no_lidar"}


@pytest.mark.parametrize("corruption", FRAME_CORRUPTIONS)
@NODE_PROFILE
@given(data=st.data())
def test_surround_node_process_answers_every_view(nodes, corruption, data):
    _, node, recorders = nodes
    recorder = recorders["surround"]
    cameras = data.draw(st.sampled_from([["front", "left"], ["front"], ["left"]]),
                        label="cameras")
    broken = data.draw(st.sampled_from(cameras), label="corrupted view")
    views, intrinsics, size = {}, {}, {}
    for name in cameras:
        image, info, intrinsics[name], size[name] = data.draw(
            corrupted_view(name, corruption if name == broken else "none"), label=name)
        views[name] = ViewMessages(image, info)
        note(f"{name}: {describe(image, info)}")
    cloud = data.draw(corrupted_sweep(intrinsics, size, corruption), label="sweep")
    note(describe_cloud(cloud))
    recorder.clear()
    stamp = (cloud.header if cloud is not None else views[cameras[0]].image.header).stamp
    ready = SweepSet(cloud, views, [c for c in SURROUND_CAMERAS if c not in cameras],
                     stamp.sec * NS + stamp.nanosec, time.monotonic())
    node._process(ready)  # must not raise (its worker would report "internal")
    kinds = {kind for kind, _ in recorder.faults}
    for kind in sorted(kinds):
        event(f"fault {kind}")
    event(f"published {len(recorder.published)} of {len(cameras)}")
    assert "internal" not in kinds
    assert len(recorder.published) == len(set(recorder.published))
    for name in cameras:
        answered = (name in recorder.published or kinds & SWEEP_FAULTS
                    or any(kind.endswith(f"_{name}") for kind in kinds))
        assert answered, f"view {name} neither published nor reported: faults {recorder.faults}"


@pytest.mark.parametrize("which", ["completion", "surround"])
def test_singular_rectified_p_is_bad_input(nodes, which):
    """A bug the properties found (now fixed): a 1x1 image, K = I and a P whose last row is
    [0 0 0 3] (so P[:, :3] is singular), one LiDAR point in front of the camera. The frame used to
    project (depth 3 m), complete, and then fail publishing depth/points (LinAlgError), which
    ended the completion node's worker; now such a CameraInfo is rejected as bad input."""
    completion, surround, recorders = nodes
    image = Image(header=next_header("front_optical"), height=1, width=1, encoding="rgb8",
                  step=3, data=bytes([95, 130, 194]))
    info = CameraInfo(header=image.header, width=1, height=1)
    info.k = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0]
    info.p = [1.0, 0.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0]
    cloud = xyz_to_pointcloud2(np.array([[4.99, -0.68, 1.15]], np.float32),
                               next_header("lidar"))
    recorder = recorders[which]
    recorder.clear()
    if which == "completion":
        completion._process(Frame(image, info, cloud, time.monotonic()))
    else:
        stamp = cloud.header.stamp
        surround._process(SweepSet(cloud, {"front": ViewMessages(image, info)}, ["left"],
                                   stamp.sec * NS + stamp.nanosec, time.monotonic()))
    assert not recorder.published
    kinds = {kind for kind, _ in recorder.faults}
    assert kinds == {"bad_input" if which == "completion" else "bad_input_front"}
    assert any("invertible" in message for _, message in recorder.faults)
