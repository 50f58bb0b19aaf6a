"""``dmd3c eval --nuscenes``: the surround evaluation on the real nuScenes keyframe (classical
backend) and its argument checks."""
from __future__ import annotations

import json
import math

import cv2
import pytest

from dmd3c_ros.cli import main
from dmd3c_ros.core.metrics import METRIC_NAMES
from dmd3c_ros.core.nuscenes_sample import CAMERAS
from dmd3c_ros.core.surround import FIGURES, ring_pairs


def test_eval_nuscenes_classical(nuscenes_sample, tmp_path, capsys):
    out, json_path = tmp_path / "out", tmp_path / "surround.json"
    assert main(["eval", "--nuscenes", str(nuscenes_sample), "--holdout-every", "5",
                 "--backend", "classical", "--out", str(out), "--json", str(json_path)]) == 0
    summary = json.loads(json_path.read_text())
    result = summary["results"]["classical"]
    assert list(result["cameras"]) == list(CAMERAS)
    for metrics in list(result["cameras"].values()) + [result["mean"]]:
        for name in ("rmse_mm", "mae_mm", "irmse_per_km", "imae_per_km", "abs_rel", "delta1"):
            assert name in METRIC_NAMES and math.isfinite(metrics[name]), name
    assert all(m["pixels"] > 100 for m in result["cameras"].values())
    assert result["mean"]["cameras"] == 6 and result["skipped"] == []
    pairs = [f"{a}|{b}" for a, b in ring_pairs(CAMERAS)]
    assert list(result["consistency"]) == pairs + ["mean"]
    assert result["consistency"]["CAM_FRONT|CAM_FRONT_RIGHT"]["pixels"] > 1000
    assert all(math.isfinite(result["consistency"]["mean"][f]) for f in FIGURES)
    # CAM_BACK / CAM_BACK_LEFT meet in a sliver (a few hundred pixels): not in the mean.
    assert 0 < result["consistency"]["CAM_BACK|CAM_BACK_LEFT"]["pixels"] < 1000
    assert result["consistency"]["mean"]["pairs"] == 5
    assert result["consistency"]["mean"]["slivers"] == 1
    reference = summary["reference"]["lidar_ground_truth"]["consistency"]
    assert list(reference) == pairs + ["mean"]
    assert reference["mean"]["median_abs_m"] < 0.1  # metres: the same points from two cameras
    run = summary["run"]
    assert run["holdout_every"] == 5 and run["points_held_out"] == math.ceil(34688 / 5)
    assert run["points_input"] + run["points_held_out"] == 34688
    assert reference["mean"]["median_rel_pct"] < 1.0  # per cent, likewise
    report = (out / "report.md").read_text()
    assert "CAM_FRONT / CAM_FRONT_RIGHT" in report and "--holdout-every 5" in report
    # The seams: one picture per run and one of the held-out LiDAR, six tiles side by side.
    assert run["seams"] == {"classical": "seams_classical.png",
                            "reference: held-out LiDAR": "seams_lidar_ground_truth.png"}
    for file in run["seams"].values():
        picture = cv2.imread(str(out / file))
        assert picture is not None and picture.shape[1] == 6 * 400
        assert f"]({file})" in report
    seams = cv2.imread(str(out / "seams_classical.png"))
    dimmed = seams.max(axis=2) <= int(255 * 0.35) + 1   # the camera image, dimmed
    assert 0.005 < (~dimmed).mean() < 0.5                # the seams coloured on top
    assert "| classical | CAM_BACK |" in capsys.readouterr().out


def test_eval_nuscenes_seam_blend(nuscenes_sample, tmp_path):
    json_path = tmp_path / "surround.json"
    assert main(["eval", "--nuscenes", str(nuscenes_sample), "--backend", "classical",
                 "--seam-blend", "0.05", "--out", str(tmp_path / "out"),
                 "--json", str(json_path)]) == 0
    summary = json.loads(json_path.read_text())
    raw, blended = summary["results"]["classical"], summary["results"]["classical+seams"]
    assert summary["run"]["seam_tolerance"] == 0.05
    assert "seams" in blended["batch_ms"] and "seams" not in raw["batch_ms"]
    # The same outputs, blended: the seams agree far better, the accuracy is unchanged.
    before, after = raw["consistency"]["mean"], blended["consistency"]["mean"]
    assert after["pixels"] > 0.99 * before["pixels"]
    assert after["median_rel_pct"] < 0.2 * before["median_rel_pct"]
    for camera, metrics in raw["cameras"].items():
        assert blended["cameras"][camera]["rmse_mm"] == pytest.approx(metrics["rmse_mm"],
                                                                      rel=0.01)
    assert summary["run"]["seams"]["classical+seams"] == "seams_classical_seams.png"


@pytest.mark.parametrize("argv, message", [
    (["--kitti", "x", "--holdout-every", "5"], "--holdout-offset apply to --nuscenes"),
    (["--kitti", "x", "--holdout-offset", "1"], "--holdout-offset apply to --nuscenes"),
    (["--nuscenes", "x", "--holdout-offset", "5"], "--holdout-offset must lie in 0..4"),
    (["--kitti", "x", "--seam-blend", "0.05"], "--seam-blend applies to --nuscenes"),
    (["--nuscenes", "x", "--lidar-split", "0.2"], "--lidar-split do not apply"),
    (["--nuscenes", "x", "--mono"], "--mono do not apply"),
])
def test_eval_nuscenes_argument_errors(tmp_path, capsys, argv, message):
    assert main(["eval", *argv, "--backend", "classical", "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err


def test_eval_nuscenes_bad_inputs(tmp_path, capsys):
    assert main(["eval", "--nuscenes", str(tmp_path / "absent"), "--backend", "classical",
                 "--out", str(tmp_path / "o")]) == 2
    assert "no such folder" in capsys.readouterr().err
