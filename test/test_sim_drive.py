"""`dmd3c sim` end to end: drives written as KITTI folders and rosbag2 bags, read back by the
loaders and by rosbags alone, with LiDAR that agrees with the ground truth."""
import json

import numpy as np
import pytest
from rosbags.highlevel import AnyReader

from dmd3c_ros.cli import main
from dmd3c_ros.core.calibration import load_kitti_calibration, transform_from_quaternion
from dmd3c_ros.core.io import read_kitti_depth, read_kitti_velodyne, read_rgb
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.training.data.kitti_dc import KittiDepthCompletion
from dmd3c_ros.training.data.rosbag import RosbagFrames, RosbagTopics
from dmd3c_ros.training.sim.drive import simulate_drive
from dmd3c_ros.training.sim.rig import make_rig
from dmd3c_ros.training.sim.run import run_sim


def agreement(sparse, gt):
    """Median |LiDAR - ground truth| over pixels that have both (metres), and their count."""
    both = (sparse > 0) & np.isfinite(gt) & (gt > 0)
    return float(np.median(np.abs(sparse[both] - gt[both]))), int(both.sum())


def test_drive_is_deterministic_and_lidar_matches_ground_truth():
    rig = make_rig("front", image_scale=0.5)
    first = list(simulate_drive(7, 2, rig))
    again = list(simulate_drive(7, 2, rig))
    other = list(simulate_drive(8, 1, rig))
    np.testing.assert_array_equal(first[1].cameras[0].rgb, again[1].cameras[0].rgb)
    np.testing.assert_array_equal(first[1].points, again[1].points)
    assert not np.array_equal(first[0].cameras[0].rgb, other[0].cameras[0].rgb)
    frame = first[0]
    cam = frame.cameras[0]
    sparse = project_to_depth(frame.points, cam.mount.camera, rig.lidar_to_camera(cam.mount))
    median, count = agreement(sparse, cam.depth)
    assert count > 1000 and median < 0.05
    assert 0.010 <= cam.stamp - frame.lidar_stamp <= 0.030  # realistic camera-LiDAR offset
    rings = frame.points[:, 4]
    assert rings.min() >= 0 and rings.max() <= 63 and len(np.unique(rings)) > 40


@pytest.mark.parametrize("fmt", ["rosbag2-mcap", "rosbag2-sqlite3"])
def test_bag_reads_back_with_rosbags(tmp_path, fmt):
    bag = tmp_path / "drive"
    run_sim(bag, frames=3, seed=3, fmt=fmt, image_scale=0.5)
    assert (bag / "metadata.yaml").is_file()
    with AnyReader([bag]) as reader:
        types = {c.topic: c.msgtype for c in reader.connections}
        counts = {c.topic: c.msgcount for c in reader.connections}
    assert types == {"/camera_2/image": "sensor_msgs/msg/Image",
                     "/camera_2/camera_info": "sensor_msgs/msg/CameraInfo",
                     "/camera_2/depth_gt": "sensor_msgs/msg/Image",
                     "/velodyne/points": "sensor_msgs/msg/PointCloud2",
                     "/tf": "tf2_msgs/msg/TFMessage", "/tf_static": "tf2_msgs/msg/TFMessage"}
    assert counts["/camera_2/image"] == 3 and counts["/tf_static"] == 1
    # The clouds land where the ground truth says, with the extrinsic from /tf_static.
    frames = RosbagFrames(bag, RosbagTopics(image="/camera_2/image", points="/velodyne/points",
                                            gt="/camera_2/depth_gt"))
    assert len(frames) == 3
    for sample in frames:
        median, count = agreement(sample["sparse"], sample["gt"])
        assert count > 500 and median < 0.05
        assert sample["points"].shape[1] >= 4


def test_static_tf_is_the_rig(tmp_path):
    bag = tmp_path / "drive"
    run_sim(bag, frames=1, fmt="rosbag2-mcap", image_scale=0.25)
    rig = make_rig("front")
    with AnyReader([bag]) as reader:
        connection = next(c for c in reader.connections if c.topic == "/tf_static")
        _, _, raw = next(reader.messages(connections=[connection]))
        msg = reader.deserialize(raw, connection.msgtype)
    poses = {}
    for t in msg.transforms:
        tr, q = t.transform.translation, t.transform.rotation
        poses[t.child_frame_id] = transform_from_quaternion((tr.x, tr.y, tr.z),
                                                            (q.x, q.y, q.z, q.w))
        assert t.header.frame_id == "base_link"
    np.testing.assert_allclose(poses["velodyne"], rig.base_from_lidar, atol=1e-9)
    np.testing.assert_allclose(poses["camera_2_optical"], rig.cameras[0].base_from_camera,
                               atol=1e-9)


