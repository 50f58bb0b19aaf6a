"""PyTorch backend: runs the student as an nn.Module (eager, CPU by default).

The module's ``forward(rgb, sparse[, classical])`` takes the NCHW float32 tensors described by the spec
(positional, in that order) and returns the depth tensor, or a tuple whose first item is depth and
second item is the uncertainty when the spec names one: the same order as the ONNX outputs it is
exported with. The module comes either directly (``module=``) or from the spec's ``torch`` section:
``factory(**kwargs)`` imported with importlib, then the safetensors weights (never a pickle).
"""
from __future__ import annotations

import importlib

import numpy as np

from dmd3c_ros.runtime.base import BackendError, BackendUnavailableError
from dmd3c_ros.runtime.network import NetworkBackend
from dmd3c_ros.runtime.spec import ModelSpec, ModelSpecError


def _import_torch():
    try:
        import torch
    except ImportError as error:
        raise BackendUnavailableError(
            "backend 'torch' needs PyTorch: pip install torch (the CPU build is enough)") from error
    return torch


def build_module(spec: ModelSpec):
    """The nn.Module described by the spec's ``torch`` section, with its weights loaded.

    Raises:
        ModelSpecError: no torch section, a factory that cannot be imported, or missing weights.
        BackendError: the weights do not fit the module.
    """
    section = spec.torch
    where = spec.path or spec.name
    if section is None:
        raise ModelSpecError(f"{where}: no 'torch' section; pass the module directly or add "
                             "torch.factory and torch.weights to the spec")
    module_name, _, function_name = section.factory.partition(":")
    try:
        factory = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise ModelSpecError(f"{where}: key 'torch.factory': cannot import "
                             f"{section.factory!r}: {error}") from error
    module = factory(**section.kwargs)
    if section.weights is not None:
        if not section.weights.is_file():
            raise ModelSpecError(f"{where}: key 'torch.weights': file {section.weights} "
                                 "does not exist")
        try:
            from safetensors.torch import load_file
        except ImportError as error:
            raise BackendUnavailableError("loading torch weights needs safetensors: "
                                          "pip install safetensors") from error
        try:
            module.load_state_dict(load_file(str(section.weights)), strict=True)
        except RuntimeError as error:
            raise BackendError(f"weights {section.weights} do not fit "
                               f"{section.factory}(**{section.kwargs}): {error}") from error
    return module


class TorchBackend(NetworkBackend):
    """Runs a PyTorch module under the spec's pre/post-processing.

    Args:
        spec: the model spec (input size, tensor names, normalisation, depth scale and range).
        module: an nn.Module to run; None = build it from the spec's torch section.
        device: torch device string ("cpu" by default).
        max_batch: most frames per forward call; None = all frames of a batch at once.
    """

    name = "torch"

    def __init__(self, spec: ModelSpec, module=None, *, device: str = "cpu",
                 max_batch: int | None = None) -> None:
        super().__init__(spec)
        self._torch = _import_torch()
        self.device = self._torch.device(device)
        self.module = (module if module is not None else build_module(spec)).to(self.device)
        self.module.eval()
        self.max_batch = max_batch

    def _run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        torch, spec = self._torch, self.spec
        tensors = [torch.from_numpy(feeds[name]).to(self.device) for name, _ in spec.inputs]
        try:
            with torch.inference_mode():
                result = self.module(*tensors)
        except Exception as error:
            raise BackendError(f"torch model '{spec.name}' failed: {error}") from error
        results = list(result) if isinstance(result, (tuple, list)) else [result]
        names = [spec.depth_output] + ([spec.uncertainty_output]
                                       if spec.uncertainty_output else [])
        if len(results) < len(names):
            raise BackendError(f"torch model '{spec.name}' returned {len(results)} tensor(s), "
                               f"the spec expects {names}")
        return {name: value.detach().float().cpu().numpy()
                for name, value in zip(names, results)}

    def close(self) -> None:
        self.module = None
