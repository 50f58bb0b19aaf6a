"""The frame feeder: KITTI frames -> messages (round trips through the adapters), the stream
driver against a stand-in echo node in this process, and the node-process plumbing."""
import json
import sys
import time

import numpy as np
import pytest
import rclpy
from rclpy.node import Node
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.ros.adapters import (array_to_image, camera_info_to_camera, image_to_rgb,
                                    pointcloud2_fields, pointcloud2_to_xyz)
from dmd3c_ros.ros.feeder import KittiFrame, StreamDriver, frame_messages, load_kitti_frame
from dmd3c_ros.ros.graph import (NodeProcess, NodeProcessError, free_domain_id,
                                 lidar_to_camera_parameter, ros_args, ros_process_env)


def synthetic_frame(depth_m=10.0, with_gt=True):
    """A 64x48 frame: LiDAR points on a wall ``depth_m`` ahead (LiDAR frame = camera frame)."""
    rng = np.random.default_rng(0)
    camera = PinholeCamera.from_intrinsics(50.0, 50.0, 31.5, 23.5, 64, 48)
    xy = rng.uniform(-4.0, 4.0, (500, 2))
    points = np.column_stack([xy, np.full(500, depth_m), rng.uniform(0, 1, 500)]).astype(np.float32)
    rgb = rng.integers(0, 256, (48, 64, 3), dtype=np.uint8)
    gt = np.full((48, 64), depth_m, np.float32) if with_gt else None
    return KittiFrame(rgb, points, camera, np.eye(4), gt, "synthetic")


# ------------------------------------------------------------------------------- messages

@pytest.mark.parametrize("encoding", ["rgb8", "bgr8", "rgba8", "bgra8"])
def test_frame_messages_round_trip(encoding):
    frame = synthetic_frame()
    image, info, cloud = frame_messages(frame, 12.25, lidar_offset_s=-0.02, encoding=encoding)
    assert image.encoding == encoding
    np.testing.assert_array_equal(image_to_rgb(image), frame.rgb)
    np.testing.assert_array_equal(pointcloud2_to_xyz(cloud), frame.points[:, :3])
    np.testing.assert_array_equal(pointcloud2_fields(cloud, "intensity")["intensity"],
                                  frame.points[:, 3])
    camera = camera_info_to_camera(info)
    np.testing.assert_array_equal(camera.P, frame.camera.P)
    np.testing.assert_array_equal(camera.K, frame.camera.K)
    assert camera.size == frame.camera.size
    assert image.header == info.header
    assert (image.header.stamp.sec, image.header.stamp.nanosec) == (12, 250_000_000)
    assert (cloud.header.stamp.sec, cloud.header.stamp.nanosec) == (12, 230_000_000)
    assert (image.header.frame_id, cloud.header.frame_id) == ("camera_2_optical", "velodyne")


def test_frame_messages_mono_and_bad_encoding():
    frame = synthetic_frame()
    image, _, _ = frame_messages(frame, 1.0, encoding="mono8")
    assert (image.height, image.width, image.step) == (48, 64, 64)
    with pytest.raises(ValueError, match="32FC1"):
        frame_messages(frame, 1.0, encoding="32FC1")


def test_kitti_frame_and_messages(kitti_dc):
    frame = load_kitti_frame(kitti_dc)
    assert frame.rgb.shape == (375, 1242, 3) and frame.camera.size == (1242, 375)
    assert frame.points.dtype == np.float32 and frame.points.shape[1] == 4
    assert frame.ground_truth.shape == (375, 1242)
    image, info, cloud = frame_messages(frame, 100.0)
    np.testing.assert_array_equal(image_to_rgb(image), frame.rgb)
    xyz = pointcloud2_to_xyz(cloud)
    np.testing.assert_array_equal(xyz, frame.points[:, :3])
    # The cloud and CameraInfo from the messages give the same sparse depth as the files.
    sparse = project_to_depth(xyz, camera_info_to_camera(info), frame.lidar_to_camera)
    expected = project_to_depth(frame.points, frame.camera, frame.lidar_to_camera)
    np.testing.assert_array_equal(sparse, expected)
    assert np.count_nonzero(sparse) > 18000
    assert len(lidar_to_camera_parameter(frame.lidar_to_camera)) == 16


def test_ros_args_types():
    args = ros_args({"backend": "classical", "sync_slop": 0.05, "publish_colorized": True,
                     "queue_size": 2, "model": None, "lidar_to_camera": [1.0, 0.0, 1e-05]})
    assert args == ["--ros-args", "-p", "backend:=classical", "-p", "sync_slop:=0.05",
                    "-p", "publish_colorized:=true", "-p", "queue_size:=2",
                    "-p", "lidar_to_camera:=[1.0, 0.0, 1e-05]"]


def test_node_processes_run_this_process_package(tmp_path):
    """A node started by a tool runs the dmd3c_ros that tool imported, wherever it is run from
    and whatever else is on PYTHONPATH or installed (not the environment's console script)."""
    import os
    import subprocess

    import dmd3c_ros
    from dmd3c_ros.ros.graph import node_command, package_root, ros_process_env
    command = node_command("surround_node")
    assert command == [sys.executable, "-P", "-m", "dmd3c_ros.ros.surround_node"]
    elsewhere = str(tmp_path / "other_checkout")
    env = ros_process_env(150, base={"PYTHONPATH": os.pathsep.join([elsewhere, package_root()])})
    assert env["PYTHONPATH"].split(os.pathsep) == [package_root(), elsewhere]
    (tmp_path / "other_checkout" / "dmd3c_ros").mkdir(parents=True)   # a decoy, also the cwd
    (tmp_path / "other_checkout" / "dmd3c_ros" / "__init__.py").write_text("")
    child = subprocess.run(command[:2] + ["-c", "import dmd3c_ros; print(dmd3c_ros.__file__)"],
                           env=env, cwd=elsewhere, capture_output=True, text=True, check=True)
    assert child.stdout.strip() == dmd3c_ros.__file__


