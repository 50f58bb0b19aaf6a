"""LiDAR models, their ray-cast simulation and DMD3C's LiDAR-from-depth."""
import dataclasses

import numpy as np
import pytest

from dmd3c_ros.core.calibration import load_kitti_calibration
from dmd3c_ros.core.camera import PinholeCamera
from dmd3c_ros.core.io import read_kitti_depth
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.training.sim.from_depth import (default_camera_from_lidar, depth_to_mesh,
                                               fill_small_holes, simulate_lidar_from_depth)
from dmd3c_ros.training.sim.lidar import (LIDAR_MODELS, LidarModel, simulate_lidar,
                                          triangle_normals)
from dmd3c_ros.training.sim.raycast import RayCaster

GROUND = (np.array([[-500, -500, 0], [500, -500, 0], [500, 500, 0], [-500, 500, 0]], float),
          np.array([[0, 1, 2], [0, 2, 3]]))
FLAT = dict(range_noise=0.0, dropout=0.0, intensity_noise=0.0)


def lidar_at(height):
    pose = np.eye(4)
    pose[2, 3] = height
    return pose


def box(lo, hi):
    """(8, 3) corners and (12, 3) triangles of an axis-aligned box."""
    corners = np.array([[x, y, z] for x in (lo[0], hi[0]) for y in (lo[1], hi[1])
                        for z in (lo[2], hi[2])], float)
    faces = [(0, 1, 3, 2), (4, 6, 7, 5), (0, 4, 5, 1), (2, 3, 7, 6), (0, 2, 6, 4), (1, 5, 7, 3)]
    return corners, np.array([t for a, b, c, d in faces for t in ((a, b, c), (a, c, d))])


def merge(*meshes):
    vertices, triangles, offset = [], [], 0
    for v, t in meshes:
        vertices.append(v)
        triangles.append(np.asarray(t) + offset)
        offset += len(v)
    return np.concatenate(vertices), np.concatenate(triangles)


def elevation_deg(points):
    return np.degrees(np.arctan2(points[:, 2], np.hypot(points[:, 0], points[:, 1])))


# --- models -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name, rings, low, high, top_first", [
    ("hdl64", 64, -24.33, 2.0, True), ("vlp32", 32, -25.0, 15.0, False),
    ("hdl32", 32, -30.67, 10.67, False), ("vlp16", 16, -15.0, 15.0, False),
    ("os128", 128, -22.5, 22.5, True)])
def test_published_beam_layouts(name, rings, low, high, top_first):
    model = LIDAR_MODELS[name]
    assert model.rings == rings
    assert min(model.elevations) == pytest.approx(low) and max(model.elevations) == \
        pytest.approx(high)
    # Rings are numbered as the sensor's driver does: monotonic, top first or bottom first.
    steps = np.diff(model.elevations)
    assert np.all(steps < 0) if top_first else np.all(steps > 0)
    directions, ring = model.directions()
    assert directions.shape == (rings * model.columns, 3) and ring.shape == (len(directions),)
    np.testing.assert_allclose(np.linalg.norm(directions, axis=1), 1.0, atol=1e-6)
    np.testing.assert_allclose(elevation_deg(directions), np.asarray(model.elevations)[ring],
                               atol=1e-4)
    assert 0.1 <= model.azimuth_resolution_deg <= 0.4


def test_hdl64_blocks_vlp16_and_hdl32_spacing():
    steps = -np.diff(LIDAR_MODELS["hdl64"].elevations)
    np.testing.assert_allclose(steps[:31], 1 / 3, atol=0.01)  # upper block, 1/3 deg
    np.testing.assert_allclose(steps[32:], 0.5, atol=0.01)    # lower block, 1/2 deg
    assert steps[31] == pytest.approx(0.5, abs=0.01)          # the gap between the blocks
    np.testing.assert_allclose(np.diff(LIDAR_MODELS["vlp16"].elevations), 2.0)
    # HDL-32E (nuScenes' LIDAR_TOP): evenly 4/3 deg, 1,084 points a ring as nuScenes records it.
    np.testing.assert_allclose(np.diff(LIDAR_MODELS["hdl32"].elevations), 4 / 3, atol=1e-3)
    assert LIDAR_MODELS["hdl32"].columns == 1084


