import cv2
import numpy as np
import pytest

from dmd3c_ros.core.camera import CalibrationError, PinholeCamera


def make_camera():
    return PinholeCamera.from_intrinsics(500.0, 480.0, 320.0, 240.0, 640, 480)


def test_projection_follows_p():
    cam = make_camera()
    uv, depth = cam.project(np.array([[1.0, -0.5, 10.0], [0.0, 0.0, -2.0]]))
    assert uv[0] == pytest.approx([320 + 500 * 0.1, 240 - 480 * 0.05])
    assert depth[0] == 10.0
    assert np.isnan(uv[1]).all()  # behind the camera


def test_translation_column_of_p_is_used():
    # A right stereo camera: P[0, 3] = -fx * baseline.
    P = np.array([[500.0, 0, 320, -500.0 * 0.5], [0, 500, 240, 0], [0, 0, 1, 0]])
    cam = PinholeCamera.from_projection(P, 640, 480)
    uv, _ = cam.project(np.array([[0.0, 0.0, 5.0]]))
    assert uv[0, 0] == pytest.approx(320 - 500 * 0.5 / 5)


def test_resized_matches_cv2_resize():
    cam = make_camera()
    small = cam.resized(320, 240)
    assert small.fx == pytest.approx(250.0)
    # A single bright pixel at (100, 60) lands where cv2.resize puts the centre of its 2x2 block.
    image = np.zeros((480, 640), np.float32)
    image[60:62, 100:102] = 1.0
    resized = cv2.resize(image, (320, 240), interpolation=cv2.INTER_AREA)
    v, u = np.unravel_index(np.argmax(resized), resized.shape)
    point = np.array([[(100.5 - cam.cx) / cam.fx * 7.0, (60.5 - cam.cy) / cam.fy * 7.0, 7.0]])
    uv, _ = small.project(point)
    assert uv[0] == pytest.approx([u, v], abs=1e-6)


def test_cropped_shifts_principal_point_and_keeps_focal():
    cam = make_camera()
    crop = cam.cropped(10, 100, 600, 300)
    assert (crop.width, crop.height) == (600, 300)
    assert (crop.cx, crop.cy, crop.fx) == (310.0, 140.0, 500.0)
    with pytest.raises(ValueError):
        cam.cropped(100, 0, 600, 480)


def test_all_zero_intrinsics_are_an_error():
    with pytest.raises(CalibrationError, match="unusable"):
        PinholeCamera(640, 480, np.zeros((3, 3)), np.zeros((3, 4)))
    with pytest.raises(CalibrationError, match="size"):
        PinholeCamera.from_intrinsics(500, 500, 320, 240, 0, 480)
    with pytest.raises(CalibrationError, match="NaN"):
        PinholeCamera.from_intrinsics(np.nan, 500, 320, 240, 640, 480)


def test_camera_is_immutable():
    cam = make_camera()
    with pytest.raises(ValueError):
        cam.K[0, 0] = 1.0
