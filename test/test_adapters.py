"""Message <-> numpy round trips and malformed-input errors for dmd3c_ros.ros.adapters.

Messages are built by hand (numpy structured arrays for clouds) so that the tests do not depend on
the code under test to write what it later reads. No rclpy.init() is needed.
"""

import numpy as np
import pytest
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField
from std_msgs.msg import Header

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.ros.adapters import (MessageError, array_to_image, camera_info_to_camera,
                                    camera_to_camera_info, depth_image_to_metres, image_to_array,
                                    image_to_rgb, pointcloud2_fields, pointcloud2_to_xyz,
                                    xyz_to_pointcloud2)

ENCODINGS = {"rgb8": ("u1", 3), "bgr8": ("u1", 3), "rgba8": ("u1", 4), "bgra8": ("u1", 4),
             "mono8": ("u1", 1), "16UC1": ("u2", 1), "32FC1": ("f4", 1)}
DATATYPES = {"i1": 1, "u1": 2, "i2": 3, "u2": 4, "i4": 5, "u4": 6, "f4": 7, "f8": 8}


def random_pixels(encoding, height=5, width=7, seed=0):
    kind, channels = ENCODINGS[encoding]
    rng = np.random.default_rng(seed)
    shape = (height, width) if channels == 1 else (height, width, channels)
    if kind == "f4":
        return rng.normal(10.0, 5.0, shape).astype(np.float32)
    return rng.integers(0, np.iinfo(kind).max, shape, endpoint=True).astype(kind)


def hand_image(pixels, encoding, pad=0, bigendian=False):
    """An Image written by hand: rows of ``pixels`` in the given byte order, ``pad`` junk bytes."""
    height, width = pixels.shape[:2]
    wire = pixels.astype(pixels.dtype.newbyteorder(">" if bigendian else "<"))
    rows = wire.reshape(height, -1).view(np.uint8)
    padded = np.hstack([rows, np.full((height, pad), 0xAB, np.uint8)])
    return Image(height=height, width=width, encoding=encoding, is_bigendian=int(bigendian),
                 step=padded.shape[1], data=padded.tobytes())


def hand_cloud(records, height=1, row_pad=0, bigendian=False, datatypes=None):
    """A PointCloud2 holding a structured array (fields, offsets and point_step from its dtype)."""
    dtype = records.dtype
    fields = [PointField(name=name, offset=dtype.fields[name][1],
                         datatype=(datatypes or {}).get(name, DATATYPES[dtype[name].str[1:]]),
                         count=1) for name in dtype.names]
    if bigendian:
        records = records.astype(dtype.newbyteorder(">"))
    width = records.size // height
    rows = records.reshape(height, width).view(np.uint8).reshape(height, -1)
    rows = np.hstack([rows, np.zeros((height, row_pad), np.uint8)])
    return PointCloud2(height=height, width=width, fields=fields, is_bigendian=bigendian,
                       point_step=dtype.itemsize, row_step=rows.shape[1], data=rows.tobytes(),
                       is_dense=False)


def structured(layout, n, seed=1):
    """n records of ``layout`` [(name, type, offset)] (itemsize last), x/y/z random metres."""
    *fields, itemsize = layout
    dtype = np.dtype({"names": [f[0] for f in fields], "formats": [f[1] for f in fields],
                      "offsets": [f[2] for f in fields], "itemsize": itemsize})
    records = np.zeros(n, dtype)
    rng = np.random.default_rng(seed)
    for name in dtype.names:
        kind = dtype[name]
        records[name] = (rng.uniform(-50, 50, n) if kind.kind == "f"
                         else rng.integers(0, 100, n)).astype(kind)
    return records


def expected_xyz(records):
    return np.stack([records[a].astype(np.float32) for a in "xyz"], axis=1)


# ------------------------------------------------------------------------------------- images

@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_image_round_trip(encoding):
    pixels = random_pixels(encoding)
    header = Header(frame_id="camera")
    msg = array_to_image(pixels, encoding, header)
    assert (msg.encoding, msg.height, msg.width, msg.is_bigendian) == (encoding, 5, 7, 0)
    assert msg.step == 7 * pixels.itemsize * ENCODINGS[encoding][1]
    assert len(msg.data) == msg.step * msg.height and msg.header.frame_id == "camera"
    back = image_to_array(msg)
    assert back.dtype == pixels.dtype and back.shape == pixels.shape
    np.testing.assert_array_equal(back, pixels)


@pytest.mark.parametrize("encoding", list(ENCODINGS))
@pytest.mark.parametrize("bigendian", [False, True])
def test_image_from_hand_made_message_with_padding_and_byte_order(encoding, bigendian):
    pixels = random_pixels(encoding, 4, 3, seed=2)
    msg = hand_image(pixels, encoding, pad=5, bigendian=bigendian)
    back = image_to_array(msg)
    assert back.dtype.isnative and back.flags.c_contiguous and back.flags.writeable
    np.testing.assert_array_equal(back, pixels)


