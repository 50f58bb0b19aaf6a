"""evaluation.split_seeds: one LiDAR-split evaluation per seed, and its summary."""
from __future__ import annotations

import argparse
import json

import pytest

from dmd3c_ros.evaluation import split_seeds


def test_parse_seeds():
    assert split_seeds.parse_seeds("0:3") == [0, 1, 2]
    assert split_seeds.parse_seeds("4,1") == [4, 1]
    for bad in ("3:3", "a:b", ""):
        with pytest.raises(argparse.ArgumentTypeError):
            split_seeds.parse_seeds(bad)


def test_every_seed_changes_the_split_and_the_summary_counts(kitti_object, tmp_path, capsys):
    report = tmp_path / "seeds.json"
    assert split_seeds.main(["--kitti", str(kitti_object), "--seeds", "0,1,2",
                             "--backend", "classical", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert result["seeds"] == [0, 1, 2] and result["runs"] == ["classical"]
    rmse = [result["rows"][str(s)]["classical"]["rmse_mm"] for s in (0, 1, 2)]
    assert len(set(rmse)) == 3                       # each seed holds other points out
    assert rmse[0] == pytest.approx(1704.9, abs=0.1)  # seed 0: dmd3c eval --seed 0's figure
    summary = result["summary"]["classical"]
    assert summary["mean_ratio"] == summary["min_ratio"] == 1.0   # the reference itself
    assert summary["rmse_wins"] == summary["mae_wins"] == 0
    table = capsys.readouterr().out
    assert "| 1 | " in table and "seeds better than classical" in table
    assert "--seeds 0,1,2" in table and result["command"].startswith(split_seeds.PROG)


def test_bad_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit):
        split_seeds.parse_args(["--kitti", "x", "--backend", "classical", "--lidar-split", "1"])
    assert split_seeds.main(["--kitti", str(tmp_path / "absent"), "--backend",
                             "classical"]) == 2
    assert "error" in capsys.readouterr().err
