"""The surround node through a real rclpy graph, in this process: the real nuScenes keyframe in
../shared/data (six cameras, LIDAR_TOP, calibration.json as parameters) and small synthetic rigs
for the failure cases."""
import time
from pathlib import Path

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from rclpy.node import Node
from rclpy.parameter import Parameter
from rclpy.qos import qos_profile_sensor_data
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from std_msgs.msg import Header

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.nuscenes_sample import load_nuscenes_sample
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.ros.adapters import (array_to_image, camera_to_camera_info, depth_image_to_metres,
                                    xyz_to_pointcloud2)
from dmd3c_ros.ros.feeder import time_msg
from dmd3c_ros.ros.node_common import StartupError
from dmd3c_ros.ros.surround_node import SurroundNode
from dmd3c_ros.runtime.base import Backend, Prediction
from conftest import wait_until

NS = 10**9


class Rig:
    """Cameras (name -> (rgb, PinholeCamera, lidar_to_camera, stamp offset ns)) and a sweep."""

    def __init__(self, cameras, points):
        self.cameras, self.points = cameras, points

    def parameters(self, **extra):
        params = {"cameras": list(self.cameras)}
        for name, (_, _, extrinsic, _) in self.cameras.items():
            params[f"{name}.lidar_to_camera"] = [float(v) for v in extrinsic.reshape(-1)]
        params.update(extra)
        return params


def nuscenes_rig(folder: Path) -> Rig:
    sample = load_nuscenes_sample(folder)
    cameras = {c.name: (c.rgb, c.camera, c.lidar_to_camera,
                        round((c.stamp - sample.lidar_stamp) * NS))  # s to ns, after the sweep
               for c in sample.cameras}
    return Rig(cameras, np.ascontiguousarray(sample.points[:, :3]))


def ring_rig(names=("front", "left", "right")) -> Rig:
    """Small cameras looking forward, left and right at walls 12 m away."""
    rotations = {"front": 0.0, "left": 90.0, "right": -90.0, "back": 180.0}
    camera = PinholeCamera.from_intrinsics(40.0, 40.0, 32.0, 24.0, 64, 48)
    cameras = {}
    for name in names:
        yaw = np.radians(rotations[name])
        # optical axes (x right, y down, z forward) of a level camera looking along yaw, in the
        # LiDAR frame (x forward, y left, z up); the LiDAR sits at the cameras' centre.
        forward = np.array([np.cos(yaw), np.sin(yaw), 0.0])
        right = np.array([np.sin(yaw), -np.cos(yaw), 0.0])
        down = np.array([0.0, 0.0, -1.0])
        extrinsic = np.eye(4)
        extrinsic[:3, :3] = np.stack([right, down, forward])  # rows: LiDAR -> optical
        cameras[name] = (np.full((48, 64, 3), 90, np.uint8), camera, extrinsic, -5_000_000)
    rng = np.random.default_rng(0)
    walls = []
    for name in names:
        yaw = np.radians(rotations[name])
        along = rng.uniform(-9, 9, 3000)
        walls.append(np.stack([12.0 * np.cos(yaw) - along * np.sin(yaw),
                               12.0 * np.sin(yaw) + along * np.cos(yaw),
                               rng.uniform(-6, 6, 3000)], axis=1))
    return Rig(cameras, np.concatenate(walls).astype(np.float32))


class ConstantMono(Backend):
    """5 m everywhere, with or without LiDAR; records the batch sizes it was given."""
    name = "constant"
    supports_mono = True

    def __init__(self):
        self.batches = []
        self.mono = []

    def _infer_many(self, rgbs, sparses, *, uncertainty=True):
        self.batches.append(len(rgbs))
        self.mono.append([not np.any(s > 0) for s in sparses])
        return [Prediction(np.full(rgb.shape[:2], 5.0, np.float32)) for rgb in rgbs]

    def _infer(self, rgb, sparse):
        raise AssertionError("unreachable: _infer_many answers")


