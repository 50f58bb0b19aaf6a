"""Model spec: the contract between a depth network and the runtime, stored as YAML beside the ONNX.

Example (``models/student.yaml``; paths are relative to the YAML file)::

    name: student_s
    onnx: student_s.onnx
    sha256: 3f1c...e9      # sha256 of the ONNX file, checked when the spec is loaded
    opset: 17
    units: metres
    input_size: [256, 1216]   # [height, width] of the network input, pixels
    inputs:                   # ONNX input tensor names, both NCHW float32
      rgb: rgb                # (N, 3, h, w): (rgb_0_255 - mean) / std, RGB order
      sparse: sparse          # (N, 1, h, w): sparse_metres / depth_scale, 0 = no value
      classical: classical    # optional, (N, 1, h, w): the classical completion of that sparse
                              # map (pivot = depth_range max) / depth_scale, 0 = no value; made
                              # by the runtime (NetworkIO), never by the caller
      features: features      # with classical, in place of sparse: (N, 7, h, w), the maps of
                              # core.features made of sparse and classical by the runtime
    outputs:
      depth: depth            # (N, 1, h, w): depth_metres / depth_scale
      uncertainty: sigma      # optional, (N, 1, h, w): std_metres / depth_scale
    rgb_normalization:        # on the 0-255 scale
      mean: [123.675, 116.28, 103.53]
      std: [58.395, 57.12, 57.375]
    depth_scale: 80.0         # metres per network unit (inputs divided by it, outputs multiplied)
    depth_range: [0.5, 80.0]  # metres; network outputs are clipped to it
    supports_mono: true       # the network accepts an all-zero sparse input (no LiDAR)
    mono_model: other.yaml    # optional: the model that frames without LiDAR run instead
    classical_resolution: image  # with inputs.classical: "input" (default) = the classical
                              # completion of the network-size sparse map; "image" = of the
                              # camera-size map, resized to the input (nearest), and the output
                              # is that full-size completion times the network's correction
    rgb_used: false           # optional (default true): the network's output does not depend
                              # on its rgb input, so the runtime feeds zeros instead of
                              # resizing and normalising the image (the input stays in the graph)
    torch:                    # optional: how to rebuild the module in PyTorch (no pickle)
      factory: dmd3c_ros.training.student:build_student
      kwargs: {channels: 32}
      weights: student_s.safetensors

Missing keys, missing files and a wrong hash raise :class:`ModelSpecError` naming the file and key.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from dmd3c_ros.core.features import FEATURES
from dmd3c_ros.core.io import sha256_file


class ModelSpecError(ValueError):
    """A model spec YAML is missing, malformed, or does not match its ONNX file."""


@dataclass(frozen=True)
class TorchSpec:
    """How to rebuild the network in PyTorch: ``factory(**kwargs)`` then safetensors ``weights``."""

    factory: str                 # "package.module:function" returning an nn.Module
    kwargs: dict = field(default_factory=dict)
    weights: Path | None = None  # absolute path of the .safetensors file


@dataclass(frozen=True)
class ModelSpec:
    """A loaded model spec; paths are absolute. See the module docstring for the YAML format.

    ``input_size`` is (height, width) like the YAML; :attr:`input_wh` gives (width, height).
    """

    name: str
    onnx: Path
    sha256: str
    input_size: tuple[int, int]
    rgb_mean: tuple[float, float, float]
    rgb_std: tuple[float, float, float]
    depth_scale: float
    depth_range: tuple[float, float]
    supports_mono: bool
    opset: int = 17
    rgb_input: str = "rgb"
    sparse_input: str = "sparse"
    depth_output: str = "depth"
    uncertainty_output: str | None = None
    units: str = "metres"
    torch: TorchSpec | None = None
    path: Path | None = None     # the YAML file this spec was loaded from or saved to
    classical_input: str | None = None   # the input fed the classical completion, if any
    mono_model: Path | None = None       # spec YAML run for frames without LiDAR, if any
    classical_resolution: str = "input"  # "input": classical at the network's size; "image"
                                         # at the camera's, the correction applied there
    rgb_used: bool = True                # False: the output does not depend on the image
    features_input: str | None = None    # the input fed core.features' maps in place of sparse

    def __post_init__(self) -> None:
        where = str(self.path) if self.path else self.name
        if len(self.input_size) != 2 or min(self.input_size) <= 0:
            raise ModelSpecError(f"{where}: input_size must be positive, got {self.input_size}")
        if not self.depth_scale > 0:
            raise ModelSpecError(f"{where}: depth_scale must be positive, got {self.depth_scale}")
        lo, hi = self.depth_range
        if not 0 <= lo < hi:
            raise ModelSpecError(f"{where}: depth_range must be [min, max] with 0 <= min < max "
                                 f"metres, got {list(self.depth_range)}")
        if any(s <= 0 for s in self.rgb_std) or len(self.rgb_std) != 3 or len(self.rgb_mean) != 3:
            raise ModelSpecError(f"{where}: rgb_normalization needs 3 means and 3 positive stds")
        if self.classical_resolution not in ("input", "image"):
            raise ModelSpecError(f"{where}: classical_resolution must be 'input' or 'image', "
                                 f"got {self.classical_resolution!r}")
        if self.features_input and not self.classical_input:
            raise ModelSpecError(f"{where}: inputs.features needs inputs.classical (the maps "
                                 "are made of the sparse and classical inputs)")
        if self.units not in ("metres", "meters"):
            raise ModelSpecError(f"{where}: units must be 'metres', got {self.units!r}")

    @property
    def input_wh(self) -> tuple[int, int]:
        """(width, height) of the network input, the OpenCV order InputTransform takes."""
        return self.input_size[1], self.input_size[0]

    @property
    def inputs(self) -> list[tuple[str, int]]:
        """(ONNX input name, channels) in the network's positional order: rgb, sparse (or the
        feature maps) and, for a residual model, classical."""
        second = ((self.features_input, FEATURES) if self.features_input
                  else (self.sparse_input, 1))
        names = [(self.rgb_input, 3), second]
        if self.classical_input:
            names.append((self.classical_input, 1))
        return names

    @classmethod
    def load(cls, path, *, verify: bool = True) -> "ModelSpec":
        """Read a spec YAML; with ``verify`` the ONNX file's sha256 must match the spec's."""
        path = Path(path).expanduser().resolve()
        if not path.is_file():
            raise ModelSpecError(f"model spec {path} does not exist")
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError as error:
            raise ModelSpecError(f"{path}: not valid YAML: {error}") from error
        if not isinstance(data, dict):
            raise ModelSpecError(f"{path}: expected a mapping at the top level")
        spec = _from_dict(data, path)
        if verify:
            spec.verify()
        return spec

    def verify(self) -> None:
        """Raise ModelSpecError unless the ONNX file exists and has the spec's sha256."""
        where = self.path or self.name
        if not self.onnx.is_file():
            raise ModelSpecError(f"{where}: key 'onnx': file {self.onnx} does not exist")
        actual = sha256_file(self.onnx)
        if actual != self.sha256.lower():
            raise ModelSpecError(f"{where}: sha256 mismatch for {self.onnx}: the spec says "
                                 f"{self.sha256}, the file has {actual}")

    def to_dict(self, relative_to=None) -> dict[str, Any]:
        """The YAML mapping; paths relative to the directory ``relative_to`` when given."""
        def rel(p: Path) -> str:
            if relative_to is None:
                return str(p)
            try:
                return str(Path(p).resolve().relative_to(Path(relative_to).resolve()))
            except ValueError:
                return str(Path(p).resolve())
        outputs = {"depth": self.depth_output}
        if self.uncertainty_output:
            outputs["uncertainty"] = self.uncertainty_output
        data: dict[str, Any] = {
            "name": self.name, "onnx": rel(self.onnx), "sha256": self.sha256,
            "opset": int(self.opset), "units": "metres",
            "input_size": [int(v) for v in self.input_size],
            "inputs": {"rgb": self.rgb_input,
                       **({"features": self.features_input} if self.features_input
                          else {"sparse": self.sparse_input}),
                       **({"classical": self.classical_input} if self.classical_input else {})},
            "outputs": outputs,
            "rgb_normalization": {"mean": [float(v) for v in self.rgb_mean],
                                  "std": [float(v) for v in self.rgb_std]},
            "depth_scale": float(self.depth_scale),
            "depth_range": [float(v) for v in self.depth_range],
            "supports_mono": bool(self.supports_mono),
        }
        if self.mono_model is not None:
            data["mono_model"] = rel(self.mono_model)
        if self.classical_input:
            data["classical_resolution"] = self.classical_resolution
        if not self.rgb_used:
            data["rgb_used"] = False
        if self.torch is not None:
            data["torch"] = {"factory": self.torch.factory, "kwargs": dict(self.torch.kwargs)}
            if self.torch.weights is not None:
                data["torch"]["weights"] = rel(self.torch.weights)
        return data

    def save(self, path) -> "ModelSpec":
        """Write the spec YAML to ``path`` (paths stored relative to it); returns the saved spec."""
        path = Path(path).expanduser().resolve()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(relative_to=path.parent), sort_keys=False))
        return replace(self, path=path)


