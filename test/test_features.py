"""The residual student's feature maps made by the runtime (core.features) and the bands that
per-frame work is split into (core.strips)."""
import threading

import numpy as np
import pytest

from dmd3c_ros.core.classical import complete_classical
from dmd3c_ros.core.features import FEATURES, residual_features
from dmd3c_ros.core.io import read_kitti_depth
from dmd3c_ros.core.strips import band_count, run_bands


def _inputs(shape, seed=0, share=0.05):
    rng = np.random.default_rng(seed)
    sparse = np.where(rng.random(shape) < share, rng.uniform(0.02, 1.0, shape), 0)
    sparse = sparse.astype(np.float32)
    classical = np.nan_to_num(complete_classical(sparse * 120.0, max_depth=120.0), nan=0.0)
    return sparse, (classical / 120.0).astype(np.float32)


# (4, 1) and (1, 4): OpenCV takes a 4x1 array for a scalar in some calls (core.classical, _mask)
@pytest.mark.parametrize("shape", [(352, 1216), (64, 128), (5, 3), (1, 1), (70, 130), (4, 1),
                                   (1, 4)])
def test_the_maps_are_the_training_graphs(shape):
    torch = pytest.importorskip("torch")
    from dmd3c_ros.training.residual import classical_features
    sparse, classical = _inputs(shape, seed=sum(shape))
    classical[: shape[0] // 3] = 0.0          # no classical value in the top third
    expected = classical_features(torch.from_numpy(sparse)[None, None],
                                  torch.from_numpy(classical)[None, None])[0].numpy()
    got = residual_features(sparse, classical)
    assert got.shape == (FEATURES,) + shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)


def test_the_maps_of_the_real_kitti_frame_are_the_training_graphs(kitti_dc):
    torch = pytest.importorskip("torch")
    from dmd3c_ros.training.residual import classical_features
    metres = read_kitti_depth(kitti_dc / "velodyne_raw_02.png")
    sparse = (metres / 120.0).astype(np.float32)
    classical = np.nan_to_num(complete_classical(metres, max_depth=120.0), nan=0.0)
    classical = (classical / 120.0).astype(np.float32)
    expected = classical_features(torch.from_numpy(sparse)[None, None],
                                  torch.from_numpy(classical)[None, None])[0].numpy()
    np.testing.assert_allclose(residual_features(sparse, classical), expected, atol=2e-6)


@pytest.mark.parametrize("shape", [(352, 1216), (130, 90), (64, 7)])
def test_bands_give_the_same_maps_bit_for_bit(shape):
    sparse, classical = _inputs(shape, seed=3)
    one = residual_features(sparse, classical, threads=1)
    for threads in (None, 2, 3, 4):
        np.testing.assert_array_equal(residual_features(sparse, classical, threads=threads), one)


def test_maps_are_written_into_the_given_array_and_the_inputs_kept():
    sparse, classical = _inputs((64, 96), seed=4)
    before = sparse.copy(), classical.copy()
    batch = np.full((2, FEATURES, 64, 96), np.nan, np.float32)
    target = batch[1]
    assert residual_features(sparse, classical, out=target) is target
    assert np.isfinite(batch[1]).all() and np.isnan(batch[0]).all()
    np.testing.assert_array_equal(sparse, before[0])
    np.testing.assert_array_equal(classical, before[1])


def test_what_the_maps_say_on_a_known_frame():
    sparse = np.zeros((20, 20), np.float32)
    classical = np.full((20, 20), 0.5, np.float32)
    classical[:, 10:] = 0.25            # a depth edge at column 10
    sparse[5, 5] = 0.25                 # a return nearer than the classical answer there
    maps = residual_features(sparse, classical)
    np.testing.assert_allclose(maps[0], 0.5 * np.log(classical), rtol=1e-6)
    assert (maps[1] == 1).all() and maps[3].sum() == 1 and maps[3][5, 5] == 1
    np.testing.assert_allclose(maps[4][5, 5], np.log(0.5), rtol=1e-6)   # log(0.25 / 0.5)
    assert np.count_nonzero(maps[4]) == 1
    np.testing.assert_allclose(maps[5][:, 7:13], np.log(2.0), rtol=1e-6)  # within 3 of the edge
    assert (maps[5][:, :7] == 0).all() and (maps[5][:, 13:] == 0).all()
    np.testing.assert_allclose(maps[6][5, 5], 4.0 / 81)                  # 1 return of 81
    np.testing.assert_allclose(maps[6][1, 1], 4.0 / 36)                  # a corner sees 6 x 6


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one \\(h, w\\) shape"):
        residual_features(np.zeros((4, 4), np.float32), np.zeros((4, 5), np.float32))
    with pytest.raises(ValueError, match="out must be"):
        residual_features(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32),
                          out=np.zeros((6, 4, 4), np.float32))
    with pytest.raises(ValueError, match="threads"):
        residual_features(np.zeros((4, 4), np.float32), np.zeros((4, 4), np.float32), threads=0)


def test_band_count_follows_threads_and_the_smallest_band():
    assert band_count(1, 1000, 64) == 1
    assert band_count(3, 1000, 64) == 3
    assert band_count(4, 100, 64) == 1          # a second band would be under 64
    assert band_count(8, 10_000, 1) == 8


def test_every_band_is_covered_once_with_its_context_and_errors_reach_the_caller():
    seen, lock = [], threading.Lock()

    def work(lo, hi, start, stop):
        with lock:
            seen.append((lo, hi, start, stop))

    run_bands(100, 3, 5, work, align=4)
    seen.sort(key=lambda band: band[2])
    assert [(start, stop) for _, _, start, stop in seen] == [(0, 33), (33, 66), (66, 100)]
    assert seen[1][:2] == (28, 71) and seen[2][:2] == (60, 100)   # lo rounded down to 4

    def fail(lo, hi, start, stop):
        if start:
            raise RuntimeError(f"band at {start}")

    with pytest.raises(RuntimeError, match="band at"):
        run_bands(100, 3, 0, fail)