class Harness(Node):
    """Publishes a rig's sweeps to the node and records what it publishes per camera."""

    def __init__(self, context, rig: Rig):
        super().__init__("surround_harness", context=context)
        self.rig = rig
        self.pubs = {}
        self.depth = {name: [] for name in rig.cameras}
        self.info = {name: [] for name in rig.cameras}
        for name in rig.cameras:
            self.pubs[name] = (
                self.create_publisher(Image, f"{name}/image", qos_profile_sensor_data),
                self.create_publisher(CameraInfo, f"{name}/camera_info", qos_profile_sensor_data))
            self.create_subscription(Image, f"{name}/depth", self.depth[name].append, 10)
            self.create_subscription(CameraInfo, f"{name}/depth/camera_info",
                                     self.info[name].append, 10)
        self.pub_points = self.create_publisher(PointCloud2, "points", qos_profile_sensor_data)
        self.diag = []
        self.create_subscription(DiagnosticArray, "/diagnostics", self.diag.append, 10)
        self.messages = {name: array_to_image(rgb, "rgb8", Header())
                         for name, (rgb, _, _, _) in rig.cameras.items()}

    def send(self, sweep_ns: int, cameras=None, lidar=True) -> dict[str, Header]:
        """One sweep stamped ``sweep_ns`` and the views of ``cameras`` (default all) with their
        offsets; returns the image headers sent."""
        headers = {}
        for name in (self.rig.cameras if cameras is None else cameras):
            _, camera, _, offset = self.rig.cameras[name]
            header = Header(stamp=time_msg(sweep_ns + offset), frame_id=f"{name}_optical")
            image = self.messages[name]
            image.header = header
            self.pubs[name][0].publish(image)
            self.pubs[name][1].publish(camera_to_camera_info(camera, header))
            headers[name] = header
        if lidar:
            self.pub_points.publish(xyz_to_pointcloud2(
                self.rig.points, Header(stamp=time_msg(sweep_ns), frame_id="lidar_top")))
        return headers


@pytest.fixture
def graph(spinning_graph):
    """``start(rig, inject=None, **parameters)`` -> (surround node, harness), inputs matched."""
    context = spinning_graph.context

    def start(rig: Rig, inject=None, **parameters):
        parameters = rig.parameters(**parameters)
        parameters.setdefault("backend", "classical")
        overrides = [Parameter(k, value=v) for k, v in parameters.items()]
        node = SurroundNode(backend=inject, context=context, parameter_overrides=overrides)
        harness = Harness(context, rig)
        spinning_graph.add(node, harness)
        assert wait_until(lambda: all(p.get_subscription_count() >= 1 for pair in
                                      harness.pubs.values() for p in pair)
                          and harness.pub_points.get_subscription_count() >= 1
                          and all(harness.count_publishers(f"{n}/depth") >= 1
                                  for n in rig.cameras), 10.0)
        return node, harness

    yield start, context


def send_until_answered(harness, cameras, first_ns, timeout=60.0, period=1.0):
    """Sweeps one ``period`` apart until every camera in ``cameras`` answered one of them;
    returns the headers of the sweep answered (best-effort messages sent before discovery
    settles are lost; on a slow machine a sweep may be answered after the next one was sent)."""
    end, sweep, sent = time.monotonic() + timeout, first_ns, []

    def answered():
        for headers in sent:
            if all(any(d.header == headers[c] for d in harness.depth[c]) for c in cameras):
                return headers
        return None

    while time.monotonic() < end:
        sent.append(harness.send(sweep))
        if wait_until(lambda: answered() is not None, period):
            return answered()
        sweep += NS
    raise AssertionError(f"no depth for every camera of one sweep within {timeout} s: "
                         f"{ {c: len(v) for c, v in harness.depth.items()} }")


@pytest.mark.parametrize("backend", ["classical", "onnxruntime"])
def test_nuscenes_sample_gives_six_depth_images_with_the_image_headers(graph, backend,
                                                                       nuscenes_sample):
    start, _ = graph
    rig = nuscenes_rig(nuscenes_sample)
    node, harness = start(rig, backend=backend, sync_slop=0.06)
    sweep_ns = 1_532_402_927_647_951_000  # the sample's LIDAR_TOP stamp
    headers = send_until_answered(harness, rig.cameras, sweep_ns)
    assert len(rig.cameras) == 6
    for name, (rgb, camera, extrinsic, _) in rig.cameras.items():
        depth = next(d for d in harness.depth[name] if d.header == headers[name])
        info = next(i for i in harness.info[name] if i.header == headers[name])
        assert depth.header.frame_id == f"{name}_optical"
        assert (depth.encoding, depth.width, depth.height) == ("32FC1", 1600, 900)
        assert (info.width, info.height) == (1600, 900)
        np.testing.assert_allclose(np.reshape(info.k, (3, 3)), camera.K)
        metres = depth_image_to_metres(depth)
        # Right extrinsic per camera: at the sweep's own pixels the depth is near the LiDAR's.
        sparse = project_to_depth(rig.points, camera, extrinsic, max_depth=100.0)
        hit = (sparse > 0) & np.isfinite(metres)
        assert hit.sum() > 200, name
        rel = np.abs(metres[hit] - sparse[hit]) / sparse[hit]
        assert np.median(rel) < 0.1, (name, float(np.median(rel)))
    assert node.assembler.stats.incomplete_sets == 0 or node.assembler.stats.sets > 1


