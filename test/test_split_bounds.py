"""evaluation.split_bounds: what a LiDAR split's held-out returns reward."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dmd3c_ros.evaluation import split_bounds


def _edge():
    """A 5x9 frame: kept returns at 10 m in columns 0 and 2-3 and 20 m in columns 5-8 of row 2; the
    classical answer 10 m (nearest wins) up to column 4, 20 m beyond; one held-out return at
    20 m in column 4 (the LiDAR saw past the foreground's edge) and one at 10 m in column 1."""
    kept = np.zeros((5, 9), np.float32)
    kept[2, [0, 2, 3]], kept[2, 5:] = 10.0, 20.0
    classical = np.full((5, 9), 10.0, np.float32)
    classical[:, 5:] = 20.0
    truth = np.zeros((5, 9), np.float32)
    truth[2, 4], truth[2, 1] = 20.0, 10.0
    return kept, truth, classical


def test_the_oracle_picks_the_nearest_depth_within_its_window():
    kept, truth, classical = _edge()
    ys, xs = np.array([2, 2]), np.array([4, 1])
    target = truth[ys, xs].astype(np.float64)
    assert list(split_bounds.oracle_answer(kept, classical, ys, xs, target, 1)) == [20.0, 10.0]
    # without a window only the classical answer is there
    assert list(split_bounds.oracle_answer(kept, classical, ys, xs, target, 0)) == [10.0, 10.0]
    # a return nearer to the truth than the classical answer wins over it, a farther one not
    classical[2, 1], kept[2, 0], kept[2, 2] = 11.0, 12.0, 10.2
    assert split_bounds.oracle_answer(kept, classical, ys, xs, target, 1)[1] == \
        pytest.approx(10.2)
    kept[2, 2] = 13.0
    assert split_bounds.oracle_answer(kept, classical, ys, xs, target, 1)[1] == 11.0


def test_the_blend_takes_the_windows_mean_only_where_the_returns_spread():
    kept, _, classical = _edge()
    blend = split_bounds.blend_answer(kept, classical, 1)
    # column 4: its window holds returns 10 (column 3) and 20 (column 5): sd 5 m, mean 15
    assert blend[2, 4] == pytest.approx(15.0) and blend[1, 4] == pytest.approx(15.0)
    # column 1: two returns of 10 m, no spread: the classical answer stays
    assert blend[2, 1] == 10.0 and blend[0, 1] == 10.0
    # a spread within the threshold keeps the classical answer too
    assert split_bounds.blend_answer(kept, classical, 1, spread=6.0)[2, 4] == 10.0


def test_the_figures_of_one_split():
    kept, truth, classical = _edge()
    figures = split_bounds.bounds(kept, truth, classical, radius=1, blend_radius=1)
    assert figures["returns"] == 2
    # classical: errors 10 and 0 m
    assert figures["classical"]["rmse_mm"] == pytest.approx(1000 * np.sqrt(50.0))
    assert figures["classical"]["mae_mm"] == pytest.approx(5000.0)
    assert figures["large"] == {"share": 0.5, "squared_share": 1.0}
    assert figures["nearer"] == {"share": 0.5, "squared_share": 1.0}  # 10 m, nearer than 20
    assert figures["oracle"]["rmse_mm"] == 0.0 and figures["oracle"]["rmse_ratio"] == 0.0
    # blend: 15 m at the edge (5 m off), 10 m at column 1
    assert figures["blend"]["rmse_ratio"] == pytest.approx(0.5)
    assert figures["blend"]["mae_ratio"] == pytest.approx(0.5)
    assert figures["classical"]["rmse_ratio"] == 1.0
    # no held-out return with a classical answer: nothing to score
    assert split_bounds.bounds(kept, np.zeros_like(truth), classical) is None


def test_on_the_real_frames(kitti_object, kitti_dc, tmp_path, capsys):
    report = tmp_path / "bounds.json"
    assert split_bounds.main(["--kitti", str(kitti_object), "--seeds", "0,1",
                              "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    rows = result["rows"]
    assert [row["seed"] for row in rows] == [0, 1]
    # the split of dmd3c eval --lidar-split 0.2 --seed 0 (split_seeds' figure)
    assert rows[0]["classical"]["rmse_mm"] == pytest.approx(1704.9, abs=0.1)
    for row in rows:  # the oracle may keep the classical answer: never worse than it
        assert row["oracle"]["rmse_ratio"] <= 1.0 and row["oracle"]["mae_ratio"] <= 1.0
        assert 0.0 < row["nearer"]["share"] <= row["large"]["share"] < 1.0
    assert result["official"] == []  # the object frame has no depth ground truth
    # its velodyne.bin is stored ring by ring: the ring answer is there, 64 rings
    from dmd3c_ros.evaluation.scan_lines import scan_rings
    from dmd3c_ros.evaluation.sources import open_kitti
    rings = scan_rings(open_kitti(kitti_object, points=True)[0][1][0]["points"])
    assert rings is not None and rings[-1] + 1 in (64, 65)   # a first partial ring may lead
    assert all(np.isfinite(row["ring"]["rmse_ratio"]) for row in rows)
    assert "ring_rmse_ratio" in result["summary"]
    table = capsys.readouterr().out
    assert "| mean |" in table and result["command"].startswith(split_bounds.PROG)
    assert split_bounds.main(["--kitti", str(kitti_dc), "--seeds", "0"]) == 0
    out = capsys.readouterr().out
    assert "camera-side ground truth" in out and "classical 1079.8 / 268.1 mm" in out
    assert "the whole raw sweep" in out   # the ring answer on the camera-side ground truth


def test_bad_arguments(tmp_path, capsys):
    for bad in (["--lidar-split", "1"], ["--radius", "-1"], ["--blend-radius", "0"]):
        with pytest.raises(SystemExit):
            split_bounds.parse_args(["--kitti", "x", *bad])
    assert split_bounds.main(["--kitti", str(tmp_path / "absent")]) == 2
    assert "error" in capsys.readouterr().err


def test_a_bag_is_split_as_dmd3c_eval_splits_it(tmp_path, capsys):
    pytest.importorskip("rosbags")
    from test_eval_offline import TOPICS, WALLS, bag_args, strict_json, write_bag

    from dmd3c_ros.cli import main as dmd3c
    bag = tmp_path / "bag"
    write_bag(bag)
    topics = ["--image-topic", TOPICS["image"], "--camera-info-topic", TOPICS["info"],
              "--points-topic", TOPICS["points"]]
    report = tmp_path / "bounds.json"
    assert split_bounds.main(["--bag", str(bag), *topics, "--lidar-split", "0.25", "--seeds",
                              "1", "--json", str(report)]) == 0
    rows = json.loads(report.read_text())["rows"]
    assert len(rows) == len(WALLS)   # the sixth frame's sweep comes too late to pair
    assert "| mean |" in capsys.readouterr().out
    # the same split as dmd3c eval --lidar-split 0.25 --seed 1: its classical RMSE, frame by frame
    assert dmd3c(bag_args(bag, tmp_path) + ["--lidar-split", "0.25", "--seed", "1",
                                            "--backend", "classical"]) == 0
    evaluated = strict_json(tmp_path / "eval.json")["results"]["classical"]["rmse_mm"]
    assert np.mean([row["classical"]["rmse_mm"] for row in rows]) == pytest.approx(evaluated,
                                                                                   abs=0.05)
    with pytest.raises(SystemExit):   # a bag needs the LiDAR's topic
        split_bounds.parse_args(["--bag", str(bag), "--image-topic", TOPICS["image"]])
    with pytest.raises(SystemExit):   # topics are for bags
        split_bounds.parse_args(["--kitti", "x", "--points-topic", TOPICS["points"]])
