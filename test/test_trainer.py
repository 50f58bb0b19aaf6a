"""The trainer: configs, synthetic crops, checkpoints (safetensors), resume, TensorBoard, DDP."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dmd3c_ros.training import losses as L
from dmd3c_ros.training.synthetic import (NO_RING, CacheSpec, CropSampler, build_cache,
                                          keep_beams, load_index, pseudo_metric_depth,
                                          split_files)
from dmd3c_ros.training.trainer import (TrainConfig, learning_rate, lidar_covered,
                                        load_student_weights, normalise_relative, train)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One training drive and one validation drive of two frames each (about 10 s)."""
    out = tmp_path_factory.mktemp("cache")
    build_cache(out, CacheSpec({"train": [3], "val": [5003]}, frames_per_drive=2))
    return out


def _config(cache, out, **kw) -> TrainConfig:
    base = dict(stage="finetune", cache=str(cache), out=str(out), steps=4, batch_size=2,
                crop=(64, 128), lr=1e-3, warmup_steps=1, threads=1, val_every=2,
                checkpoint_every=2, val_frames=1, log_every=1, progress=False,
                weights={"depth": 1.0, "grad": 0.1, "nll": 0.05, "ssi": 0.1, "bins": 0.02,
                         "feature": 0.05, "focal": 0.1, "uwd": 0.1})
    base.update(kw)
    config = TrainConfig(**base)
    config.check()
    return config


def test_cache_layout(cache):
    index = load_index(cache)
    assert index["stage1"] and len(split_files(index, "train")) == 2
    data = np.load(cache / split_files(index, "train")[0])
    h, w = data["depth"].shape
    assert data["rgb"].shape == (h, w, 3) and data["rgb"].dtype == np.uint8
    sparse, ring = data["sparse"], data["ring"]
    assert ((sparse > 0) == (ring != NO_RING)).all()        # a ring for every return
    assert 0.02 < (sparse > 0).mean() < 0.1                 # HDL-64-like density
    both = (sparse > 0) & (data["depth"] > 0)
    assert np.median(np.abs(sparse[both] - data["depth"][both])) < 0.1
    assert (data["pseudo_sparse"] > 0).mean() > 0.02        # stage-1 sweep from teacher depth


def test_keep_beams_thins_by_ring():
    ring = np.tile(np.arange(64, dtype=np.uint8)[:, None], (1, 3))
    ring[5, 1] = NO_RING
    sparse = np.where(ring != NO_RING, 10.0, 0.0).astype(np.float32)
    for beams, stride in ((64, 1), (32, 2), (16, 4), (8, 8)):
        kept = keep_beams(sparse, ring, beams)
        assert set(np.unique(ring[kept > 0])) == set(range(0, 64, stride))
    assert not keep_beams(sparse, ring, 0).any()
    with pytest.raises(ValueError):
        keep_beams(sparse, ring, 12)


def test_pseudo_metric_depth_maps_percentiles():
    depth = np.linspace(2.0, 60.0, 10_000).reshape(100, 100)
    rel = 3.0 / depth + 0.2                                  # unknown scale and shift
    rel[:5] = 0.0                                            # "sky": the far end
    out = pseudo_metric_depth(rel, median_depth=12.0, max_depth=80.0)
    assert not out[:5].any()
    assert np.median(out[out > 0]) == pytest.approx(12.0, rel=0.02)
    order = np.argsort(depth[5:].ravel())                    # order preserved
    assert np.all(np.diff(out[5:].ravel()[order]) >= -1e-4)


def test_crops_are_deterministic_and_thinned(cache):
    index = load_index(cache)
    sampler = CropSampler(cache, split_files(index, "train"), "finetune", crop=(64, 128),
                          beam_probs={0: 1.0})
    a, b = sampler.sample((1, 0, 0)), sampler.sample((1, 0, 0))
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    assert a["rgb"].shape == (3, 64, 128) and a["sparse"].shape == (1, 64, 128)
    assert not a["sparse"].any() and a["beams"] == 0         # mono draw: no LiDAR at all
    with pytest.raises(ValueError):
        CropSampler(cache, [], "finetune")