def test_one_batch_per_sweep_and_mono_for_a_view_without_lidar(graph):
    start, _ = graph
    rig = ring_rig(("front", "left", "right"))
    # Only the front wall is in the sweep: left and right have no LiDAR return.
    front = rig.points[rig.points[:, 0] > 11.0]
    rig = Rig(rig.cameras, front)
    backend = ConstantMono()
    node, harness = start(rig, inject=backend)
    send_until_answered(harness, rig.cameras, 100 * NS)
    assert set(backend.batches) == {3}  # every sweep: one call with the three views
    assert backend.mono[-1] == [False, True, True]  # front with LiDAR, the others mono
    assert node.state["front"].mode == "completion" and node.state["left"].mode == "mono"


def test_classical_skips_a_view_without_lidar_and_reports_it(graph):
    start, _ = graph
    rig = ring_rig(("front", "left"))
    rig = Rig(rig.cameras, rig.points[rig.points[:, 0] > 11.0])  # nothing for "left"
    node, harness = start(rig)
    send_until_answered(harness, ["front"], 100 * NS)
    assert wait_until(lambda: any(f.kind == "no_lidar_left" for f in node.faults.active()), 5.0)
    assert not harness.depth["left"]


def test_a_camera_that_stops_is_reported_and_the_others_keep_publishing(graph):
    start, _ = graph
    rig = ring_rig(("front", "left", "right"))
    node, harness = start(rig, camera_timeout=0.5, batch_wait=0.1)
    sweep = send_until_answered(harness, rig.cameras, 100 * NS)
    sweep_ns = 101 * NS
    answered = []
    for i in range(15):  # "right" has stopped
        sweep_ns += NS // 10
        headers = harness.send(sweep_ns, cameras=["front", "left"])
        time.sleep(0.1)
        answered.append(headers["front"])
    assert sweep and wait_until(lambda: harness.depth["front"][-1].header == answered[-1], 5.0)
    assert "right" in node.assembler.stale()

    def right_status():
        for array in reversed(harness.diag):
            for status in array.status:
                if status.name.endswith(": right"):
                    return status
        return None
    assert wait_until(lambda: right_status() is not None and right_status().level == b"\x01"
                      and "no image for" in right_status().message, 3.0)
    overall = harness.diag[-1].status[0]
    assert "right" in {kv.key: kv.value for kv in overall.values}["stale_cameras"]


@pytest.mark.parametrize("parameters, message", [
    ({"cameras": []}, "at least one camera"),
    ({"cameras": ["front", "front"]}, "unique"),
    ({"cameras": ["front/left"]}, "not a valid name"),
    ({"front.lidar_to_camera": [1.0] * 16}, "last row"),
    ({"output_stamp": "lidar"}, "output_stamp"),
    ({"fused_cloud_stride": 0}, "fused_cloud_stride"),
])
def test_bad_parameters_stop_the_start_with_a_clear_error(graph, parameters, message):
    start, _ = graph
    rig = ring_rig(("front",))
    with pytest.raises(StartupError, match=message):
        start(rig, **parameters)


def test_sweeps_and_images_that_never_pair_are_reported_then_recover(graph):
    start, _ = graph
    rig = ring_rig(("front", "left"))
    node, harness = start(rig)
    send_until_answered(harness, rig.cameras, 100 * NS)
    for i in range(25):  # the LiDAR's clock 5 s ahead of the cameras
        sweep_ns = 102 * NS + i * NS // 10
        harness.send(sweep_ns, lidar=False)
        harness.pub_points.publish(xyz_to_pointcloud2(
            rig.points, Header(stamp=time_msg(sweep_ns + 5 * NS), frame_id="lidar_top")))
        time.sleep(0.1)
    assert wait_until(lambda: any(f.kind == "unpaired" for f in node.faults.active()), 3.0)
    unpaired = next(f for f in node.faults.active() if f.kind == "unpaired")
    assert "more than sync_slop" in unpaired.message and unpaired.level == 2
    send_until_answered(harness, rig.cameras, 110 * NS, timeout=10.0)


