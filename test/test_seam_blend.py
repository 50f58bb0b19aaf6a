"""core.seam_blend: two views of one wall (exact geometry, test_core_surround's rig) that meet
halfway at their seam."""
from __future__ import annotations

import numpy as np
import pytest

from dmd3c_ros.core.seam_blend import SeamBlender
from dmd3c_ros.core.surround import pair_disagreement

from test_core_surround import CAMERA, wall_depth, yaw

A_FROM_LIDAR, B_FROM_LIDAR = yaw(25.0, (0.4, 0.1, 0.0)), yaw(0.0)


def views(scale_b: float):
    return wall_depth(CAMERA, A_FROM_LIDAR), wall_depth(CAMERA, B_FROM_LIDAR) * scale_b


def blender(tolerance: float = 0.05) -> SeamBlender:
    return SeamBlender([CAMERA, CAMERA], [A_FROM_LIDAR, B_FROM_LIDAR], [(0, 1)],
                       tolerance=tolerance)


def disagreement(a, b) -> dict:
    return pair_disagreement(a, CAMERA, A_FROM_LIDAR, b, CAMERA, B_FROM_LIDAR)


def test_views_within_the_tolerance_meet_halfway():
    depth_a, depth_b = views(1.04)          # B 4 % too far: the same surface within 5 %
    before = disagreement(depth_a, depth_b)
    assert before["median_rel_pct"] == pytest.approx(100 * 0.04 / 1.02, rel=1e-3)
    kept_a, kept_b = depth_a.copy(), depth_b.copy()
    out_a, out_b = blender()([depth_a, depth_b])
    np.testing.assert_array_equal(depth_a, kept_a)   # inputs untouched
    np.testing.assert_array_equal(depth_b, kept_b)
    after = disagreement(out_a, out_b)
    assert after["pixels"] == before["pixels"]
    # Down to pixel rounding: exact views of the wall disagree by up to 0.2 % (p90) where B's
    # points land between A's pixel centres, and so do the moves made there.
    rounding = disagreement(*views(1.0))["p90_rel_pct"]
    assert 0.1 < rounding < 0.3
    assert after["median_rel_pct"] < rounding / 2 < before["median_rel_pct"] / 20
    # Halfway: A's compared pixels move 2 % out, B's 2 % in (the geometric mean of 1 and 1.04);
    # exactly for A (B's depth is the same on every pixel), to A's pixel rounding for B.
    moved_a = np.isfinite(out_a) & (np.abs(out_a / depth_a - 1) > 1e-6)
    middle = np.sqrt(1.04)
    np.testing.assert_allclose((out_a / depth_a)[moved_a], middle, rtol=1e-4)
    moved_b = np.isfinite(out_b) & (np.abs(out_b / depth_b - 1) > 1e-6)
    np.testing.assert_allclose((out_b / depth_b)[moved_b], 1.0 / middle, rtol=2e-3)
    # Only where the views overlap: the rest of each view keeps its depth exactly.
    assert 1000 < moved_a.sum() < np.isfinite(depth_a).sum()
    np.testing.assert_array_equal(out_a[~moved_a], depth_a[~moved_a])


def test_a_pixel_met_from_both_sides_moves_once_by_the_mean():
    # Three cameras 20 degrees apart on one wall: the middle view's two bands overlap, and
    # where both neighbours see its pixels it meets each halfway once (not twice).
    rig = [yaw(-20.0), yaw(0.0), yaw(20.0, (0.1, 0.0, 0.05))]
    blend = SeamBlender([CAMERA] * 3, rig, [(0, 1), (1, 2)])
    left, right = (band for i, _, band, _, _ in blend.directions if i == 1)
    assert left[1].stop > right[1].start          # the bands overlap
    depths = [wall_depth(CAMERA, t) for t in rig]
    depths[1] = depths[1] * np.float32(1.04)      # the middle view 4 % too far
    out = blend(depths)[1]
    ratio = out / depths[1]
    moved = np.isfinite(ratio) & (np.abs(ratio - 1) > 1e-6)
    # Every moved pixel went halfway to its neighbour(s), one or both: 1 / sqrt(1.04) up to
    # the neighbours' pixel rounding; moved twice it would be about 1 / 1.04.
    np.testing.assert_allclose(ratio[moved], 1.0 / np.sqrt(1.04), rtol=3e-3)
    both = np.zeros(moved.shape, bool)
    both[:, right[1].start:left[1].stop] = True
    assert (moved & both).sum() > 500
    # The views are blended side by side (each reads the others and writes its own): the same
    # answer bit for bit in the calling thread alone and on three threads.
    for alone, shared in zip(blend(depths, threads=1), blend(depths, threads=3)):
        np.testing.assert_array_equal(alone, shared)


