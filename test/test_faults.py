"""The fault catalogue of README.md ("Reliability"), one test per entry, through the completion
node in a real rclpy graph: what each bad input or sensor fault gets (the fault and its message,
the /diagnostics level) and that a good frame after it is answered. Entries covered elsewhere are
named in the README next to their tests (LiDAR stopping and returning, test_completion_node.py;
the surround node's cameras, test_surround_node.py)."""
import shutil
import time

import numpy as np
import pytest
import rclpy
import yaml
from rclpy.parameter import Parameter
from sensor_msgs.msg import CameraInfo, Image, PointCloud2, PointField

from dmd3c_ros.ros.adapters import array_to_image, camera_to_camera_info, xyz_to_pointcloud2
from dmd3c_ros.ros.completion_node import CompletionNode, StartupError
from dmd3c_ros.ros.feeder import time_msg
from dmd3c_ros.paths import default_model_spec
from test_completion_node import (CAM, LIDAR_TO_CAMERA, WALL_M, graph, last_status,  # noqa: F401
                                  wait_until, wall_points)
from dmd3c_ros.ros.adapters import depth_image_to_metres
from dmd3c_ros.ros.graph import free_domain_id

OK, WARN, ERROR = b"\x00", b"\x01", b"\x02"
NS = 10**9


def send(harness, *, stamp_ns=None, image=None, info=None, cloud=None, lidar=True,
         lidar_offset_ns=10_000_000):
    """One frame with any of its three messages replaced; returns the image stamp (ns)."""
    stamp_ns = harness.get_clock().now().nanoseconds if stamp_ns is None else stamp_ns
    stamp = time_msg(stamp_ns)
    image = image or array_to_image(np.full((60, 80, 3), 100, np.uint8), "rgb8")
    image.header.stamp, image.header.frame_id = stamp, "camera_optical"
    info = info or camera_to_camera_info(CAM)
    info.header = image.header
    harness.pub_image.publish(image)
    harness.pub_info.publish(info)
    if lidar:
        cloud = cloud if cloud is not None else xyz_to_pointcloud2(wall_points())
        cloud.header.stamp, cloud.header.frame_id = time_msg(stamp_ns + lidar_offset_ns), "lidar"
        harness.pub_points.publish(cloud)
    return stamp_ns


def answered(harness, stamp_ns, timeout=5.0):
    return wait_until(lambda: any(d.header.stamp == time_msg(stamp_ns) for d in harness.depth),
                      timeout)


def fault(node, kind, timeout=5.0):
    """The active fault of ``kind`` once reported (None after ``timeout``)."""
    found = []
    wait_until(lambda: found.append(next((f for f in node.faults.active() if f.kind == kind),
                                         None)) or found[-1] is not None, timeout)
    return found[-1]


def diagnosed(harness, level, text, timeout=4.0):
    """/diagnostics shows ``level`` with ``text`` in its message within ``timeout``."""
    return wait_until(lambda: harness.diag and last_status(harness).level == level
                      and text in last_status(harness).message, timeout)


def expect_fault_then_recovery(node, harness, kind, level, text, **bad):
    send(harness, **bad)
    reported = fault(node, kind)
    assert reported is not None, f"no {kind} fault; active: {node.faults.active()}"
    assert text in reported.message
    assert diagnosed(harness, level, text), (last_status(harness), reported)
    good = send(harness)
    assert answered(harness, good), "the good frame after the bad one was not answered"
    return reported


def cloud_with(fields, point_step, data, width, **kwargs):
    msg = PointCloud2(height=1, width=width, fields=fields, point_step=point_step,
                      row_step=point_step * width, is_dense=False, **kwargs)
    msg.data = bytes(data)
    return msg


XYZ = [PointField(name=n, offset=4 * i, datatype=PointField.FLOAT32, count=1)
       for i, n in enumerate("xyz")]


# ---------------------------------------------------------------------- PointCloud2

def test_cloud_without_z(graph):
    start, _ = graph
    node, harness = start()
    points = wall_points(100)
    cloud = cloud_with(XYZ[:2], 12, points.tobytes(), 100)
    expect_fault_then_recovery(node, harness, "bad_input", ERROR,
                               "PointCloud2.fields has no 'z' field", cloud=cloud)


def test_cloud_point_step_smaller_than_its_fields(graph):
    start, _ = graph
    node, harness = start()
    cloud = cloud_with(XYZ, 8, np.zeros(800, np.uint8), 100)
    expect_fault_then_recovery(node, harness, "bad_input", ERROR,
                               "PointCloud2.point_step 8 is smaller than field 'z'", cloud=cloud)


def test_cloud_data_length_not_width_height_point_step(graph):
    start, _ = graph
    node, harness = start()
    cloud = cloud_with(XYZ, 12, wall_points(100).tobytes()[:-12], 100)
    expect_fault_then_recovery(node, harness, "bad_input", ERROR,
                               "PointCloud2.data has 1188 bytes, expected", cloud=cloud)


def test_big_endian_cloud_is_decoded(graph):
    start, _ = graph
    node, harness = start()
    points = wall_points()
    cloud = cloud_with(XYZ, 12, points.astype(">f4").tobytes(), len(points), is_bigendian=True)
    stamp = send(harness, cloud=cloud)
    assert answered(harness, stamp)
    depth = depth_image_to_metres(harness.depth[-1])
    np.testing.assert_allclose(depth[np.isfinite(depth)], WALL_M, atol=1e-3)
    assert not node.faults.active()


