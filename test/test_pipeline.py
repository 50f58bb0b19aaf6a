import numpy as np
import pytest

from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.projection import depth_to_points, project_to_depth
from dmd3c_ros.runtime.base import Backend, MonoNotSupportedError, Prediction
from dmd3c_ros.runtime.classical_backend import ClassicalBackend
from dmd3c_ros.runtime.pipeline import CompletionPipeline

CAM = PinholeCamera.from_intrinsics(60.0, 60.0, 40.0, 30.0, 80, 60)


def wall(distance=12.0, count=4000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-9, 9, count)
    y = rng.uniform(-7, 7, count)
    # LiDAR frame: x forward, y left, z up; camera optical frame: z forward, x right, y down.
    return np.stack([np.full(count, distance), -x, -y], axis=1)


LIDAR_TO_CAMERA = np.array([[0.0, -1, 0, 0], [0, 0, -1, 0], [1, 0, 0, 0], [0, 0, 0, 1]])


class ConstantMono(Backend):
    name = "constant"
    supports_mono = True

    def _infer(self, rgb, sparse):
        depth = np.full(rgb.shape[:2], 150.0, np.float32)
        depth[0, 0] = 0.05
        depth[1, 1] = 7.0
        return Prediction(depth, np.ones(rgb.shape[:2], np.float32))


def test_completion_of_a_wall():
    pipeline = CompletionPipeline(ClassicalBackend(), max_depth=80.0)
    result = pipeline.run(np.zeros((60, 80, 3), np.uint8), CAM, wall(), LIDAR_TO_CAMERA)
    assert result.mode == "completion" and result.sparse_pixels > 1000
    np.testing.assert_allclose(result.depth[np.isfinite(result.depth)], 12.0, atol=1e-3)
    assert set(result.timings_ms) == {"projection", "inference"}


def test_outputs_outside_the_depth_range_become_nan():
    result = CompletionPipeline(ConstantMono(), min_depth=0.1, max_depth=100.0).run(
        np.zeros((60, 80, 3), np.uint8), CAM)
    assert result.mode == "mono"
    assert np.isnan(result.depth[0, 0]) and np.isnan(result.depth[5, 5])  # 0.05 m, 150 m
    assert result.depth[1, 1] == 7.0 and result.uncertainty[1, 1] == 1.0
    assert np.isnan(result.uncertainty[5, 5])


def test_empty_sweep_is_mono_or_an_error():
    rgb = np.zeros((60, 80, 3), np.uint8)
    assert CompletionPipeline(ConstantMono()).run(rgb, CAM, np.zeros((0, 3))).mode == "mono"
    behind = -wall()  # every point behind the camera: nothing lands in the image
    with pytest.raises(MonoNotSupportedError):
        CompletionPipeline(ClassicalBackend()).run(rgb, CAM, behind, LIDAR_TO_CAMERA)


def test_image_and_camera_sizes_must_agree():
    with pytest.raises(ValueError, match="CameraInfo"):
        CompletionPipeline(ClassicalBackend()).run(np.zeros((50, 80, 3), np.uint8), CAM, wall())


def test_depth_to_points_inverts_projection():
    depth = np.full((60, 80), np.nan, np.float32)
    depth[10:20, 30:50] = 9.0
    points = depth_to_points(depth, CAM)
    assert points.shape == (200, 3)
    np.testing.assert_allclose(points[:, 2], 9.0)
    np.testing.assert_array_equal(project_to_depth(points, CAM), np.nan_to_num(depth))
    # Every 3rd pixel in both directions: the same points as the full image's on that grid.
    strided = depth_to_points(depth, CAM, stride=3)
    grid = np.full_like(depth, np.nan)
    grid[::3, ::3] = depth[::3, ::3]
    np.testing.assert_array_equal(strided, depth_to_points(grid, CAM))
    assert len(strided) == np.isfinite(depth[::3, ::3]).sum()
    with pytest.raises(ValueError, match="stride"):
        depth_to_points(depth, CAM, stride=0)
