"""evaluation.confirmed_split: held-out returns scored by whether the ground truth confirms them
(exact figures on a made-up frame, then the real KITTI frame through the command line)."""
from __future__ import annotations

import json

import numpy as np
import pytest

from dmd3c_ros.evaluation.confirmed_split import groups, hold_out, main, sweep
from dmd3c_ros.runtime.base import Prediction


class _Scaled:
    """A backend whose depth is a known map times a factor (NaN on ``holes``)."""

    def __init__(self, full: np.ndarray, factor: float, holes=None) -> None:
        self.full, self.factor, self.holes = full, factor, holes
        self.inputs = []

    def infer(self, rgb, sparse):
        self.inputs.append(sparse.copy())
        depth = (self.full * self.factor).astype(np.float32)
        if self.holes is not None:
            depth[self.holes] = np.nan
        return Prediction(depth, None)


def _frame():
    rng = np.random.default_rng(4)
    full = rng.uniform(2.0, 60.0, (40, 50)).astype(np.float32)
    sparse = np.where(rng.random(full.shape) < 0.3, full, 0.0).astype(np.float32)
    gt = np.zeros_like(full)
    returns = np.flatnonzero(sparse)
    third = len(returns) // 3
    gt.ravel()[returns[:third]] = full.ravel()[returns[:third]] * 1.01       # confirmed
    gt.ravel()[returns[third:2 * third]] = full.ravel()[returns[third:2 * third]] * 2  # moved
    return {"name": "made-up", "rgb": np.zeros((40, 50, 3), np.uint8), "sparse": sparse,
            "gt": gt}, full


def test_hold_out_draws_a_share_of_the_returns_and_leaves_the_input_alone():
    sample, _ = _frame()
    before = sample["sparse"].copy()
    kept, held = hold_out(sample["sparse"], 0.2, 3)
    returns = np.count_nonzero(before)
    assert len(held) == round(0.2 * returns) == len(set(held.tolist()))
    assert (before.ravel()[held] > 0).all() and (kept.ravel()[held] == 0).all()
    assert np.count_nonzero(kept) == returns - len(held)
    np.testing.assert_array_equal(sample["sparse"], before)
    np.testing.assert_array_equal(hold_out(before, 0.2, 3)[1], held)   # same seed, same split
    assert not np.array_equal(hold_out(before, 0.2, 4)[1], held)


def test_groups_split_the_held_out_returns_by_the_ground_truth():
    returns = np.array([10.0, 10.0, 10.0, 10.0])
    truth = np.array([10.4, 10.6, 0.0, 20.0])
    masks = groups(returns, truth, 0.05)
    assert masks["confirmed"].tolist() == [True, False, False, False]
    assert masks["moved"].tolist() == [False, True, False, True]
    assert masks["dropped"].tolist() == [False, False, True, False]
    assert masks["all"].all()


def test_sweep_scores_each_group_exactly_and_like_for_like():
    sample, full = _frame()
    holes = np.zeros(full.shape, bool)
    holes[:5] = True                   # the second run has no depth in the top rows
    runs = {"exact": _Scaled(full, 1.0), "ten_percent": _Scaled(full, 1.1, holes)}
    result = sweep([sample], runs, 0.2, [0, 1], 0.05)
    assert result["runs"] == ["exact", "ten_percent"]
    shares = [result["groups"][g]["share"] for g in ("confirmed", "moved", "dropped")]
    assert sum(shares) == pytest.approx(1.0) and min(shares) > 0.2
    for seed in (0, 1):              # every run completed the same input, without the held out
        kept, held = hold_out(sample["sparse"], 0.2, seed)
        for run in runs.values():
            np.testing.assert_array_equal(run.inputs[seed], kept)
    scored = []
    for seed in (0, 1):
        _, held = hold_out(sample["sparse"], 0.2, seed)
        scored.append(held[~holes.ravel()[held]])
    values = sample["sparse"].ravel()[np.concatenate(scored)].astype(np.float64)
    figures = result["groups"]["all"]
    assert figures["pixels"] == len(values)
    assert figures["exact"]["rmse_mm"] == pytest.approx(0.0, abs=1e-3)
    expected = 1000.0 * np.sqrt(np.mean((values * np.float32(1.1) - values) ** 2))
    assert figures["ten_percent"]["rmse_mm"] == pytest.approx(expected, rel=1e-5)
    assert figures["ten_percent"]["mae_mm"] == pytest.approx(
        1000.0 * np.mean(np.abs(values * np.float32(1.1) - values)), rel=1e-5)
    swapped = sweep([sample], dict(reversed(list(runs.items()))), 0.2, [0, 1], 0.05)["groups"]
    assert sum(swapped[g]["reference_se_share"] for g in ("confirmed", "moved", "dropped")) \
        == pytest.approx(1.0)
    assert swapped["all"]["exact"]["ratio"] == pytest.approx(0.0, abs=1e-6)
    assert swapped["all"]["ten_percent"]["seed_ratios"] == [1.0, 1.0]


def test_a_frame_without_ground_truth_is_an_error():
    sample, full = _frame()
    sample["gt"] = None
    with pytest.raises(ValueError, match="no ground truth"):
        sweep([sample], {"exact": _Scaled(full, 1.0)}, 0.2, [0], 0.05)


def test_command_line_on_the_real_kitti_frame(kitti_dc, tmp_path, capsys):
    path = tmp_path / "confirmed.json"
    assert main(["--kitti", str(kitti_dc), "--seeds", "0:2", "--backend", "classical",
                 "--json", str(path)]) == 0
    table = capsys.readouterr().out
    for group in ("confirmed", "moved", "dropped", "all"):
        assert f"| {group} |" in table
    result = json.loads(path.read_text())
    figures = result["groups"]
    assert sum(figures[g]["pixels"] for g in ("confirmed", "moved", "dropped")) \
        == figures["all"]["pixels"] > 1000
    # The official frame: most held-out returns are confirmed, and the classical completion's
    # error is larger on the others.
    assert figures["confirmed"]["share"] > 0.5
    assert figures["dropped"]["classical"]["rmse_mm"] > figures["confirmed"]["classical"]["rmse_mm"]


def test_bad_arguments_are_refused(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["--kitti", str(tmp_path), "--fraction", "1.5", "--backend", "classical"])
    assert "--fraction must be between 0 and 1" in capsys.readouterr().err
    assert main(["--kitti", str(tmp_path / "missing"), "--backend", "classical"]) == 2
