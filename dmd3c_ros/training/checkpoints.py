"""Checkpoints of a training run (safetensors, no pickle), the weight average, and loading weights
into a widened network."""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch
from torch import nn

from dmd3c_ros.training.objective import TrainModule
from dmd3c_ros.training.train_config import TrainConfig

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
    """(student state dict, metadata) from a training run's checkpoint or best-weights file
    (``model.*`` tensors) or an exported model's weights (plain state-dict keys, as
    ``models/*.safetensors``)."""
    from safetensors import safe_open
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file {path} does not exist")
    with safe_open(str(path), framework="pt") as f:
        meta, keys = f.metadata() or {}, list(f.keys())
        prefixed = any(k.startswith("model.") for k in keys)
        state = {k[len("model."):] if prefixed else k: f.get_tensor(k) for k in keys
                 if not prefixed or k.startswith("model.")}
    if not state:
        raise ValueError(f"{path}: no tensors (not a dmd3c checkpoint or student weights)")
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