@pytest.mark.parametrize("seam_blend", [False, True])
def test_sweep_stamp_and_the_fused_cloud_of_every_view(graph, seam_blend):
    start, context = graph
    rig = ring_rig(("front", "left", "right"))
    node, harness = start(rig, output_stamp="sweep", fused_cloud=True, fused_cloud_stride=2,
                          seam_blend=seam_blend)
    clouds = []
    harness.create_subscription(PointCloud2, "depth/points_fused", clouds.append, 10)
    assert wait_until(lambda: harness.count_publishers("depth/points_fused") >= 1, 10.0)
    sweep, sent = 100 * NS, []
    for _ in range(30):
        harness.send(sweep)
        sent.append(sweep)
        if wait_until(lambda: bool(clouds), 1.0):
            break
        sweep += NS
    assert clouds, "no fused cloud"
    cloud = clouds[0]
    stamp_ns = cloud.header.stamp.sec * NS + cloud.header.stamp.nanosec
    assert cloud.header.frame_id == "lidar_top" and stamp_ns in sent
    fields = [f.name for f in cloud.fields]
    assert fields == ["x", "y", "z", "camera"]
    table = np.frombuffer(bytes(cloud.data), np.float32).reshape(-1, 4)
    xyz, camera = table[:, :3], table[:, 3]
    # The views of three walls 12 m from the LiDAR, every 2nd pixel of each: every point lies
    # on its camera's wall, in the sweep's frame.
    assert set(np.unique(camera)) == {0.0, 1.0, 2.0}
    normals = {0.0: (0, 1.0), 1.0: (1, 1.0), 2.0: (1, -1.0)}  # front: x = 12, left: y = 12
    for index, (axis, sign) in normals.items():
        on = xyz[camera == index]
        assert len(on) > 200
        np.testing.assert_allclose(sign * on[:, axis], 12.0, atol=0.05)
    # Every depth image of that sweep carries the sweep's stamp and its camera's frame.
    for name in rig.cameras:
        assert wait_until(lambda: any(d.header.stamp == cloud.header.stamp
                                      for d in harness.depth[name]), 5.0), name
        depth = next(d for d in harness.depth[name] if d.header.stamp == cloud.header.stamp)
        assert depth.header.frame_id == f"{name}_optical"
    # With seam_blend the rig's blender was built once for the three views (the walls above
    # stay on their planes: exact depths only move where the views disagree).
    assert (node.seams is not None) == seam_blend
    if seam_blend:
        names, blender = node.seams._kept
        assert sorted(names) == sorted(rig.cameras) and blender.tolerance == 0.05


def test_rig_tf_needs_tf2_ros_or_broadcasts_each_camera(graph, monkeypatch):
    import importlib.util
    start, _ = graph
    rig = ring_rig(("front", "left"))
    if importlib.util.find_spec("tf2_ros") is None:
        with pytest.raises(StartupError, match="publish_rig_tf needs tf2_ros"):
            start(rig, publish_rig_tf=True)
    # A stand-in broadcaster: what the node would send under a full ROS 2 install.
    import sys
    import types
    sent = []
    stand_in = types.ModuleType("tf2_ros")
    stand_in.StaticTransformBroadcaster = lambda node: types.SimpleNamespace(
        sendTransform=sent.append)
    monkeypatch.setitem(sys.modules, "tf2_ros", stand_in)
    node, harness = start(rig, publish_rig_tf=True)
    send_until_answered(harness, rig.cameras, 100 * NS)
    assert wait_until(lambda: bool(sent), 5.0)  # sent after the depth images of the sweep
    transforms = sent[-1]
    assert sorted(t.child_frame_id for t in transforms) == ["front_optical", "left_optical"]
    from dmd3c_ros.core.calibration import transform_from_quaternion
    for t in transforms:
        name = t.child_frame_id.replace("_optical", "")
        assert t.header.frame_id == "lidar_top"
        tr, q = t.transform.translation, t.transform.rotation
        lidar_from_camera = transform_from_quaternion((tr.x, tr.y, tr.z), (q.x, q.y, q.z, q.w))
        np.testing.assert_allclose(lidar_from_camera @ rig.cameras[name][2], np.eye(4),
                                   atol=1e-9)
    count = len(sent)
    send_until_answered(harness, rig.cameras, 200 * NS)
    time.sleep(0.5)
    assert len(sent) == count == 1  # the same frames: sent once
