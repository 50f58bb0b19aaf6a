import numpy as np
import pytest

from dmd3c_ros.core.classical import _extend_to_top, classical_units, complete_classical
from dmd3c_ros.core.io import read_kitti_depth
from dmd3c_ros.core.metrics import depth_metrics


def test_fills_a_plane_and_keeps_its_depth():
    sparse = np.zeros((60, 80), np.float32)
    sparse[::4, ::5] = 12.0
    dense = complete_classical(sparse)
    assert np.isfinite(dense).all()
    np.testing.assert_allclose(dense, 12.0, atol=1e-3)


def test_nearer_object_wins_dilation():
    sparse = np.zeros((40, 40), np.float32)
    sparse[::3, ::3] = 30.0
    sparse[16:25:2, 16:25:2] = 5.0  # a near object in front of a far wall
    dense = complete_classical(sparse)
    assert dense[20, 21] == pytest.approx(5.0, abs=0.5)  # its gaps take its depth, not the wall's


def test_empty_input_gives_no_values_and_input_is_untouched():
    sparse = np.zeros((10, 12), np.float32)
    assert np.isnan(complete_classical(sparse)).all()
    sparse[5, 5] = np.nan
    sparse[2, 2] = -3.0
    sparse[3, 3] = 8.0
    before = sparse.copy()
    dense = complete_classical(sparse)
    assert np.nanmax(dense) == pytest.approx(8.0)
    np.testing.assert_array_equal(sparse, before)


def test_inf_and_beyond_the_pivot_are_no_value():
    sparse = np.zeros((20, 20), np.float32)
    sparse[10, 10] = 7.0
    sparse[2, 2] = np.inf
    sparse[4, 4] = -np.inf
    sparse[6, 6] = 150.0  # beyond max_depth: dropped, not clipped
    dense = complete_classical(sparse, max_depth=100.0)
    assert dense.dtype == np.float32
    np.testing.assert_allclose(dense[np.isfinite(dense)], 7.0, atol=1e-4)
    assert np.isfinite(dense).any()
    # float64 input gives the same float32 answer
    np.testing.assert_array_equal(complete_classical(sparse.astype(np.float64), max_depth=100.0),
                                  dense)


def test_extension_to_the_top_carries_each_column_up_in_place():
    depth = np.zeros((6, 4), np.float32)
    depth[3, 0] = 9.0              # column 0: top-most value at row 3
    depth[1, 1], depth[4, 1] = 2.0, 5.0  # column 1: row 1 is its top; row 4 stays
    depth[0, 2] = 7.0              # column 2: already at the top
    # column 3: no value at all -> stays empty
    out = _extend_to_top(depth)
    assert out is depth
    np.testing.assert_array_equal(depth[:, 0], [9, 9, 9, 9, 0, 0])
    np.testing.assert_array_equal(depth[:, 1], [2, 2, 0, 0, 5, 0])
    np.testing.assert_array_equal(depth[:, 2], [7, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(depth[:, 3], 0)


def test_rejects_wrong_shape():
    with pytest.raises(ValueError):
        complete_classical(np.zeros((4, 4, 1), np.float32))


def test_real_kitti_frame_accuracy(kitti_dc):
    sparse = read_kitti_depth(kitti_dc / "velodyne_raw_02.png")
    gt = read_kitti_depth(kitti_dc / "groundtruth_02.png")
    metrics = depth_metrics(complete_classical(sparse), gt)
    assert metrics["pixels"] == np.count_nonzero(gt)  # every ground-truth pixel scored
    assert metrics["rmse_mm"] <= 1100.0
    assert metrics["mae_mm"] <= 300.0


def _awkward_sparse(height: int, width: int, seed: int) -> np.ndarray:
    """Returns of every kind the completion must handle: NaN, inf, negatives, beyond and exactly
    at the pivot."""
    rng = np.random.default_rng(seed)
    sparse = np.zeros((height, width), np.float32)
    hit = rng.random(sparse.shape) < 0.05
    sparse[hit] = rng.uniform(-5.0, 140.0, int(hit.sum()))
    sparse[rng.random(sparse.shape) < 0.005] = np.nan
    sparse[rng.random(sparse.shape) < 0.002] = np.inf
    sparse[rng.random(sparse.shape) < 0.002] = 100.0
    return sparse


@pytest.mark.parametrize("width", [300, 777, 1242, 1600])
def test_strips_give_the_same_answer_bit_for_bit(width):
    sparse = _awkward_sparse(120, width, seed=width)
    one = complete_classical(sparse, threads=1)
    assert np.isfinite(one).any()
    for threads in (None, 2, 3, 4):
        np.testing.assert_array_equal(complete_classical(sparse, threads=threads).view(np.uint32),
                                      one.view(np.uint32))


def test_strips_on_the_real_kitti_frame(kitti_dc):
    sparse = read_kitti_depth(kitti_dc / "velodyne_raw_02.png")
    one = complete_classical(sparse, threads=1)
    for threads in (2, 4):
        np.testing.assert_array_equal(complete_classical(sparse, threads=threads).view(np.uint32),
                                      one.view(np.uint32))


def test_threads_must_be_positive():
    with pytest.raises(ValueError, match="threads"):
        complete_classical(np.zeros((4, 4), np.float32), threads=0)


def _complete_in_child(queue):
    queue.put(float(np.nansum(complete_classical(_awkward_sparse(60, 1024, 1), threads=4))))


def test_a_forked_child_completes_in_strips_after_its_parent_did():
    """The strips' worker threads are not inherited by fork: the child must make its own."""
    import multiprocessing
    expected = float(np.nansum(complete_classical(_awkward_sparse(60, 1024, 1), threads=4)))
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_complete_in_child, args=(queue,))
    child.start()
    try:
        assert queue.get(timeout=60) == expected
    finally:
        child.join(timeout=10)
        if child.is_alive():
            child.kill()


@pytest.mark.parametrize("shape", [(1, 1), (1, 4), (4, 1), (4, 4), (2, 3)])
def test_tiny_images_are_completed(shape):
    """OpenCV takes a 4x1 or 1x4 array for a scalar; the completion must not be fooled."""
    sparse = np.zeros(shape, np.float32)
    sparse[0, 0] = 5.0
    np.testing.assert_allclose(complete_classical(sparse), 5.0, atol=1e-4)


def test_missing_value_and_network_units():
    """``missing`` replaces NaN where nothing could be filled, and nothing else;
    classical_units is that completion with 0 for no value, over depth_scale."""
    sparse = np.zeros((40, 300), np.float32)
    sparse[30:, 100:110] = 20.0                # one patch: most of the frame stays empty
    with_nan = complete_classical(sparse, max_depth=120.0)
    zeroed = complete_classical(sparse, max_depth=120.0, missing=0.0)
    assert np.isnan(with_nan).any() and np.isfinite(with_nan).any()
    np.testing.assert_array_equal(zeroed, np.nan_to_num(with_nan, nan=0.0))
    units = classical_units(sparse, max_depth=120.0, depth_scale=80.0)
    np.testing.assert_array_equal(units, np.nan_to_num(with_nan, nan=0.0) / np.float32(80.0))
