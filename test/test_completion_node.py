"""The completion node through a real rclpy graph, in this process (the node's own process is
covered by test_node_process.py)."""
import time
from types import SimpleNamespace

import numpy as np
import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.ros.adapters import (array_to_image, camera_to_camera_info, depth_image_to_metres,
                                    image_to_array, xyz_to_pointcloud2)
from dmd3c_ros.ros.completion_node import CompletionNode, StartupError
from dmd3c_ros.runtime.base import Backend, Prediction
from conftest import wait_until

CAM = PinholeCamera.from_intrinsics(60.0, 60.0, 40.0, 30.0, 80, 60)
LIDAR_TO_CAMERA = [float(v) for v in (0, -1, 0, 0, 0, 0, -1, 0, 1, 0, 0, 0, 0, 0, 0, 1)]  # x fwd -> z fwd
WALL_M = 12.0


def wall_points(count=4000):
    rng = np.random.default_rng(0)
    return np.stack([np.full(count, WALL_M), rng.uniform(-9, 9, count),
                     rng.uniform(-7, 7, count)], axis=1).astype(np.float32)


class ConstantMono(Backend):
    """Runs with or without LiDAR; 5 m everywhere."""
    name = "constant"
    supports_mono = True

    def _infer(self, rgb, sparse):
        return Prediction(np.full(rgb.shape[:2], 5.0, np.float32))


class WithSigma(Backend):
    """5 m everywhere with a 0.5 m standard deviation when asked for one; records the asks."""
    name = "with_sigma"
    supports_mono = True
    spec = SimpleNamespace(uncertainty_output="sigma")

    def __init__(self):
        self.asked = []

    def _infer_many(self, rgbs, sparses, *, uncertainty=True):
        self.asked.append(uncertainty)
        return [Prediction(np.full(rgb.shape[:2], 5.0, np.float32),
                           np.full(rgb.shape[:2], 0.5, np.float32) if uncertainty else None)
                for rgb in rgbs]

    def _infer(self, rgb, sparse):  # not used: _infer_many answers
        raise AssertionError("unreachable")


class Slow(Backend):
    name = "slow"
    supports_mono = True

    def _infer(self, rgb, sparse):
        time.sleep(0.25)
        return Prediction(np.full(rgb.shape[:2], 5.0, np.float32))


class Harness(Node):
    """Publishes frames to the node and records what it publishes."""

    def __init__(self, context):
        super().__init__("harness", context=context)
        self.pub_image = self.create_publisher(Image, "image", qos_profile_sensor_data)
        self.pub_info = self.create_publisher(CameraInfo, "camera_info", qos_profile_sensor_data)
        self.pub_points = self.create_publisher(PointCloud2, "points", qos_profile_sensor_data)
        self.depth, self.info, self.diag, self.colorized, self.clouds = [], [], [], [], []
        self.create_subscription(Image, "depth", self.depth.append, 10)
        self.create_subscription(CameraInfo, "depth/camera_info", self.info.append, 10)
        self.create_subscription(Image, "depth/colorized", self.colorized.append, 10)
        self.create_subscription(PointCloud2, "depth/points", self.clouds.append, 10)
        self.create_subscription(DiagnosticArray, "/diagnostics", self.diag.append, 10)
        self.points = wall_points()
        self.sent = 0

    def send(self, camera=CAM, lidar=True, points=None):
        """One frame stamped now (the sweep 10 ms later); returns the image header stamp."""
        stamp = self.get_clock().now()
        self.sent += 1
        header = Image().header
        header.stamp, header.frame_id = stamp.to_msg(), "camera_optical"
        rgb = np.full((60, 80, 3), 100, np.uint8)
        self.pub_image.publish(array_to_image(rgb, "rgb8", header))
        self.pub_info.publish(camera_to_camera_info(camera, header) if camera is not None
                              else CameraInfo(header=header, width=80, height=60))
        if lidar:
            lidar_header = Image().header
            lidar_header.stamp = (stamp + rclpy.duration.Duration(seconds=0.01)).to_msg()
            lidar_header.frame_id = "lidar"
            cloud = self.points if points is None else points
            self.pub_points.publish(xyz_to_pointcloud2(cloud, lidar_header))
        return header.stamp


