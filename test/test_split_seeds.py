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
    # the coverage bands of dmd3c eval, the reference at 1 x in each
    assert set(summary["coverage"]) == {"0", "0-2", "2-4", "4+"}
    assert all(band["mean_ratio"] == 1.0 for band in summary["coverage"].values())
    assert "returns 4+ px from a kept one" in table


def test_bad_arguments(capsys, tmp_path):
    with pytest.raises(SystemExit):
        split_seeds.parse_args(["--kitti", "x", "--backend", "classical", "--lidar-split", "1"])
    assert split_seeds.main(["--kitti", str(tmp_path / "absent"), "--backend",
                             "classical"]) == 2
    assert "error" in capsys.readouterr().err


def test_coverage_band_multiples_per_seed_and_their_spread(monkeypatch):
    # Made-up evaluations: the reference and a model, two bands; the model is 0.5 x / 2 x the
    # reference in band "0-2" on seeds 0 / 1, and band "4+" has no returns on seed 1.
    band = {0: {"ref": {"0-2": 100.0, "4+": 300.0}, "model": {"0-2": 50.0, "4+": 330.0}},
            1: {"ref": {"0-2": 100.0, "4+": None}, "model": {"0-2": 200.0, "4+": None}}}

    def evaluate(source, *, seed, **_):
        results = {name: {"rmse_mm": 1000.0 if name == "ref" else 900.0, "mae_mm": 1.0,
                          "coverage": {b: {"rmse_mm": v} for b, v in band[seed][name].items()}}
                   for name in ("ref", "model")}
        return {"results": results}, [], {}, {}

    monkeypatch.setattr(split_seeds, "evaluate", evaluate)
    args = argparse.Namespace(kitti="x", backend=["classical"], model=[], lidar_split=0.2,
                              seeds=[0, 1])
    result = split_seeds.sweep(args)
    assert result["rows"][0]["model"]["coverage"] == {"0-2": 0.5, "4+": pytest.approx(1.1)}
    assert result["rows"][1]["model"]["coverage"] == {"0-2": 2.0, "4+": None}
    spread = result["summary"]["model"]["coverage"]
    assert spread["0-2"] == {"mean_ratio": 1.25, "min_ratio": 0.5, "max_ratio": 2.0}
    assert spread["4+"]["mean_ratio"] == pytest.approx(1.1)  # the seed with returns only
    table = split_seeds.markdown({**result, "source": "x", "lidar_split": 0.2}, "cmd")
    assert "| returns 0-2 px from a kept one: mean (min .. max) | 1.000x" in table
    assert "1.250x (0.500 .. 2.000)" in table


def test_nuscenes_offsets_give_camera_multiples_the_worst_camera_and_disagreement(monkeypatch):
    # Made-up surround evaluations of two offsets: the model is 0.5 x the reference on camera A
    # and 0.9 / 1.2 x on camera B; its views disagree by 1 / 3 % where the reference's by 0.4 %.
    cams = {0: {"ref": (100.0, 100.0), "model": (50.0, 90.0)},
            1: {"ref": (100.0, 200.0), "model": (50.0, 240.0)}}
    seen = []

    def evaluate_surround(source, *, holdout_every, holdout_offset, **_):
        seen.append((source, holdout_every, holdout_offset))
        return {"results": {name: {
            "cameras": {"A": {"rmse_mm": a}, "B": {"rmse_mm": b}},
            "mean": {"rmse_mm": (a + b) / 2, "mae_mm": 1.0},
            "consistency": {"mean": {"median_rel_pct": 0.4 if name == "ref" else
                                     (1.0, 3.0)[holdout_offset]}}}
            for name, (a, b) in cams[holdout_offset].items()}}

    monkeypatch.setattr(split_seeds, "evaluate_surround", evaluate_surround)
    args = argparse.Namespace(nuscenes="nu", kitti=None, backend=["classical"], model=[],
                              lidar_split=0.2, holdout_every=5, seeds=[0, 1])
    result = split_seeds.sweep(args)
    assert seen == [("nu", 5, 0), ("nu", 5, 1)] and result["kind"] == "nuscenes"
    rows = result["rows"]
    assert rows[1]["model"]["cameras"] == {"A": 0.5, "B": 1.2}
    assert rows[0]["model"]["worst_camera_ratio"] == 0.9
    assert rows[1]["model"]["ratio"] == pytest.approx(145.0 / 150.0)
    summary = result["summary"]["model"]
    assert summary["cameras"]["B"] == {"mean_ratio": pytest.approx(1.05), "min_ratio": 0.9,
                                       "max_ratio": 1.2}
    assert summary["worst_camera"]["max_ratio"] == 1.2
    assert summary["disagreement"] == {"mean_pct": 2.0, "min_pct": 1.0, "max_pct": 3.0}
    table = split_seeds.markdown(result, "cmd")
    assert "| 1 | 150.0 / 1.0 (1.000x; 1.000x; 0.40 %) | 145.0 / 1.0 (0.967x; 1.200x; 3.00 %) |" \
        in table
    assert "| B: mean (min .. max) | 1.000x (1.000 .. 1.000) | 1.050x (0.900 .. 1.200) |" in table
    assert "| cross-view disagreement: mean (min .. max) | 0.400 % (0.400 .. 0.400) | 2.000 % " \
        "(1.000 .. 3.000) |" in table


def test_nuscenes_offsets_on_the_real_keyframe(nuscenes_sample, tmp_path):
    report = tmp_path / "nu.json"
    assert split_seeds.main(["--nuscenes", str(nuscenes_sample), "--seeds", "0,3",
                             "--backend", "classical", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    rows = result["rows"]
    # offset 0 is dmd3c eval --nuscenes's own split (its mean RMSE over the six cameras)
    assert rows["0"]["classical"]["rmse_mm"] == pytest.approx(4985.2, abs=0.1)
    assert rows["3"]["classical"]["rmse_mm"] != rows["0"]["classical"]["rmse_mm"]
    assert len(result["summary"]["classical"]["cameras"]) == 6
    assert 0.2 < rows["0"]["classical"]["disagreement_pct"] < 1.0


def test_nuscenes_offsets_must_lie_below_the_holdout_step():
    with pytest.raises(SystemExit):
        split_seeds.parse_args(["--nuscenes", "x", "--backend", "classical", "--seeds", "0:6"])
