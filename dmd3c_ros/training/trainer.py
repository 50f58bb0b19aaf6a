"""``dmd3c train``: the two training stages of the student, on one process or many (torchrun).

Stage 1, ``pretrain`` (DMD3C): image + LiDAR simulated from the teacher's depth -> the teacher's
(pseudo-metric) depth. Stage 2, ``finetune``: image + LiDAR -> metric ground truth, with the
distillation terms of the three papers switched on by their weights in the config.

One YAML file configures a run (see ``config/train/*.yaml``; every key is a field of
:class:`TrainConfig`). The run folder gets:

- ``last.safetensors``: model, loss modules and AdamW state plus the step and config as metadata
  (safetensors only, no pickle); a run restarted with ``--resume`` continues from it exactly
  (the random crops depend on (seed, step, rank, slot) only, the learning rate on the step);
- ``best.safetensors``: the student weights with the lowest validation figure: the synthetic
  validation drives' HDL-64 RMSE, or with ``select: real`` the real validation frames' RMSE
  relative to the classical completion's (chosen on, never trained on);
- ``tensorboard/``: scalars (every loss term, learning rate, validation metrics, speed);
- ``history.jsonl``: the validation figures, one JSON line per validation.

Several processes: ``torchrun --nproc_per_node 2 -m dmd3c_ros.cli train ...`` (gloo on CPU, NCCL
on GPUs): DistributedDataParallel, each process draws its own crops, rank 0 writes.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import torch
from torch import nn

from dmd3c_ros.training.checkpoints import (WeightAverage, load_checkpoint,
                                            load_student_weights, save_checkpoint,
                                            widened_inputs)
from dmd3c_ros.training.objective import (Objective, TrainModule, build_model,
                                          normalise_relative, teacher_features)
from dmd3c_ros.training.synthetic import CropSampler, load_index, split_files
from dmd3c_ros.training.train_config import (DISTILLATION_TERMS, SELECT_KEYS,
                                             STAGES, TERMS, TrainConfig)
from dmd3c_ros.training.validation import (VAL_SIZE, lidar_covered, reference_errors,
                                           validate, validation_frames)

def run_device(name: str) -> torch.device:
    """The torch device of ``TrainConfig.device``; a clear error when it is not there."""
    try:
        device = torch.device(name)
    except RuntimeError as error:
        raise ValueError(f"device {name!r}: {error}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r}: this torch has no CUDA device (torch "
                         f"{torch.__version__}, CUDA build {torch.version.cuda}); use "
                         "--device cpu, or install a CUDA build of torch on a GPU machine")
    return device


def learning_rate(config: TrainConfig, step: int) -> float:
    """Linear warm-up, then cosine decay to 5 % of ``lr`` at ``steps``."""
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    progress = (step - config.warmup_steps) / max(1, config.steps - config.warmup_steps)
    return config.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def _distributed() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world


def training_sampler(config: TrainConfig, index: dict, classical: bool):
    """The batches of a run: crops of the synthetic cache, or with ``surround_cache`` pairs of
    adjacent surround views (``multiview.PairSampler``, the same crop processing)."""
    root, files = config.cache, split_files(index, "train")
    if config.surround_cache:
        from dmd3c_ros.training.multiview import PairSampler, load_surround_index
        root, files = config.surround_cache, load_surround_index(config.surround_cache)["frames"]
    crops = CropSampler(root, files, config.stage, crop=config.crop,
                        beam_probs=config.beam_probs, depth_scale=config.depth_scale,
                        seed=config.seed, classical=classical,
                        classical_max_depth=config.max_depth,
                        point_dropout=config.point_dropout, blob_dropout=config.blob_dropout,
                        range_dropout=config.range_dropout, lidar_shift=config.lidar_shift,
                        footprint=config.footprint, footprint_target=config.footprint_target,
                        texture=config.texture, holdout=config.holdout)
    if not config.surround_cache:
        return crops
    return PairSampler(config.surround_cache, crops, crop=config.crop,
                       samples=config.view_samples, seed=config.seed, files=list(files),
                       within_sweep=config.view_within_sweep)


def train(config: TrainConfig, *, resume: bool = False, stop_after: int | None = None,
          log=print, extra_validation=None) -> dict:
    """Run (or resume) one training run; returns the final figures (rank 0) or {} (others).

    ``extra_validation``: called with the student at every validation, returns more figures
    (``dmd3c train`` passes the real frames' figures, ``evaluation.real_frames``; with
    ``config.select == "real"`` its ``real_rmse_ratio`` picks the best checkpoint).

    ``stop_after``: stop (with a checkpoint) once that many steps of the schedule are done, as an
    interrupted run would; ``resume`` then continues it."""
    rank, world = _distributed()
    if config.threads:
        torch.set_num_threads(config.threads)
    torch.manual_seed(config.seed)
    out = Path(config.out)
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=1))
    index = load_index(config.cache)
    if config.stage == "pretrain" and not index.get("stage1"):
        raise ValueError(f"{config.cache} was built without the stage-1 arrays")
    device = run_device(config.device)
    student = build_model(config.variant)
    sampler = training_sampler(config, index, getattr(student, "needs_classical", False))
    if config.init:
        state, _ = load_student_weights(config.init)
        if config.init_strict:
            student.load_state_dict(state)
        else:  # e.g. a new head on a trained encoder: keep what fits by name and shape
            own = student.state_dict()
            kept = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
            kept.update(widened_inputs(state, own))
            if not kept:
                raise ValueError(f"init {config.init}: no tensor fits variant {config.variant}")
            student.load_state_dict(kept, strict=False)
            fresh = sorted(set(own) - set(kept))
            log(f"init {config.init}: {len(kept)} tensors loaded, {len(fresh)} start fresh: "
                f"{', '.join(fresh)}")
    module = TrainModule(student, Objective(config, student.config.decoder_widths[-1])).to(device)
    optimizer = torch.optim.AdamW(module.parameters(), lr=config.lr,
                                  weight_decay=config.weight_decay)
    average = WeightAverage(student, config.ema) if config.ema else None
    start = 0
    last = out / "last.safetensors"
    if resume:
        if not last.exists():
            raise FileNotFoundError(f"--resume: {last} does not exist")
        start = load_checkpoint(last, module, optimizer, average)
        log(f"resumed {last} at step {start}")
    runner = module
    if world > 1:
        runner = nn.parallel.DistributedDataParallel(module, find_unused_parameters=True)
    val = []
    writer = None
    history = out / "history.jsonl"
    key = SELECT_KEYS[config.select]
    best = {key: math.inf}
    real = None
    surround_val = None
    if rank == 0:
        val = validation_frames(config.cache, split_files(index, "val"), config.val_frames,
                                config.depth_scale)
        if config.surround_cache:  # held-out pairs of the surround rig, when the cache has them
            surround_val = sampler.validation_batch()
        if surround_val is None and config.select == "surround":
            raise ValueError(f"select: surround needs held-out pairs: build {config.surround_cache}"
                             "'s val split (python -m dmd3c_ros.training.multiview --split val)")
        real = extra_validation if (config.real_val or config.select == "real") else None
        if real is None and config.select == "real":
            raise ValueError("select: real needs the real-frame validation (dmd3c train passes "
                             "it when ../shared/data is there)")
        from torch.utils.tensorboard import SummaryWriter
        writer = SummaryWriter(str(out / "tensorboard"))
        if resume and history.exists():
            rows = [json.loads(x) for x in history.read_text().splitlines() if x.strip()]
            if rows:
                best = min(rows, key=lambda r: r.get(key, math.inf))
    bar = None
    if rank == 0 and config.progress:
        from tqdm import tqdm
        bar = tqdm(total=config.steps, initial=start, desc=f"{config.stage}", mininterval=5,
                   unit="step", dynamic_ncols=True)
    module.train()
    t0, done, running = time.perf_counter(), 0, {}
    summary: dict = {}
    end = config.steps if stop_after is None else min(config.steps, stop_after)
    for step in range(start, end):
        lr = learning_rate(config, step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        keys = [(step, rank, slot) for slot in range(config.batch_size)]
        batch = {k: torch.from_numpy(v).to(device) for k, v in sampler.batch(keys).items()}
        loss, terms = runner(batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), 5.0)
        optimizer.step()
        if average is not None:
            average.update(module.student)
        done += 1
        for k, v in {"total": float(loss.detach()), **terms}.items():
            running[k] = running.get(k, 0.0) + v
        if bar is not None:
            bar.update(1)
        if rank != 0:
            continue
        if (step + 1) % config.log_every == 0:
            for k, v in running.items():
                writer.add_scalar(f"train/{k}", v / config.log_every, step + 1)
            writer.add_scalar("train/lr", lr, step + 1)
            writer.add_scalar("time/steps_per_s", done / (time.perf_counter() - t0), step + 1)
            if bar is not None:
                bar.set_postfix(loss=f"{running['total'] / config.log_every:.4f}")
            running = {}
        final = step + 1 == config.steps
        if (step + 1) % config.val_every == 0 or final:
            judged = average.model if average is not None else module.student
            figures = validate(judged, val, config)
            if surround_val is not None:
                from dmd3c_ros.training.multiview import surround_figures
                figures.update(surround_figures(judged, surround_val, config.depth_scale))
            if real is not None:
                figures.update(real(judged))
            figures["step"] = step + 1
            for k, v in figures.items():
                if k != "step":
                    writer.add_scalar(f"val/{k}", v, step + 1)
            with history.open("a") as stream:
                stream.write(json.dumps(figures) + "\n")
            if figures[key] < best.get(key, math.inf):
                best = figures
                save_checkpoint(out / "best.safetensors", module, None, step + 1, config,
                                {"val": figures}, student=judged)
            summary = figures
        if (step + 1) % config.checkpoint_every == 0 or final or step + 1 == end:
            save_checkpoint(last, module, optimizer, step + 1, config, average=average)
    if bar is not None:
        bar.close()
    if writer is not None:
        writer.close()
    seconds = time.perf_counter() - t0
    in_sync = True
    if world > 1:  # every rank must hold the same weights after DDP's gradient averaging
        flat = torch.cat([p.detach().flatten() for p in module.parameters()])
        spread = flat.clone()
        torch.distributed.all_reduce(spread, op=torch.distributed.ReduceOp.MAX)
        in_sync = bool(torch.equal(spread, flat))
        flags = torch.tensor([float(in_sync)])
        torch.distributed.all_reduce(flags, op=torch.distributed.ReduceOp.MIN)
        in_sync = bool(flags.item())
        torch.distributed.barrier()
        torch.distributed.destroy_process_group()
    if rank != 0:
        return {}
    result = {"last": summary, "best": best, "steps": config.steps, "seconds": seconds,
              "steps_run": done, "world_size": world, "ranks_in_sync": in_sync}
    (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


# The trainer's public names, wherever they live now (the module was split along its seams).
__all__ = ["DISTILLATION_TERMS", "Objective", "SELECT_KEYS", "STAGES", "TERMS", "TrainConfig",
           "TrainModule", "VAL_SIZE", "WeightAverage", "build_model", "learning_rate",
           "lidar_covered", "load_checkpoint", "load_student_weights", "normalise_relative",
           "reference_errors", "run_device", "save_checkpoint", "teacher_features", "train",
           "validate", "validation_frames", "widened_inputs"]
