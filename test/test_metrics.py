import numpy as np
import pytest

from dmd3c_ros.core.metrics import (average_metrics, depth_metrics, interpolate_background,
                                    paired_metrics)


def test_metrics_by_hand():
    gt = np.array([[2.0, 0.0], [4.0, 5.0]])
    pred = np.array([[2.5, 1.0], [4.0, 4.0]])
    m = depth_metrics(pred, gt)
    # errors 0.5, 0, -1 m; inverse errors (1/km) -100, 0, 50
    assert m["pixels"] == 3
    assert m["rmse_mm"] == pytest.approx(np.sqrt((0.25 + 1.0) / 3) * 1000)
    assert m["mae_mm"] == pytest.approx(500.0)
    assert m["irmse_per_km"] == pytest.approx(np.sqrt((100.0 ** 2 + 50.0 ** 2) / 3))
    assert m["imae_per_km"] == pytest.approx(50.0)
    assert m["abs_rel"] == pytest.approx((0.25 + 0.2) / 3)
    assert m["sq_rel"] == pytest.approx((0.25 / 2 + 1.0 / 5) / 3)
    assert m["delta1"] == pytest.approx(1 / 3)  # ratios 1.25, 1, 1.25: strict inequality
    assert m["delta2"] == 1.0
    # the same pairs as values at the ground truth's pixels: the same figures
    assert paired_metrics(np.array([2.5, 4.0, 4.0]), np.array([2.0, 4.0, 5.0])) == m
    with pytest.raises(ValueError):
        paired_metrics(np.ones(2), np.ones(3))


def test_devkit_background_interpolation_rows():
    pred = np.array([[0.0, 3.0, 0.0, 0.0, 5.0, 0.0]])
    np.testing.assert_array_equal(interpolate_background(pred), [[3, 3, 3, 3, 5, 5]])
    # The gap takes the farther? No: the smaller (background rule of the devkit) of its bounds.
    pred = np.array([[9.0, np.nan, -1.0, 2.0]])
    np.testing.assert_array_equal(interpolate_background(pred), [[9, 2, 2, 2]])


def test_devkit_background_interpolation_columns():
    pred = np.array([[0, 0, 0], [0, 2, 0], [0, 0, 0], [7, 0, 1]], dtype=float)
    expected = [[2, 2, 2], [2, 2, 2], [-1, -1, -1], [7, 1, 1]]
    np.testing.assert_array_equal(interpolate_background(pred), expected)


def test_holes_are_filled_before_scoring_unless_disabled():
    gt = np.array([[2.0, 2.0, 2.0]])
    pred = np.array([[2.0, np.nan, 4.0]])
    filled = depth_metrics(pred, gt)
    assert filled["pixels"] == 3 and filled["mae_mm"] == pytest.approx(2000 / 3)
    only = depth_metrics(pred, gt, fill_missing=False)
    assert only["pixels"] == 2 and only["mae_mm"] == pytest.approx(1000.0)


def test_no_ground_truth_gives_nan_and_average_skips_it():
    empty = depth_metrics(np.ones((2, 2)), np.zeros((2, 2)))
    assert empty["pixels"] == 0 and np.isnan(empty["rmse_mm"])
    a = depth_metrics(np.array([[1.0]]), np.array([[2.0]]))
    b = depth_metrics(np.array([[3.0]]), np.array([[2.0]]))
    avg = average_metrics([a, empty, b])
    assert avg["frames"] == 2 and avg["rmse_mm"] == pytest.approx(1000.0)
    # The average is over images, not pixels.
    c = depth_metrics(np.full((1, 3), 2.0), np.full((1, 3), 2.0))
    assert average_metrics([a, c])["mae_mm"] == pytest.approx(500.0)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape"):
        depth_metrics(np.ones((2, 2)), np.ones((2, 3)))


def test_inputs_not_mutated():
    pred = np.array([[0.0, 3.0, 0.0]])
    before = pred.copy()
    interpolate_background(pred)
    depth_metrics(pred, np.ones((1, 3)))
    np.testing.assert_array_equal(pred, before)


def test_distance_bands_score_only_their_pixels():
    from dmd3c_ros.core.metrics import band_masks, frame_metrics
    gt = np.array([[5.0, 25.0, 60.0, 80.0, 90.0, 0.0]])
    pred = gt + np.array([[1.0, 2.0, 3.0, 4.0, 5.0, 0.0]])
    masks = band_masks(gt)
    assert [masks[b].sum() for b in ("0-20", "20-40", "40-80")] == [1, 1, 2]  # 90 m in none
    metrics, bands = frame_metrics(pred, gt)
    assert bands["0-20"]["mae_mm"] == pytest.approx(1000.0)
    assert bands["40-80"]["mae_mm"] == pytest.approx(3500.0)
    assert metrics["pixels"] == 5


def test_coverage_bands_by_exact_distance_to_the_nearest_return():
    from dmd3c_ros.core.metrics import COVERAGE, coverage_masks, masked_metrics
    sparse = np.zeros((12, 14), np.float32)
    sparse[5, 5] = 10.0
    gt = np.zeros((12, 14))
    # (row, col): distance to the return at (5, 5) in pixels
    for pixel, label in (((5, 5), "0"), ((6, 6), "0-2"), ((5, 7), "0-2"), ((7, 7), "2-4"),
                         ((5, 9), "2-4"), ((8, 8), "4+"), ((5, 10), "4+")):
        gt[pixel] = 20.0
    masks = coverage_masks(sparse, gt)
    assert list(masks) == [label for label, _, _ in COVERAGE]
    assert {k: int(v.sum()) for k, v in masks.items()} == {"0": 1, "0-2": 2, "2-4": 2, "4+": 2}
    assert masks["0-2"][5, 7] and masks["2-4"][7, 7] and masks["2-4"][5, 9]  # 2, 2.83, 4 px
    assert masks["4+"][8, 8] and not masks["4+"][5, 5]                       # 4.24 px
    # every ground-truth pixel in exactly one band
    assert (sum(m.astype(int) for m in masks.values()) == (gt > 0)).all()
    prediction = np.where(gt > 0, gt, np.nan)
    prediction[8, 8] = 23.0                  # the one error, 4.24 px from the return
    figures = masked_metrics(prediction, gt, masks)
    assert figures["4+"]["mae_mm"] == pytest.approx(1500.0)  # (3 + 0) / 2 m
    assert figures["0"]["mae_mm"] == figures["2-4"]["mae_mm"] == 0.0
    # no return at all (mono mode): no coverage to speak of; sizes must match
    assert coverage_masks(np.zeros_like(sparse), gt) == {}
    with pytest.raises(ValueError, match="differ in size"):
        coverage_masks(sparse[:-1], gt)


def test_frame_and_masked_metrics_are_frame_metrics_and_masked_metrics_from_one_fill():
    from dmd3c_ros.core.metrics import (coverage_masks, frame_and_masked_metrics, frame_metrics,
                                        masked_metrics)
    rng = np.random.default_rng(3)
    gt = np.where(rng.random((40, 60)) < 0.3, rng.uniform(1, 79, (40, 60)), 0.0)
    prediction = np.where(rng.random((40, 60)) < 0.8, gt * rng.uniform(0.9, 1.1, gt.shape),
                          np.nan)                        # holes the devkit fill closes
    sparse = np.where(rng.random((40, 60)) < 0.05, 10.0, 0.0)
    masks = coverage_masks(sparse, gt)
    metrics, bands, covered = frame_and_masked_metrics(prediction, gt, masks)
    assert (metrics, bands) == frame_metrics(prediction, gt)
    assert covered == masked_metrics(prediction, gt, masks)
