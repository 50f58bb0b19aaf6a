"""Pure core, synthetic data: cross-view consistency (core.surround), the nuScenes sample loader
(core.nuscenes_sample) and the sweep-level LiDAR holdout (evaluation.lidar_split.split_sweep)."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from dmd3c_ros.core.camera import CalibrationError, PinholeCamera
from dmd3c_ros.core.io import InputFileError
from dmd3c_ros.core.nuscenes_sample import CAMERAS, load_nuscenes_sample, ring_order
from dmd3c_ros.core.projection import project_to_depth
from dmd3c_ros.core.surround import (FIGURES, fuse_views, mean_figures, overlap_disagreement,
                                     pair_disagreement, ring_pairs, seam_map)
from dmd3c_ros.evaluation.lidar_split import every_nth, holdout_every_mask, split_sweep

CAMERA = PinholeCamera.from_intrinsics(80.0, 80.0, 63.5, 47.5, 128, 96)
PLANE_Z = 12.0  # metres: a wall at LiDAR-frame z = 12 (LiDAR frame: z forward here)


def yaw(degrees: float, translation=(0.0, 0.0, 0.0)) -> np.ndarray:
    """(4, 4) camera_from_lidar: the camera turned by ``degrees`` about the y axis (down) and
    its optical centre at ``translation`` (LiDAR frame)."""
    a = np.radians(degrees)
    lidar_from_camera = np.eye(4)
    lidar_from_camera[:3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
    lidar_from_camera[:3, 3] = translation
    return np.linalg.inv(lidar_from_camera)


def wall_depth(camera: PinholeCamera, camera_from_lidar: np.ndarray) -> np.ndarray:
    """Exact depth (metres along the optical axis) of the plane z = PLANE_Z at every pixel
    centre; NaN where the ray misses it (parallel or behind)."""
    lidar_from_camera = np.linalg.inv(camera_from_lidar)
    v, u = np.mgrid[0:camera.height, 0:camera.width].astype(np.float64)
    rays = np.stack([u, v, np.ones_like(u)], -1) @ np.linalg.inv(camera.K).T  # z = 1
    directions = rays @ lidar_from_camera[:3, :3].T
    origin_z = lidar_from_camera[2, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (PLANE_Z - origin_z) / directions[..., 2]  # ray length in units of z = 1: the depth
    return np.where(np.isfinite(s) & (s > 0), s, np.nan).astype(np.float32)


def test_ring_pairs():
    assert ring_pairs(CAMERAS) == [
        ("CAM_FRONT", "CAM_FRONT_RIGHT"), ("CAM_FRONT_RIGHT", "CAM_BACK_RIGHT"),
        ("CAM_BACK_RIGHT", "CAM_BACK"), ("CAM_BACK", "CAM_BACK_LEFT"),
        ("CAM_BACK_LEFT", "CAM_FRONT_LEFT"), ("CAM_FRONT_LEFT", "CAM_FRONT")]
    assert ring_pairs(["a", "b"]) == [("a", "b")] and ring_pairs(["a"]) == []


def test_ring_index_pairs_follow_the_ring_among_the_views_present():
    from dmd3c_ros.core.surround import ring_index_pairs
    assert ring_index_pairs(["a", "b", "c"]) == [(0, 1), (1, 2), (2, 0)]
    # views in another order, one ring camera missing: its neighbours become adjacent
    assert ring_index_pairs(["c", "a", "d"], ring=["a", "b", "c", "d"]) == [(1, 0), (0, 2),
                                                                              (2, 1)]


def test_exact_depths_of_one_plane_agree():
    # A turned 25 degrees and 0.4 m to the side, B looking straight at the wall: B's depth is
    # the same on every pixel, so the rounding to B's pixel centres costs nothing.
    a_from_lidar, b_from_lidar = yaw(25.0, (0.4, 0.1, 0.0)), yaw(0.0)
    depth_a, depth_b = wall_depth(CAMERA, a_from_lidar), wall_depth(CAMERA, b_from_lidar)
    before = depth_a.copy()
    figures = overlap_disagreement(depth_a, CAMERA, a_from_lidar, depth_b, CAMERA, b_from_lidar)
    assert figures["pixels"] > 1000                        # the views overlap
    assert figures["pixels"] < np.isfinite(depth_a).sum()  # ... but not completely
    assert figures["mean_abs_m"] < 1e-4 and figures["rmse_m"] < 1e-4  # metres: float32 only
    assert np.array_equal(before, depth_a, equal_nan=True)  # inputs untouched

    # B's depth 10 % too far: every compared A point lies 0.1 x 12 m in front of it.
    scaled = overlap_disagreement(depth_a, CAMERA, a_from_lidar, depth_b * 1.1, CAMERA,
                                  b_from_lidar)
    assert scaled["pixels"] == figures["pixels"]
    assert scaled["mean_abs_m"] == pytest.approx(0.1 * PLANE_Z, rel=1e-4)
    assert scaled["median_abs_m"] == pytest.approx(0.1 * PLANE_Z, rel=1e-4)
    assert scaled["rmse_m"] == pytest.approx(0.1 * PLANE_Z, rel=1e-4)
    assert scaled["mean_m"] == pytest.approx(-0.1 * PLANE_Z, rel=1e-4)
    assert scaled["abs_rel"] == pytest.approx(0.1 / 1.1, rel=1e-4)
    # Relative to the pair's mean depth: |12 - 13.2| / 12.6 on every compared pixel.
    assert scaled["median_rel_pct"] == pytest.approx(100 * 1.2 / 12.6, rel=1e-4)
    assert scaled["p90_rel_pct"] == pytest.approx(100 * 1.2 / 12.6, rel=1e-4)
    assert figures["median_rel_pct"] < 1e-3 and figures["p90_rel_pct"] < 1e-3
    # The seam map: that figure on exactly the compared pixels of A, NaN elsewhere.
    seams = seam_map(depth_a, CAMERA, a_from_lidar, depth_b * 1.1, CAMERA, b_from_lidar)
    assert seams.shape == depth_a.shape and np.isfinite(seams).sum() == scaled["pixels"]
    np.testing.assert_allclose(seams[np.isfinite(seams)], 100 * 1.2 / 12.6, rtol=1e-4)
    # A turned right sees B's field of view on its left side: the compared pixels lie there.
    columns = np.nonzero(np.isfinite(seams).any(axis=0))[0]
    assert columns.min() == 0 and columns.max() < CAMERA.width - 1


def test_pair_pools_both_directions_and_scaling_shows():
    # Two parallel cameras 1 m apart, both facing the wall: exact depths agree both ways.
    a_from_lidar, b_from_lidar = yaw(0.0), yaw(0.0, (1.0, 0.0, 0.0))
    depth_a, depth_b = wall_depth(CAMERA, a_from_lidar), wall_depth(CAMERA, b_from_lidar)
    one = overlap_disagreement(depth_a, CAMERA, a_from_lidar, depth_b, CAMERA, b_from_lidar)
    other = overlap_disagreement(depth_b, CAMERA, b_from_lidar, depth_a, CAMERA, a_from_lidar)
    pooled = pair_disagreement(depth_a, CAMERA, a_from_lidar, depth_b, CAMERA, b_from_lidar)
    assert pooled["pixels"] == one["pixels"] + other["pixels"] > 0
    assert pooled["mean_abs_m"] < 1e-4
    # A's depth scaled by 0.8: A's points sit at 0.8 of their distance from A's centre; for a
    # fronto-parallel wall and parallel cameras their depth in B is 0.8 x 12 m everywhere.
    half = pair_disagreement(depth_a * 0.8, CAMERA, a_from_lidar, depth_b, CAMERA, b_from_lidar)
    assert half["mean_abs_m"] == pytest.approx(0.2 * PLANE_Z, rel=1e-3)


def test_no_overlap_and_missing_values():
    a_from_lidar, b_from_lidar = yaw(0.0), yaw(180.0)       # back to back
    depth_a = wall_depth(CAMERA, a_from_lidar)
    depth_b = np.full((CAMERA.height, CAMERA.width), 5.0, np.float32)
    figures = overlap_disagreement(depth_a, CAMERA, a_from_lidar, depth_b, CAMERA, b_from_lidar)
    assert figures["pixels"] == 0 and np.isnan(figures["mean_abs_m"])
    # NaN and 0 are "no value" on either side.
    empty = np.zeros_like(depth_a)
    assert overlap_disagreement(empty, CAMERA, a_from_lidar, depth_a, CAMERA,
                                a_from_lidar)["pixels"] == 0
    holes = depth_a.copy()
    holes[:, : CAMERA.width // 2] = np.nan
    same = overlap_disagreement(depth_a, CAMERA, a_from_lidar, holes, CAMERA, a_from_lidar)
    assert same["pixels"] == np.isfinite(holes).sum() and same["mean_abs_m"] < 1e-6
    with pytest.raises(ValueError, match="does not match"):
        overlap_disagreement(depth_a, CAMERA, a_from_lidar, depth_b[:10], CAMERA, b_from_lidar)


def test_fused_views_lie_on_the_wall_in_the_lidar_frame():
    a_from_lidar, b_from_lidar = yaw(25.0, (0.4, 0.1, 0.0)), yaw(-10.0, (-0.3, 0.0, 0.2))
    depths = [wall_depth(CAMERA, a_from_lidar), wall_depth(CAMERA, b_from_lidar)]
    points, owners = fuse_views(depths, [CAMERA, CAMERA], [a_from_lidar, b_from_lidar])
    assert points.dtype == np.float32 and owners.dtype == np.int32
    assert len(points) == sum(np.isfinite(d).sum() for d in depths)
    np.testing.assert_allclose(points[:, 2], PLANE_Z, atol=1e-4)  # the wall, z = 12
    assert (owners[:np.isfinite(depths[0]).sum()] == 0).all() and owners[-1] == 1
    strided, owners2 = fuse_views(depths, [CAMERA, CAMERA], [a_from_lidar, b_from_lidar], 4)
    assert len(strided) == sum(np.isfinite(d[::4, ::4]).sum() for d in depths)
    np.testing.assert_allclose(strided[:, 2], PLANE_Z, atol=1e-4)
    empty, none = fuse_views([], [], [])
    assert empty.shape == (0, 3) and none.shape == (0,)
    with pytest.raises(ValueError, match="stride"):
        fuse_views(depths, [CAMERA, CAMERA], [a_from_lidar, b_from_lidar], 0)


def test_mean_figures_skips_empty_pairs():
    rows = [{"pixels": 10, "mean_abs_m": 1.0, "median_abs_m": 1.0, "rmse_m": 2.0,
             "abs_rel": 0.1, "mean_m": 1.0, "median_rel_pct": 4.0, "p90_rel_pct": 9.0},
            {"pixels": 30, "mean_abs_m": 3.0, "median_abs_m": 2.0, "rmse_m": 4.0,
             "abs_rel": 0.3, "mean_m": -1.0, "median_rel_pct": 2.0, "p90_rel_pct": 5.0},
            {"pixels": 0, **{k: float("nan") for k in FIGURES}}]
    mean = mean_figures(rows)
    assert mean["pairs"] == 2 and mean["pixels"] == 40
    assert mean["mean_abs_m"] == 2.0 and mean["mean_m"] == 0.0
    assert mean["median_rel_pct"] == 3.0 and mean["p90_rel_pct"] == 7.0
    assert "slivers" not in mean
    # A pair with under 40 % of the largest pair's pixels is a sliver: left out of the mean.
    slivered = mean_figures(rows, sliver=0.4)
    assert slivered["pairs"] == 1 and slivered["slivers"] == 1 and slivered["pixels"] == 30
    assert slivered["mean_abs_m"] == 3.0


# ------------------------------------------------------------------------------ holdout split

def test_split_sweep_holds_every_nth_point_for_every_camera():
    rng = np.random.default_rng(0)
    points = np.column_stack([rng.uniform(-20, 20, (2000, 2)), rng.uniform(2, 40, 2000),
                              rng.uniform(0, 1, 2000)]).astype(np.float32)
    before = points.copy()
    views = [(CAMERA, yaw(0.0)), (CAMERA, yaw(30.0))]
    kept, truths = split_sweep(points, views, 5, min_depth=0.1, max_depth=100.0)
    assert np.array_equal(points, before)
    held = holdout_every_mask(len(points), 5)
    assert held.sum() == 400 and held[0] and held[5] and not held[1:5].any()
    assert np.array_equal(kept, points[~held]) and kept.shape[1] == 4
    for (camera, T), truth in zip(views, truths):
        expected = project_to_depth(points[held], camera, T, min_depth=0.1, max_depth=100.0)
        assert np.array_equal(truth, expected) and truth.any()
    again, truths_again = split_sweep(points, views, 5)
    assert np.array_equal(again, kept) and all(np.array_equal(a, b)
                                               for a, b in zip(truths, truths_again))
    with pytest.raises(ValueError, match="holdout-every"):
        split_sweep(points, views, 1)


def test_split_sweep_offsets_hold_out_disjoint_shares_that_cover_the_sweep():
    points = np.column_stack([np.zeros(23), np.zeros(23), np.linspace(2, 40, 23)])
    masks = [holdout_every_mask(len(points), 5, k) for k in range(5)]
    assert np.array_equal(np.flatnonzero(masks[2]), [2, 7, 12, 17, 22])
    assert np.array_equal(np.sum(masks, axis=0), np.ones(23))      # each point in one share
    kept, (truth,) = split_sweep(points, [(CAMERA, np.eye(4))], 5, offset=2)
    assert np.array_equal(kept, points[~masks[2]])
    for bad in (-1, 5):
        with pytest.raises(ValueError, match="holdout-offset must lie in 0..4"):
            split_sweep(points, [(CAMERA, np.eye(4))], 5, offset=bad)


# ------------------------------------------------------------------------------ nuScenes loader

def write_sample(folder, K_front=None, sweep_bytes=None) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    K = [[100.0, 0.0, 31.5], [0.0, 100.0, 23.5], [0.0, 0.0, 1.0]]
    cameras = {}
    for index, name in enumerate(("CAM_BACK", "CAM_FRONT", "CAM_SIDE")):  # not ring order
        image = np.full((48, 64, 3), (10 * index, 20, 30), np.uint8)  # BGR on disk
        cv2.imwrite(str(folder / f"{name}.png"), image)
        cameras[name] = {"file": f"{name}.png", "K": K, "lidar2cam": yaw(90.0 * index).tolist(),
                         "timestamp": 100.0 + 0.01 * index}
    if K_front is not None:
        cameras["CAM_FRONT"]["K"] = K_front
    (folder / "calibration.json").write_text(json.dumps(
        {"lidar": {"file": "LIDAR_TOP.pcd.bin", "timestamp": 100.02}, "cameras": cameras}))
    sweep = np.arange(35, dtype="<f4").reshape(7, 5)
    (folder / "LIDAR_TOP.pcd.bin").write_bytes(sweep.tobytes() if sweep_bytes is None
                                               else sweep_bytes)


def test_load_nuscenes_sample_synthetic(tmp_path):
    write_sample(tmp_path / "s")
    sample = load_nuscenes_sample(tmp_path / "s")
    assert sample.names == ["CAM_FRONT", "CAM_BACK", "CAM_SIDE"]  # ring order, then the rest
    assert sample.points.shape == (7, 5) and sample.points.dtype == np.float32
    assert sample.lidar_stamp == 100.02 and sample.name == "s"
    back = sample.camera("CAM_BACK")
    assert back.rgb.shape == (48, 64, 3) and tuple(back.rgb[0, 0]) == (30, 20, 0)  # RGB order
    np.testing.assert_allclose(back.camera.P, np.hstack([back.camera.K, np.zeros((3, 1))]))
    np.testing.assert_allclose(back.lidar_to_camera, yaw(0.0))
    assert back.stamp == 100.0 and back.camera.size == (64, 48)
    chosen = load_nuscenes_sample(tmp_path / "s", cameras=["CAM_SIDE"])
    assert chosen.names == ["CAM_SIDE"]
    assert ring_order(["X", "CAM_BACK", "CAM_FRONT"]) == ["CAM_FRONT", "CAM_BACK", "X"]


def test_load_nuscenes_sample_errors(tmp_path):
    with pytest.raises(InputFileError, match="no such folder"):
        load_nuscenes_sample(tmp_path / "absent")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputFileError, match="calibration.json"):
        load_nuscenes_sample(tmp_path / "empty")
    write_sample(tmp_path / "zero", K_front=[[0.0] * 3] * 3)
    with pytest.raises(CalibrationError, match="CAM_FRONT: K"):
        load_nuscenes_sample(tmp_path / "zero")
    write_sample(tmp_path / "size", sweep_bytes=b"\0" * 30)
    with pytest.raises(InputFileError, match="20-byte points"):
        load_nuscenes_sample(tmp_path / "size")
    write_sample(tmp_path / "ok")
    with pytest.raises(InputFileError, match="CAM_NONE"):
        load_nuscenes_sample(tmp_path / "ok", cameras=["CAM_NONE"])
    (tmp_path / "ok" / "CAM_SIDE.png").unlink()
    with pytest.raises(InputFileError, match="CAM_SIDE.png"):
        load_nuscenes_sample(tmp_path / "ok")


def test_load_nuscenes_sample_real(nuscenes_sample):
    sample = load_nuscenes_sample(nuscenes_sample)
    assert sample.names == list(CAMERAS) and sample.points.shape == (34688, 5)
    for cam in sample.cameras:
        assert cam.rgb.shape == (900, 1600, 3) and cam.camera.size == (1600, 900)
        assert cam.stamp is not None and abs(cam.stamp - sample.lidar_stamp) < 0.1  # seconds


def test_hold_out_words_use_the_right_ordinal():
    assert [every_nth(n) for n in (2, 3, 4, 5, 11, 12, 13, 21, 22, 101)] == [
        "every 2nd point", "every 3rd point", "every 4th point", "every 5th point",
        "every 11th point", "every 12th point", "every 13th point", "every 21st point",
        "every 22nd point", "every 101st point"]