def test_azimuth_offsets_turn_their_ring():
    model = LidarModel("offsets", (0.0, -10.0), 8, 50.0, azimuth_offsets=(0.0, 5.0))
    directions, ring = model.directions()
    azimuth = np.degrees(np.arctan2(directions[:, 1], directions[:, 0]))
    turn = (azimuth[ring == 1] - azimuth[ring == 0] + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(turn, 5.0, atol=1e-3)
    with pytest.raises(ValueError):
        LidarModel("bad", (0.0, 1.0), 8, 50.0, azimuth_offsets=(0.0,))


@pytest.mark.parametrize("name", sorted(LIDAR_MODELS))
def test_every_ring_returns_at_its_own_elevation(name):
    """Inside a closed room every beam hits; range noise moves points along their beam only."""
    model = LIDAR_MODELS[name]
    room = box((-40, -30, -1.8), (50, 30, 25))
    points = simulate_lidar(RayCaster(*room), model, np.eye(4), np.random.default_rng(0))
    ring = points[:, 4].astype(int)
    assert set(ring) == set(range(model.rings))
    assert len(points) == pytest.approx(model.rings * model.columns * (1 - model.dropout),
                                        rel=0.02)
    np.testing.assert_allclose(elevation_deg(points), np.asarray(model.elevations)[ring],
                               atol=0.01)


# --- simulate_lidar on a flat ground ----------------------------------------------------------

def test_flat_ground_ranges_rings_dropout_and_noise():
    model = LidarModel("test", (3.0, -5.0, -10.0, -20.0), 3600, 100.0, range_noise=0.02,
                       dropout=0.1)
    points = simulate_lidar(RayCaster(*GROUND), model, lidar_at(1.73), np.random.default_rng(0))
    ring = points[:, 4].astype(int)
    assert set(ring) == {1, 2, 3}  # the upward beam (ring 0) never hits the ground
    for r in (1, 2, 3):
        angle = model.elevations[r]
        mine = points[ring == r]
        ranges = np.linalg.norm(mine[:, :3], axis=1)
        expected = 1.73 / np.sin(np.radians(-angle))  # analytic range to the ground
        assert np.mean(ranges) == pytest.approx(expected, abs=0.003)
        assert np.std(ranges) == pytest.approx(0.02, rel=0.1)
        np.testing.assert_allclose(elevation_deg(mine), angle, atol=0.01)
        assert len(mine) / 3600 == pytest.approx(0.9, abs=0.02)  # 10% dropout
    assert points.dtype == np.float32 and points.shape[1] == 5


def test_exact_ranges_without_noise_and_max_range():
    model = LidarModel("flat", (-2.0, -5.0, -30.0), 720, 45.0, min_range=2.0, **FLAT)
    points = simulate_lidar(RayCaster(*GROUND), model, lidar_at(1.73), np.random.default_rng(0))
    ring = points[:, 4].astype(int)
    # -2 deg hits at 49.6 m, beyond max_range; -30 deg at 3.46 m; -5 deg at 19.85 m.
    assert set(ring) == {1, 2}
    ranges = np.linalg.norm(points[:, :3], axis=1)
    np.testing.assert_allclose(ranges[ring == 1], 1.73 / np.sin(np.radians(5.0)), rtol=1e-5)
    np.testing.assert_allclose(points[:, 2], -1.73, atol=1e-4)  # all on the ground
    noisy = dataclasses.replace(model, elevations=(-2.2,), range_noise=0.5)  # 45.1 m, noise 0.5
    ranges = np.linalg.norm(simulate_lidar(RayCaster(*GROUND), noisy, lidar_at(1.73),
                                           np.random.default_rng(0))[:, :3], axis=1)
    assert 0 < len(ranges) < 720 and ranges.max() <= 45.0  # measured ranges stay in range


def test_intensity_in_unit_range_and_follows_reflectivity():
    # Ground split along x = 0: triangles 0-1 behind (x < 0, dark), 2-3 ahead (x > 0, bright).
    vertices = np.array([[-100, -100, 0], [0, -100, 0], [0, 100, 0], [-100, 100, 0],
                         [100, -100, 0], [100, 100, 0]], float)
    triangles = np.array([[0, 1, 2], [0, 2, 3], [1, 4, 5], [1, 5, 2]])
    reflectivity = np.array([0.1, 0.1, 0.9, 0.9])
    model = LIDAR_MODELS["hdl64"]
    points = simulate_lidar(RayCaster(vertices, triangles), model, lidar_at(1.73),
                            np.random.default_rng(0), reflectivity=reflectivity,
                            normals=triangle_normals(vertices, triangles))
    intensity = points[:, 3]
    assert intensity.min() >= 0.0 and intensity.max() <= 1.0
    ahead, behind = intensity[points[:, 0] > 1.0], intensity[points[:, 0] < -1.0]
    assert ahead.mean() > behind.mean() + 0.2
    # Steeper beams meet the ground closer to its normal: brighter on the same surface.
    ring = points[points[:, 0] > 1.0, 4].astype(int)
    assert ahead[ring == 63].mean() > ahead[ring == 20].mean() + 0.05  # -24.3 vs -4.7 deg


# --- depth_to_mesh ----------------------------------------------------------------------------

CAM = PinholeCamera.from_intrinsics(200.0, 200.0, 160.0, 60.0, 320, 120)


def camera_rays(camera, offset=(0.0, 0.0)):
    """Origin and (H * W, 3) directions through the pixel centres of ``camera`` (moved by
    ``offset`` pixels: rays exactly through a mesh's vertices may slip between its triangles)."""
    v, u = np.mgrid[0:camera.height, 0:camera.width] + np.reshape(offset[::-1], (2, 1, 1))
    inverse = np.linalg.inv(camera.P[:, :3])
    directions = np.stack([u, v, np.ones_like(u)], -1).reshape(-1, 3) @ inverse.T
    return -inverse @ camera.P[:, 3], directions


def render_depth(vertices, triangles, camera, offset=(0.0, 0.0)):
    """Depth along the optical axis of ``camera`` of a mesh in its optical frame, 0 = miss."""
    origin, directions = camera_rays(camera, offset)
    distance, _ = RayCaster(vertices, triangles).cast(origin, directions)
    unit_z = directions[:, 2] / np.linalg.norm(directions, axis=1)
    depth = np.where(np.isfinite(distance), distance * unit_z + origin[2], 0.0)
    return depth.reshape(camera.height, camera.width).astype(np.float32)


def step_depth():
    depth = np.full((120, 320), 30.0)
    depth[40:90, 100:200] = 8.0  # a box in front of a wall
    return depth


def test_mesh_of_a_plane_rerenders_exactly():
    vertices, triangles = depth_to_mesh(np.full((120, 320), 12.0), CAM)
    assert vertices.dtype == np.float32 and triangles.dtype == np.int32
    assert len(triangles) == 2 * 119 * 319
    rendered = render_depth(vertices, triangles, CAM, offset=(0.3, 0.4))  # inside triangles
    np.testing.assert_allclose(rendered[:-1, :-1], 12.0, atol=1e-3)
    facing = triangle_normals(vertices, triangles)[:, 2]
    assert np.all(facing > 0.99) or np.all(facing < -0.99)  # one winding throughout
    _, coarse = depth_to_mesh(np.full((120, 320), 12.0), CAM, stride=4)
    assert len(coarse) == 2 * 29 * 79


def test_mesh_has_no_skin_across_a_depth_step():
    vertices, triangles = depth_to_mesh(step_depth(), CAM)
    corner = vertices[triangles][..., 2]
    assert not np.any((corner.min(axis=1) < 10.0) & (corner.max(axis=1) > 20.0))
    assert len(triangles) > 0.97 * 2 * 119 * 319  # only the outline of the box is cut
    rendered = render_depth(vertices, triangles, CAM, offset=(0.3, 0.4))
    hit = rendered > 0
    assert np.all(np.isclose(rendered[hit], 8.0, atol=1e-3) | np.isclose(rendered[hit], 30.0,
                                                                          atol=1e-3))


def test_mesh_keeps_three_valid_corners_and_drops_invalid():
    depth = np.full((120, 320), 10.0)
    depth[0, 1] = np.nan  # the top-right corner of the first quad
    depth[50, 50] = 0.0
    depth[70, 70] = 500.0
    vertices, triangles = depth_to_mesh(depth, CAM, max_depth=100.0)
    used = np.unique(triangles)
    assert not {1, 50 * 320 + 50, 70 * 320 + 70} & set(used.tolist())
    assert 0 in used  # the first quad's other triangle survives


def test_fill_small_holes_closes_gaps_only_inside():
    depth = np.zeros((40, 40), np.float32)
    depth[10:30, 10:30] = 20.0
    depth[10:30, 20:30] = 10.0
    depth[15:17, 18:20] = 0.0  # a 2x2 hole beside the nearer half
    filled = fill_small_holes(depth)
    assert depth[15, 18] == 0.0  # input untouched
    assert filled[15, 18] == pytest.approx(10.0)  # the nearer neighbour fills it
    assert np.all(filled[:10] == 0) and np.all(filled[:, :10] == 0)  # nothing grows outside


# --- LiDAR from depth -------------------------------------------------------------------------

KITTI_LIKE = PinholeCamera.from_intrinsics(721.5, 721.5, 609.6, 172.9, 1242, 375)


def road_scene():
    """Road (1.65 m below the camera), a box and a wall, in the camera optical frame."""
    ground = (np.array([[-60, 1.65, 0.5], [60, 1.65, 0.5], [60, 1.65, 90], [-60, 1.65, 90]]),
              np.array([[0, 1, 2], [0, 2, 3]]))
    return merge(ground, box((-1.5, 0.0, 8.0), (1.0, 1.65, 10.5)),
                 box((3.0, -1.0, 15.0), (5.0, 1.65, 17.0)), box((-40, -8, 45), (40, 1.65, 46)))


def test_from_depth_agrees_with_direct_simulation():
    """Acceptance: LiDAR simulated from a scene's depth map matches the LiDAR simulated on the
    scene's true mesh from the same pose: >= 90% of the common pixels within 0.2 m."""
    vertices, triangles = road_scene()
    depth = render_depth(vertices, triangles, KITTI_LIKE)
    model, pose = LIDAR_MODELS["hdl64"], default_camera_from_lidar()
    from_depth, points, used = simulate_lidar_from_depth(depth, KITTI_LIKE, model, None,
                                                         np.random.default_rng(1))
    np.testing.assert_array_equal(used, pose)
    direct = project_to_depth(simulate_lidar(RayCaster(vertices, triangles), model, pose,
                                             np.random.default_rng(1)), KITTI_LIKE, pose)
    both = (from_depth > 0) & (direct > 0)
    assert both.sum() > 0.9 * (direct > 0).sum() and both.sum() > 5000
    assert np.mean(np.abs(from_depth[both] - direct[both]) <= 0.2) >= 0.9
    # Every returned point is in the image and the image holds one pixel per surviving point.
    assert (from_depth > 0).sum() <= len(points)
    assert 0.02 <= np.mean(from_depth > 0) <= 0.08


def test_from_depth_agrees_with_direct_simulation_of_a_synthetic_world_frame():
    """The same acceptance check on a frame of the procedural world (sim.world / render / rig)."""
    from dmd3c_ros.training.sim.render import render_camera
    from dmd3c_ros.training.sim.rig import make_rig
    from dmd3c_ros.training.sim.world import generate_scene
    rig = make_rig("front", image_scale=0.5)
    mount = rig.cameras[0]
    scene = generate_scene(4, length_m=80.0)
    world = scene.at(1.0)
    world_from_camera = scene.ego_pose(1.0) @ mount.base_from_camera
    _, gt = render_camera(world, mount.camera, world_from_camera, np.random.default_rng(0))
    camera_from_lidar = rig.lidar_to_camera(mount)
    model = LIDAR_MODELS["hdl64"]
    from_depth, _, _ = simulate_lidar_from_depth(gt, mount.camera, model, camera_from_lidar,
                                                 np.random.default_rng(1))
    direct_points = simulate_lidar(world.caster(), model, world_from_camera @ camera_from_lidar,
                                   np.random.default_rng(1))
    direct = project_to_depth(direct_points, mount.camera, camera_from_lidar)
    both = (from_depth > 0) & (direct > 0)
    assert both.sum() > 1000
    assert np.mean(np.abs(from_depth[both] - direct[both]) <= 0.2) >= 0.9


def test_lidar_shadow_comes_from_its_own_viewpoint():
    """A LiDAR 0.5 m right of the camera cannot see the wall just left of the near box, which the
    camera sees: from the LiDAR the box's left edge (x = -1.5 m at 8 m) hides the wall (45 m) from
    x = -10.4 to -8.4 m (columns 442-474) below y = 0.36 m (row 179; the LiDAR looks over the box
    top from 0.08 m higher). The mesh holds that wall, so only the ray casting from the LiDAR's
    own pose leaves the band empty, as in the true scene."""
    vertices, triangles = road_scene()
    depth = render_depth(vertices, triangles, KITTI_LIKE)
    band = (slice(181, 198), slice(446, 471))
    assert np.all(np.abs(depth[band] - 45.0) < 0.1)  # the camera sees the wall there
    model = LIDAR_MODELS["hdl64"]
    right = default_camera_from_lidar((0.5, -0.08, -0.27))
    centred, _, _ = simulate_lidar_from_depth(depth, KITTI_LIKE, model, None,
                                              np.random.default_rng(0))
    shadowed, _, _ = simulate_lidar_from_depth(depth, KITTI_LIKE, model, right,
                                               np.random.default_rng(0))
    truth = project_to_depth(simulate_lidar(RayCaster(vertices, triangles), model, right,
                                            np.random.default_rng(0)), KITTI_LIKE, right)
    assert np.count_nonzero(centred[band]) > 20
    assert np.count_nonzero(shadowed[band]) == 0 and np.count_nonzero(truth[band]) == 0


def test_randomised_pose_stays_near_the_given_pose():
    rng = np.random.default_rng(3)
    base = default_camera_from_lidar((0.2, -0.3, -0.5))
    _, _, pose = simulate_lidar_from_depth(step_depth(), CAM, LIDAR_MODELS["vlp16"], base, rng,
                                           randomise_pose=True, pose_jitter=(0.1, 2.0))
    assert np.all(np.abs(pose[:3, 3] - base[:3, 3]) <= 0.1 + 1e-9)
    turn = np.degrees(np.arccos(np.clip((np.trace(base[:3, :3].T @ pose[:3, :3]) - 1) / 2, -1, 1)))
    assert 0 < turn <= 2.0 * np.sqrt(3) + 1e-6
    np.testing.assert_allclose(pose[:3, :3] @ pose[:3, :3].T, np.eye(3), atol=1e-12)
    _, _, fixed = simulate_lidar_from_depth(step_depth(), CAM, LIDAR_MODELS["vlp16"], base, rng)
    np.testing.assert_array_equal(fixed, base)


def column_gaps(mask):
    """Gaps (pixels) between consecutive True pixels down each column of ``mask``."""
    gaps = [np.diff(np.flatnonzero(column)) for column in mask.T]
    return np.concatenate([g for g in gaps if len(g)])


def test_from_real_kitti_ground_truth_has_ring_structure(kitti_dc):
    """Acceptance: HDL-64 simulated from the real semi-dense ground truth (small holes closed
    for meshing) covers 2-8% of the full 1242x375 frame, in scan lines.

    Scan lines, read off the image alone: along a row the returns of one ring follow each other
    every 0.18 deg (2-3 px), while down a column consecutive returns come from different rings,
    at least one ring spacing (1/3 deg, about 4 px) apart. So horizontal gaps are short and
    vertical gaps long. The real sweep's sparse map passes the same check; a random 2.5%
    sample (long gaps both ways) and the semi-dense ground truth (short gaps both ways) fail it.
    """
    calib = load_kitti_calibration(kitti_dc)
    gt = read_kitti_depth(kitti_dc / "groundtruth_02.png")
    sparse, points, pose = simulate_lidar_from_depth(
        fill_small_holes(gt), calib.camera, LIDAR_MODELS["hdl64"], calib.lidar_to_camera,
        np.random.default_rng(0))
    assert sparse.shape == (375, 1242)
    assert 0.02 <= np.mean(sparse > 0) <= 0.08

    def scan_lines(mask):
        vertical, horizontal = column_gaps(mask), column_gaps(mask.T)
        return (np.mean(vertical > 1) >= 0.95 and np.median(vertical) >= 3
                and np.median(horizontal) <= 3 and np.mean(horizontal <= 3) >= 0.7)

    assert scan_lines(sparse > 0)
    assert scan_lines(read_kitti_depth(kitti_dc / "velodyne_raw_02.png") > 0)
    assert not scan_lines(gt > 0)
    assert not scan_lines(np.random.default_rng(0).random(gt.shape) < 0.025)
    # The rings themselves: each ring's returns form a line in the image whose row changes by
    # about a pixel at most between neighbouring azimuths.
    uv, _ = calib.camera.project(points[:, :3] @ pose[:3, :3].T + pose[:3, 3])
    lines = 0
    for ring in np.unique(points[:, 4]):
        rows = uv[points[:, 4] == ring]
        if len(rows) >= 100:
            order = np.argsort(rows[:, 0])
            lines += np.median(np.abs(np.diff(rows[order, 1]))) <= 1.0
    assert lines >= 30
