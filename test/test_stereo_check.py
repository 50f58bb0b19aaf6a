"""Where the LiDAR covers an image (core/coverage.py) and the stereo check of depth above it
(evaluation/stereo_check.py): known layouts, exact figures with a stand-in stereo, the real KITTI
pair when ../shared/data is there."""
import numpy as np
import pytest

from dmd3c_ros.core.coverage import lidar_coverage
from dmd3c_ros.evaluation.stereo_check import check_frame, errors, main
from dmd3c_ros.paths import kitti_sample_dir
from dmd3c_ros.runtime.base import Prediction


def test_coverage_of_one_return():
    sparse = np.zeros((40, 50), np.float32)
    sparse[20, 10] = 12.0
    before = sparse.copy()
    covered = lidar_coverage(sparse, width=5, margin=3)
    assert np.array_equal(sparse, before)
    assert covered[17:, 8:13].all() and covered.sum() == 5 * (40 - 17)
    assert not lidar_coverage(np.full((4, 4), np.nan), width=3, margin=1).any()
    with pytest.raises(ValueError, match="odd"):
        lidar_coverage(sparse, width=4)


def test_coverage_matches_the_composite_students_graph():
    torch = pytest.importorskip("torch")
    from dmd3c_ros.training.above_lidar import coverage
    rng = np.random.default_rng(0)
    sparse = np.where(rng.random((64, 96)) < 0.02, 20.0, 0.0).astype(np.float32)
    sparse[:30] = 0.0
    got = coverage(torch.from_numpy(sparse)[None, None], 61, 10)[0, 0].numpy() > 0
    assert np.array_equal(got, lidar_coverage(sparse))


def test_errors_are_exact_and_empty_masks_give_nan():
    reference = np.array([[10.0, 20.0], [np.nan, 5.0]])
    depth = np.array([[11.0, 18.0], [3.0, np.nan]])
    e = errors(depth, reference, np.ones((2, 2), bool))
    assert e["pixels"] == 2 and e["mae_m"] == pytest.approx(1.5)
    assert e["rmse_m"] == pytest.approx(np.sqrt(2.5)) and e["abs_rel"] == pytest.approx(0.1)
    assert np.isnan(errors(depth, reference, np.zeros((2, 2), bool))["mae_m"])


class _Fixed:
    """A stand-in: a teacher or backend that answers one fixed map."""

    def __init__(self, depth):
        self.depth = depth

    def predict(self, rgb, **kwargs):
        return self.depth

    def infer(self, rgb, sparse):
        return Prediction(self.depth, None)


def test_check_frame_scores_only_confident_stereo_above_the_lidar():
    h, w = 60, 80
    sparse = np.zeros((h, w), np.float32)
    sparse[40:, ::3] = 10.0                       # returns from row 40 down: covered from 30
    stereo = np.full((h, w), 20.0, np.float32)
    stereo[:5] = np.nan                           # no match
    stereo[5:10] = 60.0                           # beyond the scored 3-40 m
    gt = np.where(sparse > 0, 10.5, 0.0)
    camera = type("Camera", (), {"fx": 700.0})()
    sample = {"rgb": np.zeros((h, w, 3), np.uint8), "sparse": sparse, "gt": gt,
              "camera": camera, "stereo": {"rgb": None, "baseline_m": 0.5}}
    model = np.full((h, w), 22.0, np.float32)
    out = check_frame(sample, {"m": _Fixed(model)}, _Fixed(stereo))
    assert out["above_pixels"] == (30 - 10) * w   # rows 10-29
    assert out["above"]["m"]["mae_m"] == pytest.approx(2.0)
    assert out["above"]["m"]["abs_rel"] == pytest.approx(0.1)
    # Stereo against the LiDAR ground truth inside its view: 20 m against 10.5 m.
    assert out["stereo_vs_lidar"]["mae_m"] == pytest.approx(9.5)


@pytest.mark.skipif(not kitti_sample_dir().is_dir(), reason="../shared/data/kitti_dc is absent")
def test_real_kitti_pair(tmp_path, capsys):
    """On the real frame, stereo agrees with the LiDAR ground truth (a few per cent), which is
    what makes it a reference above the sweep; the classical completion is scored there."""
    import json
    assert main(["--kitti", str(kitti_sample_dir()), "--backend", "classical",
                 "--json", str(tmp_path / "s.json")]) == 0
    frame = next(iter(json.loads((tmp_path / "s.json").read_text())["frames"].values()))
    assert frame["stereo_vs_lidar"]["median_rel"] < 0.05
    assert frame["above_pixels"] > 10000
    assert np.isfinite(frame["above"]["classical"]["mae_m"])
    assert "above the LiDAR" in capsys.readouterr().out