def test_nan_and_inf_points_are_dropped(graph):
    start, _ = graph
    node, harness = start()
    points = wall_points()
    points[::2, 0] = np.nan
    points[1::4, 2] = np.inf
    stamp = send(harness, cloud=xyz_to_pointcloud2(points))
    assert answered(harness, stamp)
    depth = depth_image_to_metres(harness.depth[-1])
    np.testing.assert_allclose(depth[np.isfinite(depth)], WALL_M, atol=1e-3)
    assert not node.faults.active()


def test_empty_sweep(graph):
    start, _ = graph
    node, harness = start()  # classical: needs LiDAR
    expect_fault_then_recovery(node, harness, "no_lidar", WARN, "no LiDAR return lands",
                               cloud=xyz_to_pointcloud2(np.zeros((0, 3), np.float32)))


def test_two_million_point_sweep_is_answered(graph):
    start, _ = graph
    node, harness = start()
    rng = np.random.default_rng(1)
    points = np.concatenate([wall_points(),
                             rng.uniform(-60, 60, (2_000_000 - 4000, 3)).astype(np.float32)])
    stamp = send(harness, cloud=xyz_to_pointcloud2(points))
    assert answered(harness, stamp, timeout=20.0)
    assert not [f for f in node.faults.active() if f.level >= 2]
    good = send(harness)
    assert answered(harness, good)


# ---------------------------------------------------------------------------- Image

def test_image_data_shorter_than_step_times_height(graph):
    start, _ = graph
    node, harness = start()
    image = array_to_image(np.full((60, 80, 3), 100, np.uint8), "rgb8")
    image.data = bytes(image.data)[:-240]
    expect_fault_then_recovery(node, harness, "bad_input", ERROR, "Image.data has 14160 bytes",
                               image=image)


def test_image_step_smaller_than_its_rows(graph):
    start, _ = graph
    node, harness = start()
    image = array_to_image(np.full((60, 80, 3), 100, np.uint8), "rgb8")
    image.step = 200
    expect_fault_then_recovery(node, harness, "bad_input", ERROR, "Image.step 200 is smaller",
                               image=image)


def test_unsupported_image_encoding(graph):
    start, _ = graph
    node, harness = start()
    image = array_to_image(np.full((60, 80, 3), 100, np.uint8), "rgb8")
    image.encoding = "yuv422"
    expect_fault_then_recovery(node, harness, "bad_input", ERROR, "yuv422", image=image)


# ----------------------------------------------------------------------- CameraInfo

def test_camera_info_with_all_zero_k(graph):
    start, _ = graph
    node, harness = start()
    expect_fault_then_recovery(node, harness, "bad_input", ERROR, "all-zero K",
                               info=CameraInfo(width=80, height=60))


def test_camera_info_of_another_size_than_the_image(graph):
    start, _ = graph
    node, harness = start()
    expect_fault_then_recovery(node, harness, "bad_frame", ERROR,
                               "image is 80x60 but its CameraInfo is 160x120",
                               info=camera_to_camera_info(CAM.resized(160, 120)))


# --------------------------------------------------------------------------- stamps

def test_stamps_out_of_order(graph):
    start, _ = graph
    node, harness = start()
    now = harness.get_clock().now().nanoseconds
    first = send(harness, stamp_ns=now)
    assert answered(harness, first)
    expect_fault_then_recovery(node, harness, "out_of_order", WARN,
                               "s before the last one published: skipped",
                               stamp_ns=now - NS // 5)
    assert not any(d.header.stamp == time_msg(now - NS // 5) for d in harness.depth)


def test_stamps_jumping_back_like_a_bag_loop(graph):
    start, _ = graph
    node, harness = start()
    now = harness.get_clock().now().nanoseconds
    assert answered(harness, send(harness, stamp_ns=now))
    looped = now - 30 * NS
    stamp = send(harness, stamp_ns=looped)
    assert answered(harness, stamp)  # published: the new stamps rule
    reported = fault(node, "clock_jump")
    assert reported is not None and "jumped back by 30.0 s" in reported.message
    assert diagnosed(harness, WARN, "jumped back")
    assert answered(harness, send(harness, stamp_ns=looped + NS // 10))


def test_image_and_points_stamps_far_apart(graph):
    start, _ = graph
    node, harness = start()
    for _ in range(30):  # the LiDAR's clock 5 s ahead: nothing pairs
        send(harness, lidar_offset_ns=5 * NS)
        time.sleep(0.1)
    reported = fault(node, "unpaired")
    assert reported is not None and "5.000 s apart, more than sync_slop" in reported.message
    assert diagnosed(harness, ERROR, "are the sensor clocks synchronised?")
    assert not harness.depth
    assert answered(harness, send(harness))


# ---------------------------------------------------------------------------- sensors

def test_camera_stopping_and_returning(graph):
    start, _ = graph
    node, harness = start(camera_timeout=0.5)
    assert answered(harness, send(harness))
    time.sleep(1.5)  # the camera stops (the LiDAR would go on; nothing to publish either way)
    reported = fault(node, "no_image")
    assert reported is not None and "no image for" in reported.message
    assert diagnosed(harness, WARN, "camera stopped?")
    assert answered(harness, send(harness))


def test_model_whose_sha256_does_not_match_its_spec(graph, tmp_path):
    spec_path = default_model_spec()
    if spec_path is None:
        pytest.skip("no shipped student (models/student.yaml)")
    spec = yaml.safe_load(spec_path.read_text())
    shutil.copy(spec_path.parent / spec["onnx"], tmp_path / "student.onnx")
    spec["sha256"] = "0" * 64
    spec.pop("torch", None)
    (tmp_path / "student.yaml").write_text(yaml.safe_dump(spec))
    start, _ = graph
    with pytest.raises(StartupError, match="sha256"):
        start(backend="onnxruntime", model=str(tmp_path / "student.yaml"))