def _require(data: dict, key: str, path: Path, section: str = ""):
    if not isinstance(data, dict) or key not in data or data[key] is None:
        raise ModelSpecError(f"{path}: missing key '{section}{key}'")
    return data[key]


def _flag(value, key: str, path: Path) -> bool:
    if not isinstance(value, bool):
        raise ModelSpecError(f"{path}: key '{key}' must be true or false, got {value!r}")
    return value


def _from_dict(data: dict, path: Path) -> ModelSpec:
    base = path.parent
    inputs = _require(data, "inputs", path)
    outputs = _require(data, "outputs", path)
    norm = _require(data, "rgb_normalization", path)
    torch_spec = None
    if data.get("torch") is not None:
        section = data["torch"]
        factory = str(_require(section, "factory", path, "torch."))
        if ":" not in factory:
            raise ModelSpecError(f"{path}: key 'torch.factory' must be 'package.module:function', "
                                 f"got {factory!r}")
        weights = section.get("weights")
        torch_spec = TorchSpec(factory, dict(section.get("kwargs") or {}),
                               (base / weights).resolve() if weights else None)
    try:
        height, width = (int(v) for v in _require(data, "input_size", path))
        low, high = (float(v) for v in _require(data, "depth_range", path))
        return ModelSpec(
            name=str(_require(data, "name", path)),
            onnx=(base / str(_require(data, "onnx", path))).resolve(),
            sha256=str(_require(data, "sha256", path)).lower(),
            input_size=(height, width),
            rgb_mean=tuple(float(v) for v in _require(norm, "mean", path, "rgb_normalization.")),
            rgb_std=tuple(float(v) for v in _require(norm, "std", path, "rgb_normalization.")),
            depth_scale=float(_require(data, "depth_scale", path)),
            depth_range=(low, high),
            supports_mono=bool(_require(data, "supports_mono", path)),
            opset=int(_require(data, "opset", path)),
            rgb_input=str(_require(inputs, "rgb", path, "inputs.")),
            sparse_input=str(inputs.get("sparse") or "sparse") if inputs.get("features") else
            str(_require(inputs, "sparse", path, "inputs.")),
            depth_output=str(_require(outputs, "depth", path, "outputs.")),
            uncertainty_output=(str(outputs["uncertainty"]) if outputs.get("uncertainty")
                                else None),
            units=str(_require(data, "units", path)),
            torch=torch_spec,
            path=path,
            classical_input=(str(inputs["classical"]) if inputs.get("classical") else None),
            mono_model=((base / str(data["mono_model"])).resolve() if data.get("mono_model")
                        else None),
            classical_resolution=str(data.get("classical_resolution", "input")),
            rgb_used=_flag(data.get("rgb_used", True), "rgb_used", path),
            features_input=(str(inputs["features"]) if inputs.get("features") else None),
        )
    except (TypeError, ValueError) as error:
        if isinstance(error, ModelSpecError):
            raise
        raise ModelSpecError(f"{path}: malformed value: {error}") from error


def load_spec(path, *, verify: bool = True) -> ModelSpec:
    """Shorthand for :meth:`ModelSpec.load`."""
    return ModelSpec.load(path, verify=verify)