def test_config_checks(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage: pretrain\nsteps: 3\nwrong_key: 1\n")
    with pytest.raises(ValueError, match="wrong_key"):
        TrainConfig.load(path)
    path.write_text("stage: pretrain\nweights: {bins: 0.1}\n")
    with pytest.raises(ValueError, match="finetune"):
        TrainConfig.load(path)
    path.write_text("stage: finetune\nweights: {bogus: 1}\n")
    with pytest.raises(ValueError, match="bogus"):
        TrainConfig.load(path)
    path.write_text("stage: finetune\ncache: data/c\ncrop: [64, 96]\n")
    config = TrainConfig.load(path)
    assert config.cache == str((tmp_path / "data/c").resolve()) and config.crop == (64, 96)
    for name in ("pretrain_tiny", "finetune_tiny"):           # the shipped recipes load
        TrainConfig.load(ROOT / "config" / "train" / f"{name}.yaml")


def test_lidar_covered_is_below_each_columns_top_return():
    sparse = np.zeros((6, 4), np.float32)
    sparse[2, 0] = 10.0     # column 0: rows 2-5
    sparse[4, 1] = 20.0     # column 1: rows 4-5 (a lower return alone)
    sparse[1, 3] = sparse[5, 3] = 30.0   # column 3: from its top-most return; column 2: none
    covered = lidar_covered(sparse)
    assert covered[:, 0].tolist() == [False, False, True, True, True, True]
    assert covered[:, 1].tolist() == [False] * 4 + [True] * 2
    assert not covered[:, 2].any() and covered[1:, 3].all() and not covered[0, 3]


def test_learning_rate_schedule():
    config = TrainConfig(steps=100, warmup_steps=10, lr=1.0)
    assert learning_rate(config, 0) == pytest.approx(0.1)
    assert learning_rate(config, 9) == pytest.approx(1.0)
    assert learning_rate(config, 100) == pytest.approx(0.05)
    values = [learning_rate(config, s) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(values, values[1:]))


def test_metric_bin_probabilities_assign_to_neighbours():
    centres = torch.tensor([[0.1, 0.2, 0.4, 0.8]])
    depth = torch.tensor([0.2, 0.3, 0.8]).view(1, 1, 1, 3)
    p = L.metric_bin_probabilities(depth, centres)
    assert p.shape == (1, 4, 1, 3)
    assert torch.allclose(p.sum(1), torch.ones(1, 1, 3))
    assert p[0, :, 0, 0].argmax() == 1 and p[0, :, 0, 2].argmax() == 3
    assert p[0, 1, 0, 1] > 0.25 and p[0, 2, 0, 1] > 0.25       # between c1 and c2: shared
    masked = L.metric_bin_probabilities(depth, centres, torch.zeros(1, 1, 1, 3))
    assert torch.allclose(masked, torch.full_like(masked, 0.25))


def test_normalise_relative_removes_scale():
    t = torch.rand(2, 1, 8, 8) + 0.1
    a, b = normalise_relative(t), normalise_relative(t * 37.0)
    assert torch.allclose(a, b, rtol=1e-5)


def _read_state(path):
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def test_train_writes_checkpoints_and_scalars(cache, tmp_path):
    result = train(_config(cache, tmp_path / "run"))
    run = tmp_path / "run"
    assert result["steps_run"] == 4 and np.isfinite(result["last"]["hdl64_rmse_m"])
    assert np.isfinite(result["last"]["hdl64_covered_rmse_m"])
    tensors, meta = _read_state(run / "last.safetensors")
    assert meta["step"] == "4" and json.loads(meta["config"])["stage"] == "finetune"
    assert any(k.startswith("optim.") and k.endswith("exp_avg") for k in tensors)
    assert any(k.startswith("objective.feature.adapter") for k in tensors)
    with open(run / "last.safetensors", "rb") as f:          # safetensors, not a pickle:
        size = int.from_bytes(f.read(8), "little")           # a little-endian header length,
        header = json.loads(f.read(size))                    # then that many bytes of JSON
    assert "__metadata__" in header and len(header) - 1 == len(tensors)
    state, meta = load_student_weights(run / "best.safetensors")
    assert state and "val" in meta
    rows = [json.loads(x) for x in (run / "history.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [2, 4]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    for tag in ("train/total", "train/depth", "train/bins", "train/feature", "train/focal",
                "train/uwd", "train/ssi", "train/nll", "train/lr", "val/hdl64_rmse_m",
                "val/mono_absrel"):
        assert tag in tags, tag
    assert len(events.Scalars("train/total")) == 4


def test_resume_continues_exactly(cache, tmp_path):
    straight = _config(cache, tmp_path / "a")
    train(straight)
    interrupted = _config(cache, tmp_path / "b")
    train(interrupted, stop_after=3)
    assert _read_state(tmp_path / "b" / "last.safetensors")[1]["step"] == "3"
    train(interrupted, resume=True)
    a, _ = _read_state(tmp_path / "a" / "last.safetensors")
    b, meta = _read_state(tmp_path / "b" / "last.safetensors")
    assert meta["step"] == "4" and a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-6, msg=key)


def test_resume_without_checkpoint_is_an_error(cache, tmp_path):
    with pytest.raises(FileNotFoundError, match="last.safetensors"):
        train(_config(cache, tmp_path / "none"), resume=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# A rank of this run has aborted at exit ("terminate called without an active exception",
# SIGABRT) in 2 of 5 clean-clone CI runs on 2026-12-06, after training and checkpoints were
# done; not reproduced in 15 isolated or loaded reruns, cause not found (docs: the closing note
# of that stop). That signature alone earns one more run; any other failure fails at once.
TEARDOWN_ABORT = "terminate called without an active exception"


def test_ddp_two_cpu_processes_on_gloo(cache, tmp_path):
    """torchrun with two processes: DDP over gloo; both ranks end with identical weights."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    for attempt in (1, 2):
        out = tmp_path / f"ddp{attempt}"
        config = tmp_path / f"ddp{attempt}.yaml"
        config.write_text(json.dumps({
            "stage": "pretrain", "cache": str(cache), "out": str(out), "steps": 3,
            "batch_size": 1, "crop": [64, 128], "warmup_steps": 1, "threads": 1,
            "val_every": 3, "checkpoint_every": 3, "val_frames": 1,
            "weights": {"depth": 1.0, "grad": 0.1}}))
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--nnodes", "1", "--master_addr", "127.0.0.1", "--master_port",
               str(_free_port()), "-m", "dmd3c_ros.cli", "train", "--stage", "pretrain",
               "--config", str(config), "--no-progress"]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        if proc.returncode == 0 or attempt == 2 or TEARDOWN_ABORT not in proc.stderr:
            break
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["ranks_in_sync"] is True
    assert result["steps_run"] == 3
    assert (out / "last.safetensors").exists()


def test_cli_train_rejects_wrong_stage(tmp_path):
    from dmd3c_ros.cli import main
    path = tmp_path / "c.yaml"
    path.write_text("stage: pretrain\n")
    assert main(["train", "--stage", "finetune", "--config", str(path)]) == 2


def test_ablation_switches_off_one_term_at_a_time():
    from dmd3c_ros.training.ablation import table, variants
    config = TrainConfig(weights={"depth": 1.0, "ssi": 0.1, "bins": 0.02, "focal": 0.0})
    runs = dict(variants(config))
    assert list(runs) == ["full recipe", "without ssi", "without bins", "no distillation"]
    assert runs["without ssi"] == {"depth": 1.0, "ssi": 0.0, "bins": 0.02, "focal": 0.0}
    assert runs["no distillation"]["bins"] == 0.0 and runs["no distillation"]["depth"] == 1.0
    row = {"label": "x", "val": {"hdl64_rmse_m": 1.0, "hdl64_mae_m": 0.5,
                                 "beams16_rmse_m": 2.0, "mono_absrel": 0.1}}
    assert "| x | 1.000 | 0.500 | 2.000 | 0.100 |" in table([row])
