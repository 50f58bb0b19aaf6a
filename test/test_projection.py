import numpy as np
import pytest

from dmd3c_ros.core.calibration import load_kitti_calibration
from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.io import read_kitti_depth, read_kitti_velodyne, read_rgb
from dmd3c_ros.core.projection import project_to_depth

CAM = PinholeCamera.from_intrinsics(100.0, 100.0, 50.0, 40.0, 101, 81)


def test_zbuffer_nearest_return_wins_in_any_order():
    near, far = [0.0, 0.0, 5.0], [0.0, 0.0, 9.0]
    for points in ([near, far], [far, near], [far, near, far]):
        depth = project_to_depth(np.array(points), CAM)
        assert depth[40, 50] == pytest.approx(5.0)
        assert np.count_nonzero(depth) == 1


def test_rounding_to_nearest_pixel_centre():
    # u = 50 + 100 * x / z: x / z = 0.0149 -> u = 51.49 -> column 51; 0.0151 -> 52.
    depth = project_to_depth(np.array([[0.149, 0.0, 10.0], [0.151, 0.0, 10.0]]), CAM)
    assert depth[40, 51] == pytest.approx(10.0) and depth[40, 52] == pytest.approx(10.0)


def test_range_and_field_of_view_filtering():
    points = np.array([
        [0.0, 0.0, -5.0],   # behind the camera
        [0.0, 0.0, 0.05],   # closer than min_depth
        [0.0, 0.0, 200.0],  # beyond max_depth
        [10.0, 0.0, 5.0],   # outside the image (u = 250)
        [np.nan, 0.0, 5.0],  # not finite
        [0.0, 0.2, 4.0],    # the only good one: u = 50, v = 45
    ])
    depth = project_to_depth(points, CAM, min_depth=0.1, max_depth=100.0)
    assert np.count_nonzero(depth) == 1 and depth[45, 50] == pytest.approx(4.0)
    assert depth.dtype == np.float32 and depth.shape == (81, 101)


def test_extrinsic_is_applied_and_input_not_mutated():
    # LiDAR x forward, y left, z up -> optical z forward, x right, y down; LiDAR 1 m behind.
    T = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, -1.0],
                  [0.0, 0.0, 0.0, 1.0]])
    points = np.array([[11.0, 0.0, 0.0, 0.7]], dtype=np.float32)
    before = points.copy()
    depth = project_to_depth(points, CAM, T)
    assert depth[40, 50] == pytest.approx(10.0)
    np.testing.assert_array_equal(points, before)


def test_empty_and_malformed_sweeps():
    assert not project_to_depth(np.zeros((0, 3)), CAM).any()
    with pytest.raises(ValueError, match="points must be"):
        project_to_depth(np.zeros((5, 2)), CAM)


def test_real_kitti_sweep_matches_ground_truth(kitti_dc):
    calib = load_kitti_calibration(kitti_dc)
    sparse = project_to_depth(read_kitti_velodyne(kitti_dc / "velodyne.bin"), calib.camera,
                              calib.lidar_to_camera)
    gt = read_kitti_depth(kitti_dc / "groundtruth_02.png")
    valid = sparse > 0
    both = valid & (gt > 0)
    diff = np.abs(sparse[both] - gt[both])
    assert valid.sum() >= 18000
    assert (diff <= 0.5).mean() >= 0.95
    assert np.median(diff) <= 0.10
    # And where it lands on the official sparse input's pixels it agrees to a few centimetres.
    official = read_kitti_depth(kitti_dc / "velodyne_raw_02.png")
    same = valid & (official > 0)
    assert np.median(np.abs(sparse[same] - official[same])) <= 0.05


def test_real_kitti_object_sweep(kitti_object):
    rgb = read_rgb(kitti_object / "image_2.png")
    calib = load_kitti_calibration(kitti_object / "calib.txt", (rgb.shape[1], rgb.shape[0]))
    sparse = project_to_depth(read_kitti_velodyne(kitti_object / "velodyne.bin"), calib.camera,
                              calib.lidar_to_camera)
    valid = sparse[sparse > 0]
    assert valid.size >= 15000
    assert valid.min() > 1.0 and valid.max() < 120.0
    # The road in the bottom rows is near; the LiDAR sees nothing above the horizon.
    assert np.median(sparse[-40:][sparse[-40:] > 0]) < 12.0
    assert not sparse[:60].any()
