"""Procedural scenes and their ray-cast camera images (dmd3c_ros.training.sim.world / render)."""
import numpy as np
import pytest

pytest.importorskip("embreex")

from dmd3c_ros.core.camera import PinholeCamera  # noqa: E402
from dmd3c_ros.training.sim import world as w  # noqa: E402
from dmd3c_ros.training.sim.render import (render_camera, render_depth_only,  # noqa: E402
                                           render_labels)

FX, CX, CY, WIDTH, HEIGHT = 721.5, 609.6, 172.9, 1242, 375
HEIGHT_M = 1.65
KITTI = PinholeCamera.from_intrinsics(FX, FX, CX, CY, WIDTH, HEIGHT)
# Optical frame from base_link: z_opt = x_base, x_opt = -y_base, y_opt = -z_base.
BASE_FROM_OPTICAL = np.array([[0.0, 0.0, 1.0], [-1.0, 0.0, 0.0], [0.0, -1.0, 0.0]])


def camera_pose(x=0.0, y=0.0, z=HEIGHT_M, world_from_base=None):
    pose = np.eye(4)
    pose[:3, :3] = BASE_FROM_OPTICAL
    pose[:3, 3] = (x, y, z)
    return pose if world_from_base is None else world_from_base @ pose


def ground_world(extent=600.0):
    b = w.MeshBuilder()
    b.add_quads([[(-10, -extent, 0), (extent, -extent, 0), (extent, extent, 0),
                  (-10, extent, 0)]], (90, 90, 90), w.ROAD, 0.1)
    return b.build()


def box_world(near=10.0):
    b = w.MeshBuilder()
    b.add_box((2.0, 4.0, 3.0), (near + 1.0, 0.0, 1.5), (200, 50, 50), w.VEHICLE, 0.5)
    return b.build()


@pytest.fixture(scope="module")
def scene():
    return w.generate_scene(7, length_m=80.0)


def test_same_seed_same_scene_and_image():
    a, b = w.generate_scene(3, length_m=40.0), w.generate_scene(3, length_m=40.0)
    wa, wb = a.at(1.5), b.at(1.5)
    for name in ("vertices", "triangles", "colors", "materials", "reflectivity"):
        np.testing.assert_array_equal(getattr(wa, name), getattr(wb, name))
    np.testing.assert_array_equal(wa.sun_direction, wb.sun_direction)
    pose = camera_pose(world_from_base=a.ego_pose(1.5))
    rgb_a, depth_a = render_camera(wa, KITTI, pose)
    rgb_b, depth_b = render_camera(wb, KITTI, pose)
    np.testing.assert_array_equal(rgb_a, rgb_b)
    np.testing.assert_array_equal(depth_a, depth_b)


def test_different_seeds_differ():
    a, b = w.generate_scene(1, length_m=40.0).at(0.0), w.generate_scene(2, length_m=40.0).at(0.0)
    assert a.triangle_count != b.triangle_count or not np.array_equal(a.vertices, b.vertices)
    assert not np.array_equal(a.sky_color, b.sky_color)


def test_flat_ground_depth_matches_the_pinhole_model():
    depth = render_depth_only(ground_world(), KITTI, camera_pose())
    rows = np.arange(HEIGHT)
    with np.errstate(divide="ignore"):
        expected = FX * HEIGHT_M / (rows - CY)  # fy * h / (v - cy) below the horizon
    near = (rows > CY) & (expected < 300.0)
    assert near.sum() > 150
    np.testing.assert_allclose(depth[near], np.repeat(expected[near, None], WIDTH, 1), atol=0.01)
    assert np.isnan(depth[rows < CY]).all()  # above the horizon: sky


def test_box_at_known_distance():
    depth = render_depth_only(box_world(10.0), KITTI, camera_pose())
    np.testing.assert_allclose(depth[150:200, 560:660], 10.0, atol=1e-3)
    assert np.isnan(depth[:, :200]).all()  # beside the box: nothing