@pytest.fixture
def graph(spinning_graph):
    """``start(inject=None, **parameters)`` -> (completion node, harness), warmed up."""
    context = spinning_graph.context

    def start(inject=None, **parameters):
        parameters.setdefault("lidar_to_camera", LIDAR_TO_CAMERA)
        parameters.setdefault("backend", "classical")
        overrides = [Parameter(k, value=v) for k, v in parameters.items()]
        node = CompletionNode(backend=inject, context=context, parameter_overrides=overrides)
        harness = Harness(context)
        spinning_graph.add(node, harness)
        # Every input matched (best-effort messages sent before a match are simply lost).
        wait_until(lambda: all(p.get_subscription_count() >= 1 for p in
                               (harness.pub_image, harness.pub_info, harness.pub_points))
                   and harness.count_publishers("depth") >= 1, 10.0)
        warm_up(node, harness)
        return node, harness

    yield start, context


def warm_up(node, harness, timeout=20.0):
    """Send frames until one is answered with LiDAR: on a fresh participant the first
    best-effort messages of a topic can arrive late or not at all. Then start from zero."""
    end = time.monotonic() + timeout
    while not (harness.depth and node.status_values()["mode"] == "completion"):
        assert time.monotonic() < end, "the node never answered a warm-up frame"
        harness.send()
        time.sleep(0.1)
    def settled():  # every warm-up frame published or dropped, none in the worker
        v = node.status_values()
        return v["frames_published"] + v["dropped_frames"] >= v["frames_in"]
    assert wait_until(settled, timeout)
    time.sleep(0.3)  # the last answers in transit
    harness.depth.clear()
    harness.info.clear()
    harness.colorized.clear()
    harness.clouds.clear()
    harness.diag.clear()
    harness.sent = 0
    node.faults.clear()
    harness.baseline = (node.slot.put_count, node.slot.dropped)


def last_status(harness):
    return harness.diag[-1].status[0] if harness.diag else None


def values(status):
    return {kv.key: kv.value for kv in status.values}


def test_depth_for_synchronized_frames(graph):
    start, _ = graph
    node, harness = start()
    stamps = []
    for _ in range(3):
        stamps.append(harness.send())
        time.sleep(0.15)
    assert wait_until(lambda: len(harness.depth) == 3 and len(harness.info) == 3)
    for stamp, depth, info in zip(stamps, harness.depth, harness.info):
        assert depth.header.stamp == stamp and depth.header.frame_id == "camera_optical"
        assert info.header == depth.header
        assert (depth.encoding, depth.width, depth.height) == ("32FC1", 80, 60)
        metres = depth_image_to_metres(depth)
        np.testing.assert_allclose(metres[np.isfinite(metres)], WALL_M, atol=1e-3)
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), CAM.K)
    assert wait_until(lambda: harness.diag and values(last_status(harness))["mode"] == "completion")
    status = last_status(harness)
    assert status.level == b"\x00" and values(status)["backend"] == "classical"
    assert float(values(status)["latency_p50_ms"]) > 0


def test_bad_camera_info_is_reported_and_the_next_good_frame_answered(graph):
    start, _ = graph
    node, harness = start()
    harness.send(camera=None)  # all-zero K: uncalibrated
    assert wait_until(lambda: any(f.kind == "bad_input" for f in node.faults.active()), 5.0)
    assert "CameraInfo.k" in node.faults.active()[0].message
    assert wait_until(lambda: harness.diag and last_status(harness).level == b"\x02", 5.0)
    assert not harness.depth
    good = harness.send()
    assert wait_until(lambda: harness.depth and harness.depth[-1].header.stamp == good)


def test_a_slow_backend_drops_old_frames_instead_of_queueing(graph):
    start, _ = graph
    node, harness = start(inject=Slow())
    for _ in range(12):
        last = harness.send()
        time.sleep(0.04)
    assert wait_until(lambda: harness.depth and harness.depth[-1].header.stamp == last, 10.0)
    time.sleep(0.5)
    put, dropped = (node.slot.put_count - harness.baseline[0],
                    node.slot.dropped - harness.baseline[1])
    assert dropped >= 1
    assert len(harness.depth) + dropped <= put
    assert len(harness.depth) < harness.sent  # the newest frame won; old ones never queued


def stream(harness, seconds, lidar=True):
    """Frames at 10 Hz for ``seconds``; returns the last image stamp."""
    end, last = time.monotonic() + seconds, None
    while time.monotonic() < end:
        last = harness.send(lidar=lidar)
        time.sleep(0.1)
    return last


def test_mono_fallback_and_recovery(graph):
    start, _ = graph
    node, harness = start(inject=ConstantMono(), lidar_timeout=0.3)
    last = stream(harness, 0.5)
    assert wait_until(lambda: harness.depth and harness.depth[-1].header.stamp == last)
    assert node.status_values()["mode"] == "completion"
    last = stream(harness, 1.0, lidar=False)  # LiDAR stops
    assert wait_until(lambda: harness.depth[-1].header.stamp == last)
    assert node.status_values()["mode"] == "mono"
    last = stream(harness, 0.5)  # LiDAR returns
    assert wait_until(lambda: harness.depth[-1].header.stamp == last)
    assert node.status_values()["mode"] == "completion"
    stamps = [d.header.stamp for d in harness.depth]
    assert len(stamps) == len({(s.sec, s.nanosec) for s in stamps})  # one depth per image


