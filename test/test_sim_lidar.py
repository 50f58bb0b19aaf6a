"""LiDAR models, their ray-cast simulation and DMD3C's LiDAR-from-depth."""
import numpy as np
import pytest

from dmd3c_ros.core.calibration import load_kitti_calibration
from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.io import read_kitti_depth
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.training.sim.from_depth import (default_camera_from_lidar, depth_to_mesh,
                                               fill_small_holes, simulate_lidar_from_depth)
from dmd3c_ros.training.sim.lidar import LIDAR_MODELS, LidarModel, simulate_lidar
from dmd3c_ros.training.sim.raycast import RayCaster
from dmd3c_ros.training.sim.render import render_camera
from dmd3c_ros.training.sim.rig import make_rig
from dmd3c_ros.training.sim.world import generate_scene

GROUND = (np.array([[-500, -500, 0], [500, -500, 0], [500, 500, 0], [-500, 500, 0]], float),
          np.array([[0, 1, 2], [0, 2, 3]]))


def lidar_at(height):
    pose = np.eye(4)
    pose[2, 3] = height
    return pose


@pytest.mark.parametrize("name, rings, low, high", [("hdl64", 64, -24.33, 2.0),
                                                    ("vlp32", 32, -25.0, 15.0),
                                                    ("vlp16", 16, -15.0, 15.0),
                                                    ("os128", 128, -22.5, 22.5)])
def test_published_beam_layouts(name, rings, low, high):
    model = LIDAR_MODELS[name]
    assert model.rings == rings
    assert min(model.elevations) == pytest.approx(low) and max(model.elevations) == \
        pytest.approx(high)
    directions, ring = model.directions()
    assert directions.shape == (rings * model.columns, 3)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-6)


def test_flat_ground_ranges_rings_and_noise():
    model = LidarModel("test", (-5.0, -10.0, -20.0, 3.0), 720, 100.0, range_noise=0.02,
                       dropout=0.1)
    points = simulate_lidar(RayCaster(*GROUND), model, lidar_at(1.73), np.random.default_rng(0))
    ring = points[:, 4].astype(int)
    assert set(ring) == {0, 1, 2}  # the upward beam never hits the ground
    for r, angle in enumerate(model.elevations[:3]):
        mine = points[ring == r]
        ranges = np.linalg.norm(mine[:, :3], axis=1)
        expected = 1.73 / np.sin(np.radians(-angle))
        assert np.mean(ranges) == pytest.approx(expected, abs=0.01)
        assert np.std(ranges) == pytest.approx(0.02, rel=0.2)
        elevation = np.degrees(np.arctan2(mine[:, 2], np.hypot(mine[:, 0], mine[:, 1])))
        np.testing.assert_allclose(elevation, angle, atol=0.05)
        # about 10% dropout
        assert 0.85 * 720 < len(mine) < 0.95 * 720
    assert points[:, 3].min() >= 0 and points[:, 3].max() <= 1


def test_max_range_and_reflectivity():
    far = LidarModel("far", (-1.0,), 360, 50.0, range_noise=0.0, dropout=0.0)
    assert len(simulate_lidar(RayCaster(*GROUND), far, lidar_at(1.73),
                              np.random.default_rng(0))) == 0  # ground 99 m away: beyond range
    near = LidarModel("near", (-20.0,), 360, 50.0, range_noise=0.0, dropout=0.0)
    bright = simulate_lidar(RayCaster(*GROUND), near, lidar_at(1.73), np.random.default_rng(0),
                            reflectivity=np.array([0.9, 0.9]))
    dark = simulate_lidar(RayCaster(*GROUND), near, lidar_at(1.73), np.random.default_rng(0),
                          reflectivity=np.array([0.1, 0.1]))
    assert bright[:, 3].mean() > dark[:, 3].mean() + 0.3


CAM = PinholeCamera.from_intrinsics(200.0, 200.0, 160.0, 60.0, 320, 120)