# ------------------------------------------------------------------------ driver vs echo

class EchoNode(Node):
    """Stand-in for the completion node: a constant 32FC1 depth per image, same header."""

    def __init__(self, depth_m, context, answer_every=1):
        super().__init__("echo_completion", context=context)
        self.depth_m, self.answer_every, self.images, self.infos = depth_m, answer_every, 0, 0
        self.pub = self.create_publisher(Image, "depth", 10)
        self.create_subscription(Image, "image", self.on_image, qos_profile_sensor_data)
        self.create_subscription(CameraInfo, "camera_info", self.on_info, qos_profile_sensor_data)
        self.create_subscription(PointCloud2, "points", lambda msg: None,
                                 qos_profile_sensor_data)

    def on_info(self, msg):
        self.infos += 1

    def on_image(self, msg):
        self.images += 1
        if self.images % self.answer_every == 0:
            depth = np.full((msg.height, msg.width), self.depth_m, np.float32)
            self.pub.publish(array_to_image(depth, "32FC1", msg.header))


@pytest.fixture
def context():
    context = rclpy.Context()
    rclpy.init(context=context, domain_id=free_domain_id())
    try:
        yield context
    finally:
        context.try_shutdown()


def drive(context, frame, answer_every=1, **driver_args):
    driver = StreamDriver(frame, context=context, rate_hz=20.0, **driver_args)
    echo = EchoNode(10.0, context, answer_every)
    driver.executor.add_node(echo)
    try:
        waited = driver.wait_until_ready(20.0)
        report = driver.run(frames=12, drain_s=1.0)
        return driver, echo, report, waited
    finally:
        driver.executor.remove_node(echo)
        echo.destroy_node()
        driver.close()


def test_driver_pairs_answers_with_images(context):
    driver, echo, report, waited = drive(context, synthetic_frame(), lidar_offset_s=0.01)
    assert 0 <= waited < 20.0
    assert report.frames_sent == 12 and report.frames_answered == 12
    assert report.answered_fraction == 1.0
    assert report.headers_equal and report.header_mismatches == 0
    assert report.unmatched_depths == 0  # warm-up answers are not counted
    assert report.encodings == {"32FC1": 12} and report.sizes == {"64x48": 12}
    assert 0 < report.latency_p50_ms <= report.latency_p95_ms <= report.latency_max_ms
    assert [r.index for r in report.frames] == list(range(12))
    assert all(r.latency_ms > 0 and r.header_equal for r in report.frames)
    stamps = [r.stamp_ns for r in report.frames]
    assert stamps == sorted(set(stamps))
    assert report.metrics["rmse_mm"] == pytest.approx(0.0, abs=1e-3)  # 10 m wall, 10 m answer
    assert report.metrics["frames"] == 4  # first 1 + last 3 kept
    assert [index for index, _ in driver.kept_depths()] == [0, 9, 10, 11]
    assert echo.infos >= 12
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    assert data["frames_answered"] == 12 and len(data["frames"]) == 12


def test_driver_counts_unanswered_frames(context):
    _, _, report, _ = drive(context, synthetic_frame(with_gt=False), answer_every=2,
                            encoding="bgr8")
    assert report.frames_sent == 12 and 5 <= report.frames_answered <= 7
    assert report.answered_fraction == pytest.approx(report.frames_answered / 12)
    assert report.metrics is None
    assert sum(r.latency_ms is None for r in report.frames) == 12 - report.frames_answered
    json.dumps(report.to_dict(), allow_nan=False)


def test_wait_until_ready_times_out_without_a_node(context):
    driver = StreamDriver(synthetic_frame(), context=context)
    try:
        with pytest.raises(TimeoutError, match="'depth' publisher"):
            driver.wait_until_ready(0.5)
    finally:
        driver.close()


# ------------------------------------------------------------------------- node process

def test_node_process_reports_a_dead_node(tmp_path):
    code = "import sys; print('model file missing', file=sys.stderr); sys.exit(3)"
    node = NodeProcess({"backend": "classical"}, ros_process_env(free_domain_id()),
                       command=[sys.executable, "-c", code], log_path=tmp_path / "node.log")
    with node:
        node.process.wait(10)
        with pytest.raises(NodeProcessError, match="code 3") as error:
            node.check()
    assert "model file missing" in str(error.value)
    assert "backend:=classical" in str(error.value)


def test_node_process_kills_a_node_that_ignores_sigint(tmp_path):
    code = ("import signal, sys, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
            "print('up', flush=True); time.sleep(60)")
    node = NodeProcess({}, ros_process_env(free_domain_id()),
                       command=[sys.executable, "-c", code], log_path=tmp_path / "node.log")
    node.start()
    try:
        deadline = time.monotonic() + 10.0
        while "up" not in node.log_tail() and time.monotonic() < deadline:
            time.sleep(0.05)
        node.check()  # still running
    finally:
        assert node.stop(timeout_s=0.5) == -9