def test_right_stereo_camera_sees_from_its_own_centre():
    baseline = 0.54
    P = np.array([[FX, 0, CX, -FX * baseline], [0, FX, CY, 0], [0, 0, 1, 0]])
    right = PinholeCamera.from_projection(P, WIDTH, HEIGHT)
    # The pose is the left camera's frame, the one P projects from.
    depth = render_depth_only(box_world(10.0), right, camera_pose())
    np.testing.assert_allclose(depth[170:180, 560:600], 10.0, atol=1e-3)
    # The box's left edge (y = +2 m, i.e. x_opt = -2 m) lands where P projects it.
    uv, _ = right.project(np.array([[-2.0, 0.0, 10.0]]))
    row = depth[int(CY)]
    first = int(np.flatnonzero(np.isfinite(row))[0])
    assert abs(first - uv[0, 0]) <= 1.0
    left = render_depth_only(box_world(10.0), KITTI, camera_pose())
    first_left = int(np.flatnonzero(np.isfinite(left[int(CY)]))[0])
    assert first_left - first == pytest.approx(FX * baseline / 10.0, abs=1.5)  # disparity


def test_depth_reprojects_with_the_camera_model(scene):
    world = scene.at(2.0)
    tilt = w.pose_matrix(yaw=0.05) @ camera_pose(world_from_base=scene.ego_pose(2.0))
    depth = render_depth_only(world, KITTI, tilt)
    v, u = np.nonzero(np.isfinite(depth))
    pick = np.random.default_rng(0).choice(len(u), 200, replace=False)
    u, v = u[pick], v[pick]
    z = depth[v, u].astype(np.float64)
    points = np.stack([(u - CX) / FX * z, (v - CY) / FX * z, z], 1)
    uv, projected_depth = KITTI.project(points)
    np.testing.assert_allclose(uv, np.stack([u, v], 1), atol=1e-3)
    np.testing.assert_allclose(projected_depth, z)
    # And each point lies on the mesh: casting towards it from the camera hits at its range.
    world_points = points @ tilt[:3, :3].T + tilt[:3, 3]
    rays = world_points - tilt[:3, 3]
    distance, _ = world.caster().cast(tilt[:3, 3], rays)
    np.testing.assert_allclose(distance, np.linalg.norm(rays, axis=1), rtol=1e-4, atol=1e-3)


def test_empty_world_is_all_sky():
    world = w.World.empty()
    rgb, depth = render_camera(world, KITTI, camera_pose())
    assert np.isnan(depth).all()
    assert rgb.dtype == np.uint8 and rgb.shape == (HEIGHT, WIDTH, 3)
    top, bottom = rgb[:20].reshape(-1, 3).mean(0), rgb[-20:].reshape(-1, 3).mean(0)
    assert top[2] > top[0]  # blue sky
    assert not np.allclose(top, bottom, atol=2)  # a gradient, not a flat colour


def test_moving_vehicles_move_and_the_rest_stays(scene):
    a, b = scene.at(0.0), scene.at(1.0)
    assert a.triangle_count == b.triangle_count
    static = scene.static.triangle_count
    moved_vertices = ~np.all(a.vertices == b.vertices, axis=1)
    assert not moved_vertices[:len(scene.static.vertices)].any()
    vehicles = [m for m in scene.movers if m.kind != "pedestrian"]
    assert vehicles and np.all(a.materials[static:] == b.materials[static:])
    shift = scene.mover_poses(1.0)[:, :3, 3] - scene.mover_poses(0.0)[:, :3, 3]
    speeds = np.array([abs(m.speed) for m in scene.movers])
    np.testing.assert_allclose(np.linalg.norm(shift, axis=1), speeds, rtol=0.02)
    assert moved_vertices[len(scene.static.vertices):].mean() > 0.9
    directions = {np.sign(m.speed) for m in vehicles}
    assert directions == {-1.0, 1.0}  # traffic both ways


def test_ego_drives_the_right_lane_and_never_reaches_the_traffic_ahead(scene):
    start, later = scene.ego_pose(0.0), scene.ego_pose(1.0)
    assert abs(start[0, 3]) < 1.0 and start[1, 3] < 0 and start[2, 3] == 0.0
    np.testing.assert_allclose(start[:3, :3].T @ start[:3, :3], np.eye(3), atol=1e-12)
    assert np.linalg.norm(later[:3, 3] - start[:3, 3]) == pytest.approx(scene.ego_speed, rel=0.02)
    same_lane = [m for m in scene.movers
                 if m.kind != "pedestrian" and abs(m.lateral - scene.ego_lateral) < 1.0]
    for t in np.linspace(0.0, scene.duration_s, 9):
        ego_s = scene.ego_start_s + scene.ego_speed * t
        for m in same_lane:
            assert m.s0 + m.speed * t - ego_s > 5.0