def test_kitti_layout_reads_back_with_the_loader(tmp_path):
    out = tmp_path / "kitti"
    run_sim(out, frames=2, seed=5, fmt="kitti", rig="stereo", image_scale=0.5)
    dataset = KittiDepthCompletion(out, split="train")
    assert len(dataset) == 4  # two frames x cameras 2 and 3
    sample = dataset[0]
    assert sample["rgb"].shape == (188, 621, 3)
    assert sample["stereo"] is not None and abs(sample["stereo"]["baseline_m"] - 0.54) < 1e-6
    median, count = agreement(sample["sparse"], sample["gt"])
    assert count > 500 and median < 0.05
    # The raw sweep with the written calibration projects to the written sparse map.
    again = project_to_depth(sample["points"], sample["camera"], sample["lidar_to_camera"])
    np.testing.assert_allclose(again, sample["sparse"], atol=1 / 256)


def test_kitti_sample_layout_feeds_the_stream_feeder(tmp_path):
    out = tmp_path / "sample"
    run_sim(out, frames=1, fmt="kitti-sample", image_scale=0.5)
    folder = out / "0000000000"
    calib = load_kitti_calibration(folder)
    rgb = read_rgb(folder / "image_02.png")
    assert calib.camera.size == (rgb.shape[1], rgb.shape[0])
    sparse = project_to_depth(read_kitti_velodyne(folder / "velodyne.bin"), calib.camera,
                              calib.lidar_to_camera)
    np.testing.assert_allclose(sparse, read_kitti_depth(folder / "velodyne_raw_02.png"),
                               atol=1 / 256)
    median, _ = agreement(sparse, read_kitti_depth(folder / "groundtruth_02.png"))
    assert median < 0.05


def test_sim_command(tmp_path, capsys):
    report = tmp_path / "sim.json"
    assert main(["sim", "--frames", "2", "--seed", "1", "--out", str(tmp_path / "bag"),
                 "--format", "rosbag2-mcap", "--lidar", "vlp16", "--rig", "surround",
                 "--image-scale", "0.1", "--json", str(report)]) == 0
    figures = json.loads(report.read_text())
    assert figures["frames"] == 2 and len(figures["cameras"]) == 6
    assert "frame 2/2" in capsys.readouterr().err
    assert main(["sim", "--frames", "1", "--out", str(tmp_path / "bag"), "--format",
                 "rosbag2-mcap"]) == 2  # the bag folder exists already
    assert "exists" in capsys.readouterr().err


def test_bag_messages_deserialise_as_ros2_messages(tmp_path):
    """What `ros2 bag play` does with each message: rclpy's own CDR deserialisation into the
    sensor_msgs types of this ROS 2 install (tf2_msgs is not among the pip packages: the TF
    topics are checked with rosbags in test_static_tf_is_the_rig)."""
    rclpy_serialization = pytest.importorskip("rclpy.serialization")
    from sensor_msgs.msg import CameraInfo, Image, PointCloud2
    types = {"sensor_msgs/msg/Image": Image, "sensor_msgs/msg/CameraInfo": CameraInfo,
             "sensor_msgs/msg/PointCloud2": PointCloud2}
    bag = tmp_path / "drive"
    run_sim(bag, frames=1, fmt="rosbag2-sqlite3", image_scale=0.25)
    seen = set()
    with AnyReader([bag]) as reader:
        for connection, _, raw in reader.messages():
            if connection.msgtype not in types:
                continue
            msg = rclpy_serialization.deserialize_message(bytes(raw), types[connection.msgtype])
            seen.add(connection.msgtype)
            if connection.msgtype == "sensor_msgs/msg/PointCloud2":
                from dmd3c_ros.ros.adapters import pointcloud2_fields, pointcloud2_to_xyz
                assert len(pointcloud2_to_xyz(msg)) == msg.width
                assert pointcloud2_fields(msg, ["ring"])["ring"].dtype == np.uint16
            if connection.msgtype == "sensor_msgs/msg/Image" and msg.encoding == "32FC1":
                from dmd3c_ros.ros.adapters import depth_image_to_metres
                assert np.nanmax(depth_image_to_metres(msg)) > 10.0
    assert seen == set(types)


def test_command_line_choices_match_the_simulator():
    from dmd3c_ros import cli
    from dmd3c_ros.training.sim.lidar import LIDAR_MODELS
    from dmd3c_ros.training.sim.rig import RIGS
    from dmd3c_ros.training.sim.run import FORMATS
    assert cli.SIM_FORMATS == FORMATS
    assert set(cli.SIM_LIDARS) == set(LIDAR_MODELS)
    assert cli.SIM_RIGS == RIGS