def test_classical_stops_without_lidar_and_says_so(graph):
    start, _ = graph
    node, harness = start(lidar_timeout=0.3)
    for _ in range(8):
        harness.send(lidar=False)
        time.sleep(0.1)
    assert wait_until(lambda: any(f.kind == "no_lidar" for f in node.faults.active()), 3.0)
    assert not harness.depth
    assert wait_until(lambda: harness.diag and "no LiDAR" in last_status(harness).message, 3.0)
    assert last_status(harness).level == b"\x01"
    back = harness.send()
    assert wait_until(lambda: harness.depth and harness.depth[-1].header.stamp == back)


def test_empty_sweep_with_classical_publishes_nothing_then_recovers(graph):
    start, _ = graph
    node, harness = start()
    harness.send(points=np.zeros((0, 3), np.float32))
    assert wait_until(lambda: any(f.kind == "no_lidar" for f in node.faults.active()), 3.0)
    assert not harness.depth
    good = harness.send()
    assert wait_until(lambda: harness.depth and harness.depth[-1].header.stamp == good)


def test_optional_outputs(graph):
    start, _ = graph
    node, harness = start(publish_points=True, publish_colorized=True)
    harness.send()
    assert wait_until(lambda: harness.colorized and harness.clouds)
    color = harness.colorized[0]
    assert color.encoding == "rgb8" and image_to_array(color).shape == (60, 80, 3)
    cloud = harness.clouds[0]
    assert cloud.header == harness.depth[0].header and cloud.width > 1000


def test_uncertainty_is_computed_only_for_a_subscriber(graph):
    start, _ = graph
    backend = WithSigma()
    node, harness = start(inject=backend)
    backend.asked.clear()
    harness.send()
    assert wait_until(lambda: harness.depth)
    assert backend.asked == [False]        # nobody listens to depth/uncertainty yet
    sigmas = []
    harness.create_subscription(Image, "depth/uncertainty", sigmas.append, 10)
    assert wait_until(lambda: node.outputs.sigma.get_subscription_count() >= 1)
    harness.send()
    assert wait_until(lambda: sigmas)
    assert backend.asked[-1] is True
    sigma = image_to_array(sigmas[0])
    assert sigmas[0].encoding == "32FC1" and np.allclose(sigma, 0.5)
    assert sigmas[0].header == harness.depth[-1].header


@pytest.mark.parametrize("parameters, message", [
    ({"backend": "gpu"}, "backend"),
    ({"max_depth": -3.0}, "max_depth"),
    ({"lidar_to_camera": [1.0, 2.0, 3.0]}, "lidar_to_camera"),
    ({"backend": "onnxruntime", "model": "/nonexistent/my_student.yaml"}, "my_student.yaml"),
])
def test_startup_errors_name_the_problem(graph, parameters, message):
    start, _ = graph
    with pytest.raises(StartupError, match=message):
        start(**parameters)


def test_tensorrt_engine_builds_are_logged_by_the_node(graph, monkeypatch):
    # No GPU here: a stand-in for the TensorRT backend records what the node hands it, and
    # "builds" through the progress callback the node gives it (its logger).
    from dmd3c_ros.runtime import factory
    handed = {}

    def fake_tensorrt(spec, precision, engine_cache_dir, **options):
        handed.update(options, precision=precision)
        options["progress"]("building a fp16 TensorRT engine (stand-in)")
        return ConstantMono()

    monkeypatch.setattr(factory, "tensorrt_available", lambda: True)
    monkeypatch.setattr(factory, "_make_tensorrt", fake_tensorrt)
    start, _ = graph
    node, harness = start(backend="tensorrt", precision="fp16")
    assert handed["precision"] == "fp16" and callable(handed["progress"])
    assert handed["progress"].__self__.name == node.get_logger().name
    harness.send()
    assert wait_until(lambda: harness.depth)


def test_empty_extrinsic_needs_tf(graph):
    pytest.importorskip("rclpy")
    try:
        import tf2_ros  # noqa: F401
        pytest.skip("tf2_ros is installed here: the extrinsic would come from TF")
    except ImportError:
        pass
    start, _ = graph
    with pytest.raises(StartupError, match="tf2_ros"):
        start(lidar_to_camera=[])
