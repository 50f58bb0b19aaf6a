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
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dmd3c_ros.training import losses as L
from dmd3c_ros.training.residual import RESIDUAL_VARIANTS, build_residual_student
from dmd3c_ros.training.student import build_student
from dmd3c_ros.training.synthetic import CropSampler, keep_beams, load_index, normalise_rgb, \
    split_files

STAGES = ("pretrain", "finetune")
# The validation figure that picks best.safetensors, per TrainConfig.select.
SELECT_KEYS = {"synthetic": "hdl64_rmse_m", "real": "real_rmse_ratio"}
TERMS = ("depth", "log", "grad", "nll", "ssi", "bins", "feature", "focal", "uwd")
DISTILLATION_TERMS = ("ssi", "bins", "feature", "focal", "uwd")


@dataclass
class TrainConfig:
    """One training run. Paths are relative to the config file's folder unless absolute."""

    stage: str = "finetune"
    cache: str = "../../out/synthetic_cache"   # built by python -m dmd3c_ros.training.synthetic
    out: str = "../../out/train/run"
    variant: str = "tiny"
    init: str | None = None       # weights to start from (e.g. the pretrain run's best)
    init_strict: bool = True      # False: load the tensors that fit, the rest start fresh
    steps: int = 1000
    batch_size: int = 4
    crop: tuple[int, int] = (192, 640)
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_steps: int = 100
    seed: int = 0
    threads: int = 0              # torch intra-op threads per process; 0 = torch's default
    device: str = "cpu"           # torch device of the run: cpu, cuda, cuda:1 ...
    depth_scale: float = 80.0     # metres per network unit (as in the model spec)
    max_depth: float = 80.0       # ground truth beyond it is not supervised
    point_dropout: float = 0.0    # LiDAR augmentation: drop up to this share of the returns
    blob_dropout: int = 0         # ... and up to this many patches of them (CropSampler)
    range_dropout: float = 0.0    # share of crops that lose far / dark returns (CropSampler)
    real_val: bool = True         # also validate on the real frames of ../shared/data
    select: str = "synthetic"     # best checkpoint by: "synthetic" (hdl64_rmse_m) or "real"
    ema: float = 0.0              # > 0: validate and keep an exponential moving average of
                                  # the weights (decay per step), not the raw weights
    beam_probs: dict = field(default_factory=lambda: {64: 0.45, 32: 0.15, 16: 0.15, 8: 0.1,
                                                      0: 0.15})
    weights: dict = field(default_factory=dict)   # term -> weight; missing terms are off
    log_every: int = 20
    val_every: int = 250
    val_frames: int = 24
    checkpoint_every: int = 250
    progress: bool = True

    @classmethod
    def load(cls, path, **overrides) -> "TrainConfig":
        import yaml
        path = Path(path)
        raw = yaml.safe_load(path.read_text()) or {}
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown keys {sorted(unknown)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        for key in ("cache", "out", "init"):
            if raw.get(key) and not Path(raw[key]).is_absolute():
                raw[key] = str((path.parent / raw[key]).resolve())
        if "crop" in raw:
            raw["crop"] = tuple(raw["crop"])
        if "beam_probs" in raw:
            raw["beam_probs"] = {int(k): float(v) for k, v in raw["beam_probs"].items()}
        config = cls(**raw)
        config.check()
        return config

    def check(self) -> None:
        if self.stage not in STAGES:
            raise ValueError(f"stage must be one of {STAGES}, got {self.stage!r}")
        unknown = set(self.weights) - set(TERMS)
        if unknown:
            raise ValueError(f"unknown loss terms {sorted(unknown)}; terms: {TERMS}")
        if self.stage == "pretrain" and any(self.weights.get(t, 0) for t in DISTILLATION_TERMS
                                            if t != "ssi"):
            raise ValueError("pretrain supervises with the teacher's depth directly; the "
                             "distillation terms (bins, feature, focal, uwd) are for finetune")
        if self.select not in ("synthetic", "real"):
            raise ValueError(f"select must be 'synthetic' or 'real', got {self.select!r}")
        if self.crop[0] % 32 or self.crop[1] % 32:
            raise ValueError(f"crop {self.crop} must be multiples of 32")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


def teacher_features(teacher: torch.Tensor, size) -> torch.Tensor:
    """A feature map from a teacher that exposes only its output (the simulated teacher): per
    image min-max normalised relative inverse depth, its x and y Sobel gradients and Laplacian,
    at ``size``. With Depth Anything the trainer would take hidden states instead."""
    n = teacher.shape[0]
    flat = teacher.flatten(1)
    lo, hi = flat.amin(1).view(n, 1, 1, 1), flat.amax(1).view(n, 1, 1, 1)
    u = (teacher - lo) / (hi - lo).clamp_min(1e-6)
    u = F.interpolate(u, size=size, mode="bilinear", align_corners=False)
    kx = torch.tensor([[-1.0, 0, 1], [-2, 0, 2], [-1, 0, 1]], dtype=u.dtype, device=u.device) / 8
    lap = torch.tensor([[0.0, 1, 0], [1, -4, 1], [0, 1, 0]], dtype=u.dtype, device=u.device) / 4
    kernels = torch.stack([kx, kx.t(), lap])[:, None]
    grads = F.conv2d(F.pad(u, (1, 1, 1, 1), mode="replicate"), kernels) * 10.0
    return torch.cat([u, grads], 1)


def normalise_relative(teacher: torch.Tensor) -> torch.Tensor:
    """Relative inverse depth / its per-image mean absolute deviation from the median: the
    teacher's unknown scale would otherwise scale every teacher-space loss (MiDaS does the same)."""
    flat = teacher.flatten(1)
    med = flat.median(1).values.view(-1, 1, 1, 1)
    mad = (teacher - med).abs().flatten(1).mean(1).view(-1, 1, 1, 1)
    return teacher / mad.clamp_min(1e-6)


class Objective(nn.Module):
    """The weighted loss terms of a stage (network units unless a loss says metres).

    depth: L1 + 0.2 x L2 to the target in metres (+ 0.5 x L1 of the bin expectation before
    refinement); log: L1 of log depth (relative error); grad: multi-scale gradient matching to the target (metres); nll: Laplacian NLL of the uncertainty head
    (depth detached); ssi: scale-and-shift-invariant loss of the student's inverse depth to the
    teacher's relative inverse depth; bins: KL of the student's bin probabilities to the teacher
    (aligned to the metric target by least squares in inverse depth) soft-assigned to the
    student's own metric centres; feature: attention-adapted feature distillation of the last
    decoder features to :func:`teacher_features`; focal: focal-depth-adapted response
    distillation to the aligned teacher (metres); uwd: distillation to the aligned teacher
    weighted by the student's own uncertainty (metres)."""

    def __init__(self, config: TrainConfig, feature_channels: int):
        super().__init__()
        self.config = config
        self.w = {t: float(config.weights.get(t, 1.0 if t == "depth" else 0.0)) for t in TERMS}
        self.l1, self.l2 = L.MaskedL1(), L.MaskedL2()
        self.grad = L.GradientMatchingLoss(4)
        self.nll = L.LaplacianNLL(min_std=1e-3)
        self.ssi = L.ScaleShiftInvariantLoss()
        self.bins = L.BinDistillationLoss(from_logits=False)
        self.feature = L.AttentionFeatureDistillation(feature_channels, 4) \
            if self.w["feature"] else None
        self.focal = L.FocalDepthResponseLoss()
        self.uwd = L.UncertaintyWeightedDistillation(u0=1.0)

    def aligned_teacher(self, teacher, target, valid):
        """Teacher relative inverse depth -> depth in network units, least-squares aligned in
        inverse depth to the target's valid pixels; (depth, mask)."""
        inv_target = torch.where(valid, 1.0 / target.clamp_min(1e-6), torch.zeros_like(target))
        s, t, ok = L.align_scale_shift(teacher, inv_target, valid)
        inv = (s * teacher + t).detach()
        lo = 1.0 / (self.config.max_depth / self.config.depth_scale)
        good = (inv > lo) & (ok > 0)
        return torch.where(good, 1.0 / inv.clamp_min(lo), torch.zeros_like(inv)), good

    def forward(self, out: dict, batch: dict) -> tuple[torch.Tensor, dict]:
        cfg, w = self.config, self.w
        target = batch["target"]
        limit = cfg.max_depth / cfg.depth_scale
        valid = (target > 0) & (target <= limit) & torch.isfinite(target)
        depth, unc = out["depth"], out["uncertainty"]
        terms = {}
        scale = cfg.depth_scale
        d_m, t_m = depth * scale, target * scale
        terms["depth"] = self.l1(d_m, t_m, valid) + 0.2 * self.l2(d_m, t_m, valid)
        if "coarse_depth" in out:  # the bin expectation before refinement (Student only)
            terms["depth"] = terms["depth"] + 0.5 * self.l1(out["coarse_depth"] * scale, t_m,
                                                            valid)
        if w["log"]:  # relative error: a near pixel counts as much as a far one
            positive = valid & (depth > 0)
            terms["log"] = self.l1(torch.log(depth.clamp_min(1e-6)),
                                   torch.log(target.clamp_min(1e-6)), positive)
        if w["grad"]:
            terms["grad"] = self.grad(d_m, t_m, valid)
        if w["nll"]:
            terms["nll"] = self.nll(depth.detach(), unc, target, valid)
        teacher = normalise_relative(batch["teacher"])
        if w["ssi"]:
            inv = 1.0 / (depth * cfg.depth_scale).clamp_min(1e-3)
            terms["ssi"] = self.ssi(inv, teacher, torch.isfinite(teacher) & (depth > 0))
        if any(w[t] for t in ("bins", "focal", "uwd")):
            t_depth, t_valid = self.aligned_teacher(teacher, target, valid)
            if w["bins"]:
                small = F.interpolate(t_depth, size=out["bin_probs"].shape[-2:], mode="nearest")
                small_valid = F.interpolate(t_valid.float(), size=small.shape[-2:],
                                            mode="nearest") > 0
                q = L.metric_bin_probabilities(small, out["bin_centres"], small_valid)
                terms["bins"] = self.bins(out["bin_probs"], q, small_valid)
            if w["focal"]:
                terms["focal"] = self.focal(depth * scale, t_depth * scale, t_valid)
            if w["uwd"]:
                terms["uwd"] = self.uwd(depth * scale, t_depth * scale, unc * scale, t_valid)
        if self.feature is not None:
            feats = out["features"]
            terms["feature"] = self.feature(feats, teacher_features(teacher, feats.shape[-2:]))
        total = sum(w[k] * v for k, v in terms.items())
        return total, {k: float(v.detach()) for k, v in terms.items()}


class TrainModule(nn.Module):
    """Student + objective in one module, so that DistributedDataParallel syncs both."""

    def __init__(self, student: nn.Module, objective: Objective):
        super().__init__()
        self.student, self.objective = student, objective

    def forward(self, batch: dict):
        extra = (batch["classical"],) if "classical" in batch else ()
        out = self.student.forward_with_aux(batch["rgb"], batch["sparse"], *extra)
        return self.objective(out, batch)


def build_model(variant: str) -> nn.Module:
    """A student (:mod:`training.student`) or residual student (:mod:`training.residual`)."""
    if variant in RESIDUAL_VARIANTS:
        return build_residual_student(variant)
    return build_student(variant)


def widened_inputs(state: dict, own: dict) -> dict:
    """Tensors of ``state`` whose input channels (dim 1) grew in ``own`` (new input features):
    copied into the first channels, the new channels zero, so the network computes what it did
    before and can learn to use the new inputs."""
    out = {}
    for key, value in state.items():
        target = own.get(key)
        if (target is None or value.ndim < 2 or target.shape == value.shape
                or target.shape[0] != value.shape[0] or target.shape[2:] != value.shape[2:]
                or target.shape[1] <= value.shape[1]):
            continue
        grown = torch.zeros_like(target)
        grown[:, :value.shape[1]] = value
        out[key] = grown
    return out


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


def _classical_tensor(sparse_units: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    """(1,1,h,w) classical completion of a (1,1,h,w) sparse map, both in network units."""
    from dmd3c_ros.core.classical import complete_classical
    metres = sparse_units[0, 0].numpy() * config.depth_scale
    filled = np.nan_to_num(complete_classical(metres, max_depth=config.max_depth), nan=0.0)
    return torch.from_numpy(filled / config.depth_scale).float()[None, None]


# ---- checkpoints (safetensors, no pickle) -------------------------------------------------

class WeightAverage:
    """Exponential moving average of a student's weights and of its batch-norm statistics (the
    float buffers; averaged weights with the current statistics were measured to be far worse):
    the averaged network changes slowly, so checkpoints chosen on a few real frames are less a
    matter of which step happened to be validated."""

    def __init__(self, student: nn.Module, decay: float) -> None:
        import copy
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must lie in (0, 1), got {decay}")
        self.decay = float(decay)
        self.model = copy.deepcopy(student).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        for mine, theirs in zip(self.model.parameters(), student.parameters()):
            mine.mul_(self.decay).add_(theirs.detach(), alpha=1.0 - self.decay)
        for mine, theirs in zip(self.model.buffers(), student.buffers()):
            if mine.is_floating_point():
                mine.mul_(self.decay).add_(theirs.detach(), alpha=1.0 - self.decay)
            else:  # e.g. num_batches_tracked
                mine.copy_(theirs)


def save_checkpoint(path, module: TrainModule, optimizer: torch.optim.Optimizer | None,
                    step: int, config: TrainConfig, extra: dict | None = None, *,
                    student: nn.Module | None = None, average: WeightAverage | None = None
                    ) -> None:
    """Model (``model.*``), loss modules (``objective.*``), AdamW state (``optim.*``) and the
    weight average (``ema.*``) with the step and config as metadata; with ``optimizer=None``
    the student weights only (``student``'s when given, e.g. the weight average's model)."""
    from safetensors.torch import save_file
    tensors = {f"model.{k}": v.detach().cpu().contiguous().clone()
               for k, v in (student or module.student).state_dict().items()}
    if average is not None:
        tensors.update({f"ema.{k}": v.detach().cpu().contiguous().clone()
                        for k, v in average.model.state_dict().items()})
    if optimizer is not None:
        tensors.update({f"objective.{k}": v.detach().cpu().contiguous().clone()
                        for k, v in module.objective.state_dict().items()})
    for index, state in (optimizer.state_dict()["state"] if optimizer else {}).items():
        for key, value in state.items():
            tensors[f"optim.{index}.{key}"] = (torch.as_tensor(value).detach().cpu()
                                               .contiguous().clone())
    meta = {"step": str(step), "config": config.to_json(), "stage": config.stage,
            "variant": config.variant, **{k: json.dumps(v) for k, v in (extra or {}).items()}}
    tmp = Path(str(path) + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)


def load_student_weights(path) -> tuple[dict, dict]:
    """(student state dict, metadata) from a checkpoint or best-weights file."""
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        state = {k[len("model."):]: f.get_tensor(k) for k in f.keys() if k.startswith("model.")}
    if not state:
        raise ValueError(f"{path}: no model.* tensors (not a dmd3c checkpoint)")
    return state, meta


def load_checkpoint(path, module: TrainModule, optimizer: torch.optim.Optimizer,
                    average: WeightAverage | None = None) -> int:
    from safetensors import safe_open
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        tensors = {k: f.get_tensor(k) for k in f.keys()}
    module.student.load_state_dict({k[6:]: v for k, v in tensors.items()
                                    if k.startswith("model.")})
    if average is not None:
        ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
        average.model.load_state_dict(ema or module.student.state_dict())
    module.objective.load_state_dict({k[10:]: v for k, v in tensors.items()
                                      if k.startswith("objective.")})
    state = optimizer.state_dict()
    per_param: dict[int, dict] = {}
    for key, value in tensors.items():
        if key.startswith("optim."):
            _, index, name = key.split(".", 2)
            per_param.setdefault(int(index), {})[name] = value
    state["state"] = per_param
    optimizer.load_state_dict(state)
    return int(meta["step"])


# ---- validation -----------------------------------------------------------------------------

VAL_SIZE = (352, 1216)


def validation_frames(root, files, count: int, depth_scale: float):
    """Bottom-centre 352x1216 crops of the first ``count`` validation frames, as tensors."""
    frames = []
    for name in files[:count]:
        data = np.load(Path(root) / name)
        h, w = data["depth"].shape
        y0, x0 = h - VAL_SIZE[0], (w - VAL_SIZE[1]) // 2
        crop = (slice(y0, y0 + VAL_SIZE[0]), slice(x0, x0 + VAL_SIZE[1]))
        frames.append({"rgb": torch.from_numpy(normalise_rgb(data["rgb"][crop]))[None],
                       "sparse": torch.from_numpy(data["sparse"][crop] / depth_scale)[None, None],
                       "ring": data["ring"][crop], "gt": data["depth"][crop],
                       "teacher": data["teacher"][crop]})
    return frames


def reference_errors(frame: dict, config: TrainConfig) -> dict:
    """What the student is measured against on one validation frame, in metres (GT <=
    max_depth): the classical completion of its HDL-64 sweep and the teacher aligned to the
    ground truth (least squares in inverse depth, an oracle scale and shift)."""
    from dmd3c_ros.core.classical import complete_classical
    gt = frame["gt"]
    valid = (gt > 0) & (gt <= config.max_depth)
    sparse = frame["sparse"][0, 0].numpy() * config.depth_scale
    classical = complete_classical(sparse, max_depth=config.max_depth)
    classical = np.where(np.isfinite(classical), classical, 0.0)
    x, y = frame["teacher"][valid].astype(np.float64), 1.0 / gt[valid].astype(np.float64)
    scale, shift = np.polyfit(x, y, 1)
    teacher = 1.0 / np.clip(scale * frame["teacher"] + shift, 1.0 / config.max_depth, None)
    figures = {}
    for name, depth in (("classical_hdl64", classical), ("teacher_aligned", teacher)):
        err = depth[valid] - gt[valid]
        figures[f"{name}_rmse_m"] = float(np.sqrt(np.mean(err ** 2)))
        figures[f"{name}_mae_m"] = float(np.mean(np.abs(err)))
    return figures


def lidar_covered(sparse: np.ndarray) -> np.ndarray:
    """(h, w) bool: the pixels at or below the top-most LiDAR return of their column, the region
    where real benchmarks have ground truth (KITTI's is accumulated LiDAR); none in a column
    without a return."""
    has = sparse > 0
    top = np.where(has.any(0), has.argmax(0), sparse.shape[0])
    return np.arange(sparse.shape[0])[:, None] >= top[None, :]


@torch.no_grad()
def validate(student: nn.Module, frames, config: TrainConfig) -> dict:
    """RMSE / MAE (metres) with 64 and 16 beams, AbsRel without LiDAR (not for the residual
    student, which needs LiDAR), on GT <= max_depth; with 64 beams on the LiDAR-covered part of
    the frame alone (``hdl64_covered_*``, see :func:`lidar_covered`); and the references of
    :func:`reference_errors` (``classical_hdl64_*``, ``teacher_aligned_*``)."""
    was = student.training
    student.eval()
    sums = {}
    residual = getattr(student, "needs_classical", False)
    runs = (("hdl64", 64), ("beams16", 16)) + ((("mono", 0),) if not residual else ())
    try:
        for frame in frames:
            if "reference" not in frame:  # computed once per frame, reported every time
                frame["reference"] = reference_errors(frame, config)
            for key, value in frame["reference"].items():
                sums.setdefault(key, []).append(value)
            gt = frame["gt"]
            valid = (gt > 0) & (gt <= config.max_depth)
            sparse64 = frame["sparse"]
            for label, beams in runs:
                sp = sparse64 if beams == 64 else torch.from_numpy(keep_beams(
                    sparse64[0, 0].numpy(), frame["ring"], beams))[None, None]
                extra = (_classical_tensor(sp, config),) if residual else ()
                device = next(student.parameters()).device
                inputs = [t.to(device) for t in (frame["rgb"], sp, *extra)]
                depth = student(*inputs)[0][0, 0].cpu().numpy() * config.depth_scale
                depth = np.clip(depth, 0.5, config.max_depth)
                err = depth[valid] - gt[valid]
                sums.setdefault(f"{label}_rmse_m", []).append(float(np.sqrt(np.mean(err ** 2))))
                sums.setdefault(f"{label}_mae_m", []).append(float(np.mean(np.abs(err))))
                sums.setdefault(f"{label}_absrel", []).append(
                    float(np.mean(np.abs(err) / gt[valid])))
                if beams == 64:
                    covered = valid & lidar_covered(sp[0, 0].numpy())
                    err = depth[covered] - gt[covered]
                    sums.setdefault("hdl64_covered_rmse_m", []).append(
                        float(np.sqrt(np.mean(err ** 2))) if err.size else float("nan"))
                    sums.setdefault("hdl64_covered_mae_m", []).append(
                        float(np.mean(np.abs(err))) if err.size else float("nan"))
    finally:
        student.train(was)
    return {k: float(np.mean(v)) for k, v in sums.items()}


# ---- the loop ---------------------------------------------------------------------------------

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
    sampler = CropSampler(config.cache, split_files(index, "train"), config.stage,
                          crop=config.crop, beam_probs=config.beam_probs,
                          depth_scale=config.depth_scale, seed=config.seed,
                          classical=getattr(student, "needs_classical", False),
                          classical_max_depth=config.max_depth,
                          point_dropout=config.point_dropout, blob_dropout=config.blob_dropout,
                          range_dropout=config.range_dropout)
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
    if rank == 0:
        val = validation_frames(config.cache, split_files(index, "val"), config.val_frames,
                                config.depth_scale)
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