def test_image_to_array_copies_the_buffer():
    msg = hand_image(random_pixels("mono8"), "mono8")
    before = bytes(msg.data)
    image_to_array(msg)[:] = 0
    assert bytes(msg.data) == before


@pytest.mark.parametrize("encoding, pixel", [("rgb8", [10, 20, 30]), ("bgr8", [30, 20, 10]),
                                             ("rgba8", [10, 20, 30, 255]),
                                             ("bgra8", [30, 20, 10, 255])])
def test_image_to_rgb_from_colour_encodings(encoding, pixel):
    msg = hand_image(np.tile(np.array(pixel, np.uint8), (2, 3, 1)), encoding, pad=3)
    rgb = image_to_rgb(msg)
    assert rgb.shape == (2, 3, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    assert (rgb == [10, 20, 30]).all()


def test_image_to_rgb_from_mono_and_rejects_depth():
    rgb = image_to_rgb(hand_image(np.array([[7, 200]], np.uint8), "mono8"))
    np.testing.assert_array_equal(rgb, [[[7, 7, 7], [200, 200, 200]]])
    with pytest.raises(MessageError, match="Image.encoding '32FC1'"):
        image_to_rgb(hand_image(np.zeros((2, 2), np.float32), "32FC1"))


def test_depth_16uc1_millimetres_to_metres_with_zero_as_nan():
    msg = hand_image(np.array([[0, 1000], [1500, 65535]], np.uint16), "16UC1", pad=2,
                     bigendian=True)
    metres = depth_image_to_metres(msg)
    assert metres.dtype == np.float32
    np.testing.assert_allclose(metres, [[np.nan, 1.0], [1.5, 65.535]], rtol=1e-6)


def test_depth_32fc1_is_metres_as_is_and_colour_is_rejected():
    depth = np.array([[np.nan, 2.5], [np.inf, 80.0]], np.float32)
    np.testing.assert_array_equal(depth_image_to_metres(array_to_image(depth, "32FC1")), depth)
    with pytest.raises(MessageError, match="Image.encoding 'rgb8'"):
        depth_image_to_metres(hand_image(np.zeros((2, 2, 3), np.uint8), "rgb8"))


def test_array_to_image_accepts_single_channel_axis_and_foreign_byte_order():
    depth = np.arange(6, dtype=">u2").reshape(2, 3, 1)
    msg = array_to_image(depth, "16UC1")
    assert bytes(msg.data)[:4] == b"\x00\x00\x01\x00"  # little-endian on the wire
    np.testing.assert_array_equal(image_to_array(msg), depth[..., 0])
    assert depth.dtype == np.dtype(">u2")  # input untouched


@pytest.mark.parametrize("array, encoding, match", [
    (np.zeros((2, 2), np.float64), "32FC1", "Image.encoding '32FC1'.*float64"),
    (np.zeros((2, 2), np.uint16), "mono8", "Image.encoding 'mono8'.*uint16"),
    (np.zeros((2, 2, 4), np.uint8), "rgb8", r"Image.encoding 'rgb8'.*\(2, 2, 4\)"),
    (np.zeros((0, 2), np.uint8), "mono8", r"Image.encoding 'mono8'.*\(0, 2\)"),
    (np.zeros((2, 2), np.uint8), "yuv422", "Image.encoding 'yuv422'.*supported: rgb8"),
])
def test_array_to_image_rejects_wrong_arrays(array, encoding, match):
    with pytest.raises(MessageError, match=match):
        array_to_image(array, encoding)


def _image(**changes):
    msg = hand_image(np.zeros((2, 3), np.uint16), "16UC1")  # step 6, 12 bytes
    for name, value in changes.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize("changes, match", [
    ({"encoding": "yuv422"}, "Image.encoding 'yuv422' is not supported"),
    ({"data": bytes(11)}, "Image.data has 11 bytes, expected .* 12 .*too short"),
    ({"data": bytes(14)}, "Image.data has 14 bytes, expected .* 12 .*too long"),
    ({"step": 5, "data": bytes(10)}, "Image.step 5 is smaller than .* 6"),
    ({"width": 0, "step": 0, "data": b""}, "Image.width x Image.height 0x2"),
    ({"height": 0, "data": b""}, "Image.width x Image.height 3x0"),
])
def test_malformed_images(changes, match):
    with pytest.raises(MessageError, match=match):
        image_to_array(_image(**changes))


# --------------------------------------------------------------------------------- point clouds

KITTI = [("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 12), 16]
VELODYNE = [("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 12),
            ("ring", "u2", 16), ("time", "f4", 18), 22]
VELODYNE_PADDED = [("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 16),
                   ("ring", "u2", 20), ("time", "f4", 24), 32]
OUSTER = [("x", "f4", 0), ("y", "f4", 4), ("z", "f4", 8), ("intensity", "f4", 16),
          ("t", "u4", 20), ("reflectivity", "u2", 24), ("ring", "u2", 26), ("ambient", "u2", 28),
          ("range", "u4", 32), 48]
FLOAT64 = [("intensity", "f4", 0), ("x", "f8", 8), ("y", "f8", 16), ("z", "f8", 24), 32]


@pytest.mark.parametrize("layout", [KITTI, VELODYNE, VELODYNE_PADDED, OUSTER, FLOAT64],
                         ids=["kitti", "velodyne22", "velodyne32", "ouster", "float64"])
@pytest.mark.parametrize("bigendian", [False, True])
def test_cloud_layouts(layout, bigendian):
    records = structured(layout, 40)
    xyz = pointcloud2_to_xyz(hand_cloud(records, bigendian=bigendian))
    assert xyz.dtype == np.float32 and xyz.shape == (40, 3) and xyz.flags.c_contiguous
    np.testing.assert_array_equal(xyz, expected_xyz(records))


def test_organised_ouster_cloud_with_row_padding_and_extra_fields():
    records = structured(OUSTER, 4 * 8)
    msg = hand_cloud(records, height=4, row_pad=24, bigendian=True)
    assert (msg.height, msg.width, msg.row_step) == (4, 8, 8 * 48 + 24)
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), expected_xyz(records))
    extra = pointcloud2_fields(msg, ["ring", "range", "intensity"])
    assert extra["ring"].dtype == np.uint16 and extra["ring"].shape == (32,)
    for name in extra:
        assert extra[name].dtype.isnative
        np.testing.assert_array_equal(extra[name], records[name])


def test_non_finite_points_are_dropped():
    records = structured(KITTI, 6)
    records["x"][1] = np.nan
    records["y"][3] = np.inf
    records["z"][4] = -np.inf
    xyz = pointcloud2_to_xyz(hand_cloud(records))
    np.testing.assert_array_equal(xyz, expected_xyz(records)[[0, 2, 5]])


def test_empty_clouds():
    assert pointcloud2_to_xyz(PointCloud2()).shape == (0, 3)
    empty = hand_cloud(structured(VELODYNE, 0))
    assert pointcloud2_to_xyz(empty).shape == (0, 3)
    assert pointcloud2_to_xyz(xyz_to_pointcloud2(np.zeros((0, 3)))).shape == (0, 3)


def test_xyz_round_trip_with_intensity():
    rng = np.random.default_rng(3)
    points = rng.uniform(-80, 80, (100, 3)).astype(np.float32)
    intensity = rng.uniform(0, 1, 100)
    msg = xyz_to_pointcloud2(points, Header(frame_id="lidar"), {"intensity": intensity})
    assert (msg.height, msg.width, msg.point_step, msg.row_step) == (1, 100, 16, 1600)
    assert [f.name for f in msg.fields] == ["x", "y", "z", "intensity"]
    assert msg.is_dense and not msg.is_bigendian and msg.header.frame_id == "lidar"
    np.testing.assert_array_equal(pointcloud2_to_xyz(msg), points)
    np.testing.assert_array_equal(pointcloud2_fields(msg, "intensity")["intensity"],
                                  intensity.astype(np.float32))
    points[0, 2] = np.nan
    assert not xyz_to_pointcloud2(points).is_dense


def test_two_million_points_convert():
    # Speed belongs in `dmd3c bench`; here only that a sweep this large converts correctly.
    points = np.random.default_rng(4).normal(0, 20, (2_000_000, 3)).astype(np.float32)
    msg = xyz_to_pointcloud2(points, fields={"intensity": points[:, 0]})
    xyz = pointcloud2_to_xyz(msg)
    np.testing.assert_array_equal(xyz, points)


def _cloud(**changes):
    msg = hand_cloud(structured(KITTI, 5))  # point_step 16, row_step 80
    for name, value in changes.items():
        setattr(msg, name, value)
    return msg


def _fields(*fields):
    return [PointField(name=n, offset=o, datatype=d, count=c) for n, o, d, c in fields]


@pytest.mark.parametrize("changes, match", [
    ({"fields": _fields(("x", 0, 7, 1), ("y", 4, 7, 1))}, "PointCloud2.fields has no 'z' field"),
    ({"fields": _fields(("x", 0, 3, 1), ("y", 4, 7, 1), ("z", 8, 7, 1))},
     r"PointCloud2.fields\['x'\].datatype 3 \(int16\)"),
    ({"fields": _fields(("x", 0, 7, 1), ("y", 4, 7, 1), ("z", 8, 7, 2))},
     r"PointCloud2.fields\['z'\].count 2"),
    ({"point_step": 8, "row_step": 40, "data": bytes(40)},
     r"PointCloud2.point_step 8 is smaller than field 'z' \(offset 8, 4 bytes\)"),
    ({"data": bytes(79)}, r"PointCloud2.data has 79 bytes, expected .* = 80"),
    ({"data": bytes(96)}, r"PointCloud2.data has 96 bytes, expected .* = 80"),
    ({"row_step": 64, "data": bytes(64)}, "PointCloud2.row_step 64 is smaller than .* 80"),
])
def test_malformed_clouds(changes, match):
    with pytest.raises(MessageError, match=match):
        pointcloud2_to_xyz(_cloud(**changes))


def test_empty_cloud_with_a_point_step_beyond_numpy():
    # Found by test_properties.py: numpy's ValueError "integer won't fit into a C int" escaped
    # pointcloud2_fields for this (wire-valid, empty) cloud.
    msg = PointCloud2(height=1, width=0, fields=_fields(("x", 0, 7, 1), ("y", 4, 7, 1),
                                                        ("z", 8, 7, 1)),
                      point_step=2**31, row_step=0, data=b"")
    assert pointcloud2_to_xyz(msg).shape == (0, 3)
    with pytest.raises(MessageError, match="PointCloud2.point_step 2147483648 is larger"):
        pointcloud2_fields(msg, ["x"])


def test_xyz_to_pointcloud2_rejects_bad_input():
    with pytest.raises(MessageError, match=r"\(4, 2\)"):
        xyz_to_pointcloud2(np.zeros((4, 2)))
    with pytest.raises(MessageError, match=r"PointCloud2.fields\['intensity'\]"):
        xyz_to_pointcloud2(np.zeros((4, 3)), fields={"intensity": np.zeros(3)})


# ------------------------------------------------------------------------------------- cameras

KITTI_P2 = [[721.5377, 0.0, 609.5593, 44.85728], [0.0, 721.5377, 172.854, 0.2163791],
            [0.0, 0.0, 1.0, 0.002745884]]


def test_camera_info_round_trip():
    camera = PinholeCamera(1242, 375, np.array(KITTI_P2)[:, :3], KITTI_P2,
                           R=[[1, 0, 0], [0, 0, -1], [0, 1, 0]], D=(0.1, -0.2, 0.0, 0.0, 0.01))
    msg = camera_to_camera_info(camera, Header(frame_id="cam2"))
    assert (msg.width, msg.height, msg.distortion_model) == (1242, 375, "plumb_bob")
    back = camera_info_to_camera(msg)
    for name in ("K", "P", "R"):
        np.testing.assert_array_equal(getattr(back, name), getattr(camera, name))
    assert back.D == camera.D and back.size == camera.size


def test_camera_info_defaults_p_from_k_and_r_to_identity():
    msg = CameraInfo(width=640, height=480, k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
    camera = camera_info_to_camera(msg)
    np.testing.assert_array_equal(camera.P, np.hstack([camera.K, np.zeros((3, 1))]))
    np.testing.assert_array_equal(camera.R, np.eye(3))
    assert not msg.p.any() and not msg.r.any()  # input untouched


def _info(**changes):
    msg = CameraInfo(width=640, height=480, k=[500.0, 0.0, 320.0, 0.0, 500.0, 240.0, 0.0, 0.0, 1.0])
    for name, value in changes.items():
        setattr(msg, name, value)
    return msg


@pytest.mark.parametrize("changes, match", [
    ({"k": np.zeros(9)}, "CameraInfo.k is all zero: uncalibrated camera: all-zero K"),
    ({"k": np.zeros(9), "p": np.array(KITTI_P2).ravel()}, "CameraInfo.k"),
    ({"width": 0}, "CameraInfo.width x CameraInfo.height 0x480"),
    ({"k": np.array([-500.0, 0, 320, 0, 500, 240, 0, 0, 1])}, "CameraInfo.k/p: unusable"),
    ({"binning_x": 2}, "CameraInfo.binning_x/binning_y 2/0"),
])
def test_malformed_camera_infos(changes, match):
    with pytest.raises(MessageError, match=match):
        camera_info_to_camera(_info(**changes))


def test_camera_info_roi_only_full_image():
    msg = _info()
    msg.roi.width, msg.roi.height = 640, 480
    assert camera_info_to_camera(msg).size == (640, 480)
    msg.roi.width, msg.roi.x_offset = 320, 10
    with pytest.raises(MessageError, match=r"CameraInfo.roi \(x_offset 10"):
        camera_info_to_camera(msg)
