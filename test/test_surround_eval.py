"""``dmd3c eval --nuscenes``: the surround evaluation on the real nuScenes keyframe (classical
backend) and its argument checks."""
from __future__ import annotations

import json
import math

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
    reference = summary["reference"]["lidar_ground_truth"]["consistency"]
    assert list(reference) == pairs + ["mean"]
    assert reference["mean"]["median_abs_m"] < 0.1  # metres: the same points from two cameras
    run = summary["run"]
    assert run["holdout_every"] == 5 and run["points_held_out"] == math.ceil(34688 / 5)
    assert run["points_input"] + run["points_held_out"] == 34688
    report = (out / "report.md").read_text()
    assert "CAM_FRONT / CAM_FRONT_RIGHT" in report and "--holdout-every 5" in report
    assert "| classical | CAM_BACK |" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--kitti", "x", "--holdout-every", "5"], "--holdout-every applies to --nuscenes"),
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
