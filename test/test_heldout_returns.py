"""Held-out returns as training targets (``holdout`` and the ``returns`` loss term)."""
from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from dmd3c_ros.training.objective import Objective  # noqa: E402
from dmd3c_ros.training.synthetic import CropSampler  # noqa: E402
from dmd3c_ros.training.train_config import TrainConfig  # noqa: E402

SCALE = 120.0


def _sweep(seed=0, shape=(64, 96)):
    """A crop's arrays: a 64-ring sweep on every 2nd row, 30 % of the pixels of a row."""
    rng = np.random.default_rng(seed)
    sparse = np.zeros(shape, np.float32)
    ring = np.full(shape, -1, np.int16)
    rows = np.arange(0, shape[0], 2)
    hit = rng.random((rows.size, shape[1])) < 0.3
    sparse[rows] = np.where(hit, rng.uniform(2.0, 80.0, hit.shape), 0.0)
    ring[rows] = np.where(hit, rows[:, None] // 2 % 64, -1)
    rgb = rng.integers(0, 256, shape + (3,)).astype(np.uint8)
    target = rng.uniform(2.0, 80.0, shape).astype(np.float32)
    return rgb, target, sparse, ring, np.ones(shape, np.float32)


def _sampler(**kw):
    base = dict(crop=(64, 96), depth_scale=SCALE, beam_probs={64: 1.0}, jitter=False)
    base.update(kw)
    return CropSampler("unused", ["unused.npz"], "finetune", **base)


def test_held_out_returns_leave_the_input_and_become_the_target():
    rgb, target, sweep, ring, teacher = _sweep()
    sample = _sampler(holdout=0.2).process(np.random.default_rng(1), rgb, target, sweep, ring,
                                           teacher, flip=False)
    kept, held = sample["sparse"][0] * SCALE, sample["returns"][0] * SCALE
    assert not ((kept > 0) & (held > 0)).any()                  # a return is one or the other
    np.testing.assert_allclose(np.where(kept > 0, kept, held), sweep, rtol=1e-6)  # none lost
    share = np.count_nonzero(held) / np.count_nonzero(sweep)
    assert 0.15 < share < 0.25
    # Thinned beams and dropped returns are targets too.
    thin = _sampler(holdout=0.2, beam_probs={16: 1.0}, point_dropout=0.3).process(
        np.random.default_rng(1), rgb, target, sweep, ring, teacher, flip=False)
    assert np.count_nonzero(thin["returns"]) > 0.7 * np.count_nonzero(sweep)
    again = _sampler(holdout=0.2).process(np.random.default_rng(1), rgb, target, sweep, ring,
                                          teacher, flip=False)
    assert np.array_equal(again["returns"], sample["returns"])  # deterministic per draw
    plain = _sampler().process(np.random.default_rng(1), rgb, target, sweep, ring, teacher)
    assert "returns" not in plain


def test_returns_term_scores_the_depth_at_held_out_returns_only():
    h, w = 32, 48
    depth = torch.full((1, 1, h, w), 20.0 / SCALE)
    returns = torch.zeros(1, 1, h, w)
    returns[0, 0, 5, 7], returns[0, 0, 9, 30] = 20.0 / SCALE, 23.0 / SCALE
    batch = {"target": depth.clone(), "teacher": torch.rand(1, 1, h, w), "returns": returns}
    config = TrainConfig(depth_scale=SCALE, max_depth=SCALE, holdout=0.2,
                         weights={"depth": 1.0, "returns": 1.0})
    objective = Objective(config, 16)
    out = {"depth": depth, "uncertainty": depth * 0.05}
    terms = objective(out, batch)[1]
    assert terms["depth"] == pytest.approx(0.0, abs=1e-6)
    # errors 0 and 3 m at the two returns: mean L1 1.5 + 0.2 x mean L2 4.5
    assert terms["returns"] == pytest.approx(1.5 + 0.2 * 4.5, rel=1e-5)
    with pytest.raises(ValueError, match="holdout"):
        TrainConfig(weights={"returns": 1.0}).check()
    with pytest.raises(ValueError, match="held-out returns"):
        objective(out, {k: v for k, v in batch.items() if k != "returns"})
