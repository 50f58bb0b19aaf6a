import numpy as np
import pytest

from dmd3c_ros.core.calibration import (load_kitti_calibration, load_kitti_object_calibration,
                                        parse_calibration_text)
from dmd3c_ros.core.camera import CalibrationError

R_RECT = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]])  # 90 deg about x
R_VELO = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])  # x fwd -> z fwd
T_VELO = np.array([0.1, -0.2, -0.3])
P2 = np.array([[700.0, 0, 600, 45.0], [0, 700, 170, 0.2], [0, 0, 1, 0.003]])


def fmt(values):
    return " ".join(f"{v:.6e}" for v in np.ravel(values))


def write_raw(tmp_path, size=(1242, 375)):
    (tmp_path / "calib_cam_to_cam.txt").write_text(
        "calib_time: 09-Jan-2012 13:57:47\n"
        f"S_rect_02: {fmt(size)}\nR_rect_00: {fmt(R_RECT)}\nP_rect_02: {fmt(P2)}\n")
    (tmp_path / "calib_velo_to_cam.txt").write_text(
        f"calib_time: 15-Mar-2012 11:37:16\nR: {fmt(R_VELO)}\nT: {fmt(T_VELO)}\n"
        "delta_f: 0 0\n")
    return tmp_path


def expected_extrinsic():
    velo = np.eye(4)
    velo[:3, :3], velo[:3, 3] = R_VELO, T_VELO
    rect = np.eye(4)
    rect[:3, :3] = R_RECT
    return rect @ velo


def test_raw_pair(tmp_path):
    calib = load_kitti_calibration(write_raw(tmp_path))
    assert calib.camera.size == (1242, 375)
    np.testing.assert_allclose(calib.camera.P, P2)
    np.testing.assert_allclose(calib.lidar_to_camera, expected_extrinsic())
    # A point 10 m ahead of the LiDAR: x_cam = R_rect (R_velo X + T).
    point = np.array([10.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose((calib.lidar_to_camera @ point)[:3],
                               R_RECT @ (R_VELO @ point[:3] + T_VELO))


def test_object_calib(tmp_path):
    velo = np.hstack([R_VELO, T_VELO[:, None]])
    path = tmp_path / "calib.txt"
    path.write_text(f"P0: {fmt(P2)}\nP1: {fmt(P2)}\nP2: {fmt(P2)}\nP3: {fmt(P2)}\n"
                    f"R0_rect: {fmt(R_RECT)}\nTr_velo_to_cam: {fmt(velo)}\n"
                    f"Tr_imu_to_velo: {fmt(velo)}\n")
    calib = load_kitti_object_calibration(path, (1224, 370))
    assert calib.camera.size == (1224, 370)
    np.testing.assert_allclose(calib.lidar_to_camera, expected_extrinsic())
    with pytest.raises(CalibrationError, match="image size"):
        load_kitti_calibration(path)


def test_errors_name_file_and_key(tmp_path):
    write_raw(tmp_path)
    (tmp_path / "calib_velo_to_cam.txt").write_text("R: 1 0 0 0 1 0 0 0 1\n")
    with pytest.raises(CalibrationError, match="missing 'T'"):
        load_kitti_calibration(tmp_path)
    (tmp_path / "calib_velo_to_cam.txt").write_text("R: 1 0 0\nT: 0 0 0\n")
    with pytest.raises(CalibrationError, match="'R' has 3 values"):
        load_kitti_calibration(tmp_path)
    with pytest.raises(CalibrationError, match="no such calibration file"):
        load_kitti_calibration(tmp_path / "nowhere.txt", (10, 10))
    with pytest.raises(CalibrationError, match="no 'key: numbers'"):
        parse_calibration_text("hello\n")


def test_raw_size_must_match_image(tmp_path):
    with pytest.raises(CalibrationError, match="does not match"):
        load_kitti_calibration(write_raw(tmp_path), image_size=(1216, 352))


def test_real_raw_calibration(kitti_dc):
    calib = load_kitti_calibration(kitti_dc)
    assert calib.camera.fx == pytest.approx(721.5377)
    assert (calib.camera.cx, calib.camera.cy) == pytest.approx((609.5593, 172.854))
    assert calib.camera.size == (1242, 375)


def test_quaternion_round_trip():
    from dmd3c_ros.core.calibration import quaternion_from_rotation, transform_from_quaternion
    rng = np.random.default_rng(3)
    for _ in range(50):
        q = rng.normal(size=4)
        q /= np.linalg.norm(q)
        R = transform_from_quaternion((0, 0, 0), q)[:3, :3]
        back = transform_from_quaternion((0, 0, 0), quaternion_from_rotation(R))[:3, :3]
        np.testing.assert_allclose(back, R, atol=1e-9)
    # 180-degree rotations, where naive formulas lose signs
    for axis in ([0, 0, 1], [1, 0, 0], [1, -1, 0], [0, 1, -1], [1, 1, 1]):
        axis = np.array(axis, float) / np.linalg.norm(axis)
        R = 2 * np.outer(axis, axis) - np.eye(3)
        np.testing.assert_allclose(
            transform_from_quaternion((0, 0, 0), quaternion_from_rotation(R))[:3, :3], R,
            atol=1e-9)
