"""The multi-view trainer of the surround student (issue 18): the synthetic surround cache, pairs
of views that see the same place, the cross-view and view-relational losses, a training run."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dmd3c_ros.training.multiview import main as multiview_main
from dmd3c_ros.training.multiview import (PairSampler, build_surround_cache, correspondences,
                                          load_surround_index)
from dmd3c_ros.training.synthetic import CacheSpec, CropSampler, build_cache
from dmd3c_ros.training.trainer import TrainConfig, train
from dmd3c_ros.training.view_losses import (CrossViewConsistency, ViewRelationalDistillation,
                                            pair_depths)


@pytest.fixture(scope="module")
def surround(tmp_path_factory):
    out = tmp_path_factory.mktemp("surround")
    build_surround_cache(out, [0], frames_per_drive=2, image_scale=0.25)  # 400x225 views
    build_surround_cache(out, [9000], frames_per_drive=1, image_scale=0.25, split="val")
    return out


def _pair_batch(a, b, alpha, beta, q):
    """A pair of 1x1-channel 6x8 depth maps and K correspondences at given places."""
    depth = torch.tensor(np.stack([a, b])[:, None], dtype=torch.float32)
    k = len(alpha)
    return depth, {"xview_p": torch.tensor([[[1, 2]] * k]),
                   "xview_q": torch.tensor(np.asarray([q]), dtype=torch.float32),
                   "xview_alpha": torch.tensor(np.asarray([alpha]), dtype=torch.float32),
                   "xview_beta": torch.tensor(np.asarray([beta]), dtype=torch.float32)}


def test_cross_view_consistency_is_zero_for_agreeing_views_and_log_ratio_otherwise():
    a, b = np.full((6, 8), 2.0), np.full((6, 8), 3.0)
    depth, batch = _pair_batch(a, b, [1.5, 1.0], [0.0, 1.0], [[0.0, 0.0], [-1.0, 1.0]])
    carried, other, valid = pair_depths(depth, batch)
    np.testing.assert_allclose(carried.numpy(), [[3.0, 3.0]])  # 1.5 x 2 + 0, 1 x 2 + 1
    np.testing.assert_allclose(other.numpy(), [[3.0, 3.0]]) and valid.all()
    assert float(CrossViewConsistency()(depth, batch)) == pytest.approx(0.0, abs=1e-6)
    far, _ = _pair_batch(a, b * 1.1, [1.5, 1.0], [0.0, 1.0], [[0.0, 0.0], [-1.0, 1.0]])
    assert float(CrossViewConsistency()(far, batch)) == pytest.approx(math.log(1.1), rel=1e-5)
    none, _ = _pair_batch(a * 0.0, b, [1.5, 1.0], [0.0, 1.0], [[0.0, 0.0], [-1.0, 1.0]])
    assert float(CrossViewConsistency()(none, batch)) == 0.0   # no valid correspondence


def test_view_relational_loss_is_zero_for_the_teacher_and_grows_with_disagreement():
    rng = np.random.default_rng(0)
    a, b = rng.uniform(2, 30, (6, 8)), rng.uniform(2, 30, (6, 8))
    k = 16
    q = rng.uniform(-1, 1, (k, 2))
    teacher, batch = _pair_batch(a, b, rng.uniform(0.5, 1.5, k), rng.uniform(-1, 1, k), q)
    batch["xview_p"] = torch.tensor(rng.integers(0, [6, 8], (1, k, 2)))
    loss = ViewRelationalDistillation()
    assert float(loss(teacher, teacher, batch)) == pytest.approx(0.0, abs=1e-6)
    # Cameras that share a centre (beta 0): a scale of both views changes no relation.
    centred = dict(batch, xview_beta=torch.zeros_like(batch["xview_beta"]))
    assert float(loss(teacher * 1.7, teacher, centred)) == pytest.approx(0.0, abs=1e-5)
    # A change of one view's depths changes the relations, the more the larger it is.
    values = []
    for size in (0.02, 0.1, 0.3):
        student = teacher.clone()
        student[1] = student[1] * torch.tensor(1.0 + size * rng.standard_normal((1, 6, 8)),
                                               dtype=torch.float32).clamp_min(0.1)
        values.append(float(loss(student, teacher, batch)))
    assert 0 < values[0] < values[1] < values[2]
    # Gradients reach the student's depth, not the teacher's.
    student = teacher.clone().requires_grad_(True)
    (loss(student * 1.1 + 0.1 * torch.rand_like(student), teacher, batch)).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0


def test_surround_cache_pairs_see_the_same_points(surround):
    index = load_surround_index(surround)
    assert len(index["cameras"]) == 6 and len(index["frames"]) == 2
    assert index["val"] == ["surround_09000_000.npz"]    # a second build adds its split
    data = np.load(surround / index["frames"][0])
    assert data["rgb0"].shape == (225, 400, 3) and data["P"].shape == (6, 3, 4)
    rows, cols, u, v, alpha, beta = correspondences(
        data["depth0"], data["P"][0], data["lidar_to_camera"][0],
        data["depth1"], data["P"][1], data["lidar_to_camera"][1])
    assert len(rows) > 500
    carried = alpha * data["depth0"][rows, cols] + beta
    reference = data["depth1"][np.rint(v).astype(int), np.rint(u).astype(int)]
    assert np.median(np.abs(carried - reference) / reference) < 0.01
    # CAM_FRONT's right edge is CAM_FRONT_RIGHT's left edge.
    assert cols.min() > 200 and u.max() < 200


def test_a_surround_cache_refuses_drives_of_another_lidar_scale_or_teacher(surround, capsys):
    before = sorted(p.name for p in surround.iterdir())
    with pytest.raises(ValueError, match="LiDAR 'vlp32' at image scale 0.25 with teacher "
                                         "simulated_mono_seed0; asked for 'hdl32'"):
        build_surround_cache(surround, [1], frames_per_drive=1, image_scale=0.25, lidar="hdl32")
    with pytest.raises(ValueError, match="asked for 'vlp32' at 0.5"):
        build_surround_cache(surround, [1], frames_per_drive=1, image_scale=0.5)
    with pytest.raises(ValueError, match="with simulated_mono_seed1: build it into another"):
        build_surround_cache(surround, [1], frames_per_drive=1, image_scale=0.25, teacher_seed=1)
    assert multiview_main(["--out", str(surround), "--seeds", "1:2", "--lidar", "hdl32"]) == 2
    assert "build it into another folder" in capsys.readouterr().err
    assert sorted(p.name for p in surround.iterdir()) == before    # nothing written


def test_pair_batches_tie_two_crops_by_their_geometry(surround):
    crops = CropSampler(surround, ["x"], "finetune", beam_probs={32: 1.0}, depth_scale=120.0,
                        classical=True, classical_max_depth=120.0, jitter=False)
    sampler = PairSampler(surround, crops, crop=(96, 128), samples=32, seed=3)
    batch = sampler.batch([(0, 0, 0), (0, 0, 1), (1, 0, 0)])
    assert batch["rgb"].shape == (6, 3, 96, 128) and batch["classical"].shape == (6, 1, 96, 128)
    assert batch["xview_p"].shape == (3, 32, 2) and batch["xview_q"].shape == (3, 32, 2)
    assert (batch["xview_p"] >= 0).all() and (batch["xview_p"] < [96, 128]).all()
    assert (np.abs(batch["xview_q"]) <= 1.0 + 1e-6).all()
    # The rendered ground truth agrees with itself across the two crops: consistency ~ 0.
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
    assert float(CrossViewConsistency()(tensors["target"], tensors)) < 0.01
    again = sampler.batch([(0, 0, 0), (0, 0, 1), (1, 0, 0)])
    assert all(np.array_equal(batch[k], again[k]) for k in batch)   # deterministic per key


def test_pairs_carry_held_out_returns_and_validation_holds_none_out(surround):
    from dataclasses import replace
    crops = CropSampler(surround, ["x"], "finetune", beam_probs={32: 1.0}, depth_scale=120.0,
                        classical=True, classical_max_depth=120.0, jitter=False, holdout=0.2)
    sampler = PairSampler(surround, crops, crop=(96, 128), samples=32, seed=3)
    batch = sampler.batch([(0, 0, 0), (0, 0, 1)])
    assert batch["returns"].shape == batch["sparse"].shape == (4, 1, 96, 128)
    assert not ((batch["returns"] > 0) & (batch["sparse"] > 0)).any()
    assert (batch["returns"] > 0).any()
    # Validation sees a sweep as the runtime does: every return in, none held out, so its
    # figures compare with runs trained without holdout.
    held_out = sampler.validation_batch(pairs=2)
    plain = PairSampler(surround, replace(crops, holdout=0.0), crop=(96, 128), samples=32,
                        seed=3).validation_batch(pairs=2)
    assert "returns" not in held_out
    assert all(np.array_equal(held_out[k], plain[k]) for k in plain)


def test_a_multiview_run_trains_with_both_view_terms(surround, tmp_path_factory, tmp_path,
                                                     monkeypatch):
    from dmd3c_ros.training.objective import Objective
    logged, forward = [], Objective.forward

    def recording(self, out, batch):
        total, terms = forward(self, out, batch)
        logged.append((int(out["depth"].shape[0]), terms))
        return total, terms

    monkeypatch.setattr(Objective, "forward", recording)
    cache = tmp_path_factory.mktemp("cache")
    build_cache(cache, CacheSpec({"train": [4], "val": [5004]}, frames_per_drive=1),
                stage1=False)
    config = TrainConfig(stage="finetune", cache=str(cache), out=str(tmp_path / "run"),
                         variant="residual_geo", steps=2, batch_size=2, crop=(64, 96), lr=1e-3,
                         warmup_steps=1, threads=1, val_every=2, checkpoint_every=2,
                         val_frames=1, log_every=1, progress=False, depth_scale=120.0,
                         max_depth=120.0, beam_probs={32: 1.0}, real_val=False,
                         surround_cache=str(surround), view_samples=16, select="surround",
                         weights={"depth": 1.0, "xview": 0.5, "vrel": 0.5})
    config.check()
    result = train(config)
    assert result["steps_run"] == 2 and len(logged) == 2
    for crops, terms in logged:
        assert crops == 4   # two pairs: four crops a step
        for term in ("xview", "vrel"):
            assert math.isfinite(terms[term]) and terms[term] > 0, term
    assert (tmp_path / "run" / "best.safetensors").is_file()
    # Validated on the held-out pairs too: the student's and the classical input's figures.
    row = json.loads((tmp_path / "run" / "history.jsonl").read_text().splitlines()[-1])
    for key in ("surround_xview", "surround_rmse_m", "surround_classical_xview",
                "surround_classical_rmse_m"):
        assert math.isfinite(row[key]) and row[key] > 0, key
    with pytest.raises(ValueError, match="need surround_cache"):
        TrainConfig(stage="finetune", weights={"xview": 1.0}).check()
    # The checkpoint chosen on the held-out pairs' RMSE.
    assert result["best"]["surround_rmse_m"] == min(
        json.loads(x)["surround_rmse_m"]
        for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines())
    with pytest.raises(ValueError, match="select: surround needs surround_cache"):
        TrainConfig(stage="finetune", select="surround").check()


def test_within_sweep_keeps_points_at_or_below_their_columns_top_return():
    from dmd3c_ros.training.multiview import _within_sweep
    sparse = np.zeros((10, 4), np.float32)
    sparse[3, 0] = sparse[6, 1] = 5.0            # column 2 and 3: no return at all
    rows, cols = np.array([2, 3, 9, 5, 6, 0]), np.array([0, 0, 0, 1, 1, 2])
    found = (rows, cols, rows * 1.0, cols * 1.0, np.ones(6), np.zeros(6))
    kept = _within_sweep(found, sparse, samples=1)
    assert list(zip(kept[0], kept[1])) == [(3, 0), (9, 0), (6, 1)]
    assert all(len(x) == 3 for x in kept)
    assert _within_sweep(found, sparse, samples=4) is found   # too few left: all of them