def step_depth():
    depth = np.full((120, 320), 30.0)
    depth[40:90, 100:200] = 8.0  # a box in front of a wall
    return depth


def test_mesh_of_a_plane_rerenders_exactly():
    depth = np.full((120, 320), 12.0)
    vertices, triangles = depth_to_mesh(depth, CAM)
    assert len(triangles) == 2 * 119 * 319
    sparse = project_to_depth(vertices[np.unique(triangles)], CAM)
    np.testing.assert_allclose(sparse[sparse > 0], 12.0, atol=1e-4)


def test_mesh_has_no_skin_across_a_depth_step():
    depth = step_depth()
    vertices, triangles = depth_to_mesh(depth, CAM)
    corner = vertices[triangles][..., 2]
    assert np.all(corner.max(axis=1) / corner.min(axis=1) <= 1.1)
    assert len(triangles) > 0.9 * 2 * 119 * 319  # only the outline of the box is cut


def test_from_depth_agrees_with_direct_simulation_of_a_synthetic_frame():
    """Acceptance: LiDAR simulated from the ground truth of a synthetic frame matches the LiDAR
    simulated directly in that frame's world (same pose): >= 90% within 0.2 m."""
    rig = make_rig("front", image_scale=0.5)
    mount = rig.cameras[0]
    scene = generate_scene(4, length_m=80.0)
    world = scene.at(1.0)
    world_from_camera = scene.ego_pose(1.0) @ mount.base_from_camera
    _, gt = render_camera(world, mount.camera, world_from_camera, np.random.default_rng(0))
    camera_from_lidar = np.linalg.inv(mount.base_from_camera) @ rig.base_from_lidar
    model = LIDAR_MODELS["hdl64"]
    from_depth, _, _ = simulate_lidar_from_depth(gt, mount.camera, model,
                                                 np.random.default_rng(1),
                                                 camera_from_lidar=camera_from_lidar)
    direct_points = simulate_lidar(world.caster(), model, world_from_camera @ camera_from_lidar,
                                   np.random.default_rng(1))
    direct = project_to_depth(direct_points, mount.camera, camera_from_lidar)
    both = (from_depth > 0) & (direct > 0)
    assert both.sum() > 1000
    assert np.mean(np.abs(from_depth[both] - direct[both]) <= 0.2) >= 0.9


def test_randomised_pose_stays_near_the_camera():
    rng = np.random.default_rng(3)
    _, _, pose = simulate_lidar_from_depth(step_depth(), CAM, LIDAR_MODELS["vlp16"], rng,
                                           randomise_pose=True)
    offset = pose[:3, 3] - default_camera_from_lidar()[:3, 3]
    assert np.all(np.abs(offset) <= 0.15 + 1e-9)
    assert not np.allclose(pose, default_camera_from_lidar())


def test_from_real_kitti_ground_truth_has_ring_structure(kitti_dc):
    """Acceptance: HDL-64 simulated from the real ground truth covers 2-8% of the full frame, in
    scan lines: each ring's returns form a line whose row changes by at most a pixel or so
    between neighbouring azimuths."""
    camera = load_kitti_calibration(kitti_dc).camera
    gt = read_kitti_depth(kitti_dc / "groundtruth_02.png")
    sparse, points, pose = simulate_lidar_from_depth(
        fill_small_holes(gt), camera, LIDAR_MODELS["hdl64"], np.random.default_rng(0))
    share = np.mean(sparse > 0)
    assert 0.02 <= share <= 0.08
    uv, _ = camera.project(points[:, :3] @ pose[:3, :3].T + pose[:3, 3])
    lines = 0
    for ring in np.unique(points[:, 4]):
        rows = uv[points[:, 4] == ring]
        if len(rows) < 100:
            continue
        order = np.argsort(rows[:, 0])
        steps = np.abs(np.diff(rows[order, 1]))
        lines += np.median(steps) <= 1.0
    assert lines >= 30
