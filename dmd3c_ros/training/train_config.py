"""One training run's configuration (:class:`TrainConfig`, a YAML of ``config/train/``) and the
names of the stages, loss terms and checkpoint-selection figures."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

STAGES = ("pretrain", "finetune")
# The validation figure that picks best.safetensors, per TrainConfig.select.
SELECT_KEYS = {"synthetic": "hdl64_rmse_m", "real": "real_rmse_ratio",
               "surround": "surround_rmse_m"}   # held-out surround pairs (surround_cache)
TERMS = ("depth", "log", "grad", "nll", "ssi", "bins", "feature", "focal", "uwd", "xview",
         "vrel", "sparse", "returns")
DISTILLATION_TERMS = ("ssi", "bins", "feature", "focal", "uwd", "vrel")
VIEW_TERMS = ("xview", "vrel")   # need the pairs of a surround cache (surround_cache)


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
    lidar_shift: int = 0          # move the returns by up to this many pixels (CropSampler)
    footprint: int = 0            # LiDAR beam footprint radius, pixels, on the returns ...
    footprint_target: bool = False  # ... and on the ground truth (CropSampler)
    texture: float = 0.0          # image texture noise of up to this log brightness (CropSampler)
    holdout: float = 0.0          # share of the input's returns held out as targets (the
                                  # "returns" term; CropSampler)
    surround_cache: str = ""      # set: every batch is pairs of adjacent views of the synthetic
                                  # surround rig (training.multiview), batch_size pairs
    view_samples: int = 128       # correspondences per pair (xview, vrel)
    view_within_sweep: bool = False  # correspondences only inside the sweep (PairSampler)
    real_val: bool = True         # also validate on the real frames of ../shared/data
    real_splits: int = 1          # held-out LiDAR splits per real frame (evaluation.real_frames):
                                  # 1 = the object frame's seed 0 only (how version 6 was chosen)
    select: str = "synthetic"     # best checkpoint by: "synthetic" (hdl64_rmse_m), "real"
                                  # or "surround" (held-out surround pairs' RMSE)
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
        for key in ("cache", "out", "init", "surround_cache"):
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
        if self.select not in SELECT_KEYS:
            raise ValueError(f"select must be one of {sorted(SELECT_KEYS)}, got {self.select!r}")
        if self.select == "surround" and not self.surround_cache:
            raise ValueError("select: surround needs surround_cache (its held-out pairs)")
        if any(self.weights.get(t, 0) for t in VIEW_TERMS) and not self.surround_cache:
            raise ValueError(f"the loss terms {VIEW_TERMS} need surround_cache (pairs of views)")
        if self.weights.get("returns", 0) and not 0.0 < self.holdout < 1.0:
            raise ValueError("the loss term 'returns' needs holdout in (0, 1): the share of the "
                             "input's returns held out as its targets")
        if not 1 <= self.real_splits <= 20:
            raise ValueError(f"real_splits must be in [1, 20], got {self.real_splits}")
        if self.crop[0] % 32 or self.crop[1] % 32:
            raise ValueError(f"crop {self.crop} must be multiples of 32")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)