def test_materials_and_reflectivity_line_up(scene):
    world = scene.at(0.0)
    count = world.triangle_count
    assert 1000 < count < 300_000
    assert world.colors.shape == (count, 3) and world.colors.dtype == np.uint8
    assert world.materials.shape == (count,) and world.materials.dtype == np.int16
    assert world.reflectivity.shape == (count,) and world.reflectivity.dtype == np.float32
    assert world.reflectivity.min() >= 0 and world.reflectivity.max() <= 1
    present = set(np.unique(world.materials).tolist())
    assert {w.ROAD, w.LANE_MARKING, w.CURB, w.SIDEWALK, w.BUILDING, w.WINDOW, w.VEHICLE, w.POLE,
            w.VEGETATION, w.PEDESTRIAN} <= present
    refl = {m: world.reflectivity[world.materials == m].mean() for m in present}
    assert refl[w.LANE_MARKING] > 2 * refl[w.ROAD]
    if w.SIGN in present:
        assert refl[w.SIGN] > 0.9
    np.testing.assert_allclose(np.linalg.norm(world.normals(), axis=1), 1.0, atol=1e-5)
    with pytest.raises(ValueError):
        w.World(world.vertices, world.triangles, world.colors[:-1], world.materials,
                world.reflectivity)


def test_street_image_looks_like_a_street(scene):
    world = scene.at(3.0)
    pose = camera_pose(x=1.0, world_from_base=scene.ego_pose(3.0))
    rgb, depth = render_camera(world, KITTI, pose)
    assert rgb.dtype == np.uint8 and rgb.shape == (HEIGHT, WIDTH, 3)
    assert rgb.std() > 15 and len(np.unique(rgb.reshape(-1, 3), axis=0)) > 1000
    labels = render_labels(world, KITTI, pose)
    bottom = labels[-30:, 450:800]
    assert np.mean((bottom == w.ROAD) | (bottom == w.LANE_MARKING)) > 0.8
    assert np.isfinite(depth[-30:]).all() and np.nanmax(depth) > 50
    upper = labels[:60]
    assert np.isin(upper, [w.SKY, w.BUILDING, w.WINDOW, w.VEGETATION, w.POLE]).mean() > 0.8
    sides = np.concatenate([labels[:150, :150].ravel(), labels[:150, -150:].ravel()])
    assert np.isin(sides, [w.BUILDING, w.WINDOW, w.VEGETATION, w.POLE, w.VEHICLE]).mean() > 0.3


def test_inputs_are_not_mutated_and_world_arrays_are_read_only():
    vertices = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0]], np.float32)
    world = w.World(vertices, [[0, 1, 2]], [[1, 2, 3]], [w.ROAD], [0.5])
    assert vertices.flags.writeable
    with pytest.raises(ValueError):
        world.vertices[0, 0] = 1.0


def test_sun_casts_a_shadow_on_the_far_side_of_a_box():
    b = w.MeshBuilder()
    b.add_quads([[(-10, -50, 0), (100, -50, 0), (100, 50, 0), (-10, 50, 0)]], (128, 128, 128),
                w.ROAD, 0.1)
    b.add_box((2.0, 2.0, 4.0), (25.0, 0.0, 2.0), (128, 128, 128), w.BUILDING, 0.4)
    world = b.build(sun_direction=(0.0, 1.0, 1.0), sun_intensity=1.0, ambient=0.3)
    pose = camera_pose(z=6.0)  # a little higher, to see the ground beside the box
    rgb, depth = render_camera(world, KITTI, pose, noise=0.0, blur_sigma=0.0)
    # Ground 3 m beside the box: y = -3 (right of the camera, u > cx) lies in the shadow
    # (the sun shines from +y), y = +3 (left, u < cx) does not.
    uv, _ = KITTI.project(np.array([[3.0, 6.0, 25.0], [-3.0, 6.0, 25.0]]))
    shaded, lit = (rgb[int(round(v)), int(round(u))].astype(int) for u, v in uv)
    assert np.isfinite(depth[int(round(uv[0, 1])), int(round(uv[0, 0]))])
    assert lit.mean() > shaded.mean() + 40
    unshadowed, _ = render_camera(world, KITTI, pose, shadows=False, noise=0.0, blur_sigma=0.0)
    u, v = np.round(uv[0]).astype(int)
    assert unshadowed[v, u].mean() == pytest.approx(lit.mean(), abs=20)
