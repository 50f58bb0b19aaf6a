"""Training the residual student: its crops (classical input, LiDAR dropouts), the weight average,
the relative-error term, checkpoint choice on real frames, and the real validation frames."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from dmd3c_ros.core.classical import complete_classical
from dmd3c_ros.training.synthetic import CacheSpec, CropSampler, build_cache, lidar_dropout, \
    beam_footprint, lidar_shift, load_index, split_files
from dmd3c_ros.training.trainer import TrainConfig, load_student_weights, train


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    out = tmp_path_factory.mktemp("cache")
    build_cache(out, CacheSpec({"train": [4], "val": [5004]}, frames_per_drive=2), stage1=False)
    return out


def _config(cache, out, **kw) -> TrainConfig:
    base = dict(stage="finetune", cache=str(cache), out=str(out), variant="residual", steps=4,
                batch_size=2, crop=(64, 128), lr=1e-3, warmup_steps=1, threads=1, val_every=2,
                checkpoint_every=2, val_frames=1, log_every=1, progress=False, depth_scale=120.0,
                max_depth=120.0, beam_probs={64: 0.5, 16: 0.5}, point_dropout=0.1,
                blob_dropout=2, ema=0.9,
                weights={"depth": 1.0, "log": 0.5, "grad": 0.1, "nll": 0.05, "ssi": 0.05,
                         "feature": 0.05})
    base.update(kw)
    config = TrainConfig(**base)
    config.check()
    return config


def test_crops_carry_the_classical_completion_of_their_own_sparse_input(cache):
    files = split_files(load_index(cache), "train")
    sampler = CropSampler(cache, files, "finetune", crop=(96, 256), depth_scale=120.0,
                          beam_probs={64: 1.0}, classical=True, classical_max_depth=120.0)
    sample = sampler.sample((0, 0, 0))
    metres = sample["sparse"][0] * 120.0
    expected = np.nan_to_num(complete_classical(metres, max_depth=120.0), nan=0.0) / 120.0
    np.testing.assert_allclose(sample["classical"][0], expected, rtol=1e-5, atol=1e-7)
    assert (sample["classical"] > 0).mean() > 0.5
    again = sampler.sample((0, 0, 0))
    assert np.array_equal(again["classical"], sample["classical"])   # deterministic per key


def test_lidar_dropout_loses_returns_and_leaves_its_input_alone():
    rng = np.random.default_rng(0)
    sparse = np.where(rng.random((100, 200)) < 0.1, 10.0, 0.0).astype(np.float32)
    before = sparse.copy()
    out = lidar_dropout(sparse, np.random.default_rng(1), 0.5, 4)
    assert np.array_equal(sparse, before)
    assert 0 < np.count_nonzero(out) < np.count_nonzero(sparse)
    assert set(np.unique(out)) <= {0.0, 10.0}                       # nothing invented
    assert np.array_equal(lidar_dropout(sparse, np.random.default_rng(1), 0.0, 0), sparse)


def test_lidar_shift_moves_every_return_by_one_offset_and_leaves_its_input_alone():
    sparse = np.zeros((40, 60), np.float32)
    sparse[10:30:4, 10:50:5] = np.arange(1, 41, dtype=np.float32).reshape(5, 8)
    before = sparse.copy()
    seen = set()
    for seed in range(40):
        out = lidar_shift(sparse, np.random.default_rng(seed), 2)
        assert np.array_equal(sparse, before)
        ys, xs = np.nonzero(out)
        dy, dx = ys[0] - 10, xs[0] - 10             # where the first return went
        assert abs(dy) <= 2 and abs(dx) <= 2
        assert np.array_equal(out[10 + dy:30 + dy:4, 10 + dx:50 + dx:5], before[10:30:4, 10:50:5])
        assert np.count_nonzero(out) == np.count_nonzero(sparse)   # none reached the border
        seen.add((int(dy), int(dx)))
    assert len(seen) > 10                            # offsets on both axes, both signs
    edge = np.zeros((5, 5), np.float32)
    edge[0, 0] = 7.0
    moved = [lidar_shift(edge, np.random.default_rng(s), 1) for s in range(30)]
    assert any(np.count_nonzero(m) == 0 for m in moved)   # moved out of the frame: gone


def test_beam_footprint_lets_the_nearer_surface_win_within_its_radius():
    depth = np.zeros((7, 9), np.float32)
    depth[:, 4:] = 30.0                       # background on the right
    depth[2:5, 2:5] = 10.0                    # a foreground block, its right column at x = 4
    before = depth.copy()
    out = beam_footprint(depth, 1)
    assert np.array_equal(depth, before)
    assert (out[1:6, 1:6] == 10.0).all()      # the block is one pixel wider on every side
    assert (out[:, 7:] == 30.0).all() and (out[0, 6:] == 30.0).all()   # beyond reach: unchanged
    assert (out[:, 0] == 0.0).all()           # empty and out of reach: still empty
    assert out[1, 3] == 10.0 and out[0, 3] == 30.0   # empty pixels within reach take the nearest
    assert np.array_equal(beam_footprint(depth, 0), depth)


def test_residual_run_reports_references_and_chooses_on_real_frames(cache, tmp_path):
    ratios = iter([1.02, 0.97])     # the real frames' figure at steps 2 and 4

    def real(student):
        assert not student.training and getattr(student, "needs_classical", False)
        return {"real_rmse_ratio": next(ratios)}

    result = train(_config(cache, tmp_path / "run", select="real"), extra_validation=real)
    rows = [json.loads(x) for x in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    for row in rows:
        for key in ("hdl64_rmse_m", "classical_hdl64_rmse_m", "teacher_aligned_rmse_m",
                    "beams16_rmse_m"):
            assert math.isfinite(row[key]), key
        assert "mono_absrel" not in row                 # the residual student needs LiDAR
    assert result["best"]["step"] == 4 and result["best"]["real_rmse_ratio"] == 0.97
    _, meta = load_student_weights(tmp_path / "run" / "best.safetensors")
    assert json.loads(meta["val"])["step"] == 4


def test_select_real_without_real_frames_is_an_error(cache, tmp_path):
    with pytest.raises(ValueError, match="select: real"):
        train(_config(cache, tmp_path / "run", select="real"))


def test_weight_average_is_validated_saved_and_resumed(cache, tmp_path):
    from safetensors import safe_open
    straight = _config(cache, tmp_path / "a")
    train(straight)
    interrupted = _config(cache, tmp_path / "b")
    train(interrupted, stop_after=3)
    train(interrupted, resume=True)
    tensors = {}
    for name in ("a", "b"):
        with safe_open(str(tmp_path / name / "last.safetensors"), framework="pt") as f:
            tensors[name] = {k: f.get_tensor(k) for k in f.keys()}
    assert any(k.startswith("ema.") for k in tensors["a"])
    for key in tensors["a"]:
        torch.testing.assert_close(tensors["a"][key], tensors["b"][key], rtol=1e-5, atol=1e-6,
                                   msg=key)
    model = {k[len("model."):]: v for k, v in tensors["a"].items() if k.startswith("model.")}
    ema = {k[len("ema."):]: v for k, v in tensors["a"].items() if k.startswith("ema.")}
    assert ema.keys() == model.keys()
    assert not torch.equal(ema["stem.0.0.weight"], model["stem.0.0.weight"])
    # best.safetensors holds the average that was validated, not the raw weights.
    best = _config(cache, tmp_path / "c", val_every=4, checkpoint_every=4)
    train(best)
    kept, _ = load_student_weights(tmp_path / "c" / "best.safetensors")
    with safe_open(str(tmp_path / "c" / "last.safetensors"), framework="pt") as f:
        assert torch.equal(kept["stem.0.0.weight"], f.get_tensor("ema.stem.0.0.weight"))


def test_real_validation_frames(kitti_dc, kitti_object):
    from dmd3c_ros.evaluation.real_frames import RealValidation
    from dmd3c_ros.training.residual import build_residual_student
    real = RealValidation.from_shared(120.0, 120.0)
    assert set(real.frames) == {"kitti_dc", "kitti_object"}
    # The classical figures of ../shared/data/README.md and of dmd3c eval --lidar-split 0.2.
    assert real.classical["kitti_dc"]["rmse_mm"] == pytest.approx(1079.8, abs=0.1)
    assert real.classical["kitti_dc"]["pixels"] == 90839
    assert real.classical["kitti_object"]["pixels"] > 3000
    figures = real(build_residual_student())
    # Untrained = the classical completion, computed at the network's input size.
    assert figures["real_rmse_ratio"] == pytest.approx(1.0, abs=0.01)
    for name in ("kitti_dc", "kitti_object"):
        assert figures[f"real_{name}_classical_rmse_m"] * 1000 == pytest.approx(
            real.classical[name]["rmse_mm"])


def test_real_validation_on_several_splits(kitti_dc, kitti_object):
    from dmd3c_ros.evaluation.real_frames import RealValidation
    from dmd3c_ros.training.residual import build_residual_student
    from dmd3c_ros.training.train_config import TrainConfig
    real = RealValidation.from_shared(120.0, 120.0, splits=3)
    assert set(real.frames) == {"kitti_dc", "kitti_object", "kitti_object_s1", "kitti_object_s2",
                                "kitti_dc_raw_s0", "kitti_dc_raw_s1", "kitti_dc_raw_s2"}
    # The splits of python -m dmd3c_ros.evaluation.split_seeds (dmd3c eval --lidar-split 0.2
    # --seed k): the classical figures of models/README.md, "Held-out splits".
    for name, rmse in (("kitti_object", 1704.9), ("kitti_object_s1", 2527.0),
                       ("kitti_object_s2", 2763.5), ("kitti_dc_raw_s0", 1413.8),
                       ("kitti_dc_raw_s1", 1520.3)):
        assert real.classical[name]["rmse_mm"] == pytest.approx(rmse, abs=0.1), name
    assert real.classical["kitti_dc"]["rmse_mm"] == pytest.approx(1079.8, abs=0.1)
    # Three families (official frame 5, its raw sweep's splits, the object frame's splits):
    # the untrained student is the classical completion on every one.
    figures = real(build_residual_student())
    assert figures["real_rmse_ratio"] == pytest.approx(1.0, abs=0.01)
    assert "real_kitti_object_s2_rmse_m" in figures and "real_kitti_dc_raw_s0_mae_m" in figures
    with pytest.raises(ValueError, match="real_splits"):
        TrainConfig(real_splits=0).check()


def test_eval_reads_the_kitti_object_layout(kitti_object, tmp_path):
    from dmd3c_ros.cli import main
    out = tmp_path / "eval.json"
    assert main(["eval", "--kitti", str(kitti_object.parent), "--lidar-split", "0.2",
                 "--backend", "classical", "--out", str(tmp_path / "report"),
                 "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"]["classical"]
    assert result["frames"] == 1 and result["rmse_mm"] == pytest.approx(1704.9, abs=0.1)


def test_correction_sparsity_term_is_zero_at_the_identity_start_and_grows_with_the_correction():
    from dmd3c_ros.training.objective import Objective, TrainModule
    from dmd3c_ros.training.residual import build_residual_student
    from dmd3c_ros.training.student import build_student
    rng = np.random.default_rng(0)
    h, w = 64, 128
    classical = torch.from_numpy(rng.uniform(0.05, 0.5, (2, 1, h, w)).astype(np.float32))
    classical[:, :, :8] = 0.0                        # no classical value: not counted
    batch = {"rgb": torch.zeros(2, 3, h, w), "sparse": classical * (torch.rand(2, 1, h, w) < 0.1),
             "classical": classical, "target": classical * 1.1,
             "teacher": torch.rand(2, 1, h, w)}
    config = _config("unused", "unused", weights={"depth": 1.0, "sparse": 0.1})
    student = build_residual_student("residual_geo")
    module = TrainModule(student, Objective(config, 16))
    assert module(batch)[1]["sparse"] == 0.0         # untrained: the classical answer, no cost
    with torch.no_grad():
        student.out.weight.normal_(0.0, 0.3)
        student.out.bias[0].fill_(0.2)
    with torch.no_grad():
        out = student.forward_with_aux(batch["rgb"], batch["sparse"], batch["classical"])
    expected = float(out["correction"].abs()[classical > 0].mean())
    assert module(batch)[1]["sparse"] == pytest.approx(expected) and expected > 0.05
    with pytest.raises(ValueError, match="residual student"):
        TrainModule(build_student("tiny"), Objective(config, 16))(
            {k: v for k, v in batch.items() if k != "classical"})