def test_views_beyond_the_tolerance_keep_their_depths():
    depth_a, depth_b = views(1.10)          # 10 %: not taken for the same surface at 5 %
    out_a, out_b = blender(0.05)([depth_a, depth_b])
    np.testing.assert_array_equal(out_a, depth_a)
    np.testing.assert_array_equal(out_b, depth_b)
    out_a, out_b = blender(0.15)([depth_a, depth_b])   # ... but at 15 % it is
    assert disagreement(out_a, out_b)["median_rel_pct"] < 0.1


def test_no_depth_no_overlap_and_bad_arguments():
    depth_a, depth_b = views(1.0)
    empty = np.full_like(depth_b, np.nan)
    out_a, out_b = blender()([depth_a, empty])   # nothing to meet: A unchanged, B all NaN
    np.testing.assert_array_equal(out_a, depth_a)
    assert np.isnan(out_b).all()
    apart = SeamBlender([CAMERA, CAMERA], [yaw(0.0), yaw(180.0)], [(0, 1)])
    assert apart.directions == []                # back to back: no band, no cost
    np.testing.assert_array_equal(apart([depth_a, depth_b])[0], depth_a)
    rig = blender()
    assert rig.matches([CAMERA, CAMERA], [A_FROM_LIDAR, B_FROM_LIDAR])
    assert not rig.matches([CAMERA, CAMERA], [B_FROM_LIDAR, A_FROM_LIDAR])
    assert not rig.matches([CAMERA], [A_FROM_LIDAR])
    with pytest.raises(ValueError, match="tolerance"):
        SeamBlender([CAMERA], [A_FROM_LIDAR], [], tolerance=0.0)
    with pytest.raises(ValueError, match="depth images for 2 cameras"):
        rig([depth_a])
    with pytest.raises(ValueError, match="shape"):
        rig([depth_a, depth_b[:-1]])


def test_pipeline_blends_the_views_of_a_batch():
    from dmd3c_ros.runtime.classical_backend import ClassicalBackend
    from dmd3c_ros.runtime.pipeline import CompletionPipeline, View
    # A LiDAR grid on the wall (z = 12 m in the LiDAR frame), seen by both cameras.
    x, y = np.meshgrid(np.linspace(-20, 20, 400), np.linspace(-6, 6, 60))
    points = np.stack([x.ravel(), y.ravel(), np.full(x.size, 12.0)], 1).astype(np.float32)
    views = [View(np.zeros((CAMERA.height, CAMERA.width, 3), np.uint8), CAMERA, points, t)
             for t in (A_FROM_LIDAR, B_FROM_LIDAR)]
    pipeline = CompletionPipeline(ClassicalBackend())
    raw = pipeline.run_batch(views, uncertainty=False)
    blended = pipeline.run_batch(views, uncertainty=False, seams=blender())
    assert "seams" in blended.timings_ms and "seams" not in raw.timings_ms
    before = disagreement(*[r.depth for r in raw.results])
    after = disagreement(*[r.depth for r in blended.results])
    assert after["median_rel_pct"] <= before["median_rel_pct"]
    for r, b in zip(raw.results, blended.results):
        assert np.array_equal(np.isnan(r.depth), np.isnan(b.depth))  # the same pixels
        np.testing.assert_allclose(b.depth, r.depth, rtol=0.026)      # moved <= half of 5 %
