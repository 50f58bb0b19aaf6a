"""A model spec YAML written for an existing ONNX file (format: :mod:`runtime.spec`)."""
from __future__ import annotations

from pathlib import Path

from dmd3c_ros.core.io import sha256_file
from dmd3c_ros.runtime.spec import ModelSpec, ModelSpecError, TorchSpec


def write_spec(path, *, name: str, onnx, input_size, depth_scale: float, depth_range,
               supports_mono: bool, rgb_mean=(123.675, 116.28, 103.53),
               rgb_std=(58.395, 57.12, 57.375), opset: int = 17, rgb_input: str = "rgb",
               sparse_input: str = "sparse", depth_output: str = "depth",
               uncertainty_output: str | None = None, torch_factory: str | None = None,
               torch_kwargs: dict | None = None, torch_weights=None,
               classical_input: str | None = None, mono_model=None) -> ModelSpec:
    """Write a spec YAML for an existing ONNX file (its sha256 computed here) and return it.

    ``onnx`` and ``torch_weights`` are paths (absolute, or relative to the current directory);
    the YAML stores them relative to its own directory. ``input_size`` is (height, width).
    The default normalisation is the ImageNet mean/std on the 0-255 scale.
    """
    onnx = Path(onnx).expanduser().resolve()
    if not onnx.is_file():
        raise ModelSpecError(f"ONNX file {onnx} does not exist")
    torch_spec = None
    if torch_factory is not None:
        weights = Path(torch_weights).expanduser().resolve() if torch_weights else None
        torch_spec = TorchSpec(torch_factory, dict(torch_kwargs or {}), weights)
    spec = ModelSpec(name=name, onnx=onnx, sha256=sha256_file(onnx),
                     input_size=tuple(int(v) for v in input_size),
                     rgb_mean=tuple(float(v) for v in rgb_mean),
                     rgb_std=tuple(float(v) for v in rgb_std),
                     depth_scale=float(depth_scale),
                     depth_range=tuple(float(v) for v in depth_range),
                     supports_mono=bool(supports_mono), opset=int(opset), rgb_input=rgb_input,
                     sparse_input=sparse_input, depth_output=depth_output,
                     uncertainty_output=uncertainty_output, torch=torch_spec,
                     classical_input=classical_input,
                     mono_model=Path(mono_model).expanduser().resolve() if mono_model else None)
    return spec.save(path)
