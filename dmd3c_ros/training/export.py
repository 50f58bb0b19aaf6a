"""``dmd3c export``: a trained student as ONNX + model spec YAML + safetensors, with a parity check.

From a student weights file (``best.safetensors`` or ``last.safetensors`` of a training run:
tensors ``model.<state-dict key>``, metadata ``variant``) :func:`export_student` writes, in
``out_dir``:

- ``NAME.onnx``: opset 17, standard operators, inputs ``rgb`` (N, 3, h, w) and ``sparse``
  (N, 1, h, w) (a residual student: ``rgb``, ``features`` (N, 7, h, w) or ``sparse``, and
  ``classical`` (N, 1, h, w)), outputs ``depth`` and ``uncertainty`` (N, 1, h, w), dynamic batch;
- ``NAME.safetensors``: the student weights with plain state-dict keys (what the ``torch``
  backend loads; safetensors, never a pickle);
- ``NAME.yaml``: the model spec (format: :mod:`dmd3c_ros.runtime.spec`; written here with PyYAML
  because ``training`` does not import ``runtime``; the tests load it with the runtime's loader).

Then ONNX Runtime (CPU) and PyTorch run the same seeded random inputs at ``input_size``, one
LiDAR-like (about 5 % of the pixels hold a depth) and one all-zero (mono), and the largest
relative error ``|onnx - torch| / |torch|`` of depth and uncertainty (both > 0 by construction)
must stay within :data:`PARITY_RTOL`, else :class:`ExportParityError` and nothing is left in
``out_dir``. The absolute differences in metres are reported too (:mod:`training.parity`).
"""
from __future__ import annotations

import json
import os
import warnings
from dataclasses import replace
from pathlib import Path

import torch
import yaml

from dmd3c_ros.core.features import FEATURES
from dmd3c_ros.core.io import sha256_file
from dmd3c_ros.training.parity import (FEATURES_INPUT, OUTPUT_NAMES, PARITY_RTOL,
                                       ExportParityError, input_names, parity_check,
                                       takes_features)
from dmd3c_ros.training.student import count_parameters
from dmd3c_ros.training.images import RGB_MEAN, RGB_STD  # what the trainer normalises with

OPSET = 17
FACTORY = "dmd3c_ros.training.student:build_student"
RESIDUAL_FACTORY = "dmd3c_ros.training.residual:build_residual_student"


def _check_size(input_size) -> tuple[int, int]:
    height, width = (int(v) for v in input_size)
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"input size must be positive multiples of 32 (height, width), got "
                         f"{height}x{width}")
    return height, width


def torch_factory(model: torch.nn.Module) -> str:
    """The spec's ``torch.factory`` that rebuilds ``model``'s kind of student."""
    default = RESIDUAL_FACTORY if getattr(model, "needs_classical", False) else FACTORY
    return getattr(model, "factory", default)


def export_onnx(model: torch.nn.Module, path, input_size, *, opset: int = OPSET) -> Path:
    """Export a student (eval mode expected) to ONNX at ``input_size`` (height, width) with a
    dynamic batch axis; checks the graph with ``onnx.checker`` when onnx is installed."""
    height, width = _check_size(input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = input_names(model)
    args = (torch.zeros(1, 3, height, width),) + tuple(
        torch.zeros(1, FEATURES if name == FEATURES_INPUT else 1, height, width)
        for name in names[1:])
    with warnings.catch_warnings():  # the TorchScript exporter is deprecated but still exact
        warnings.simplefilter("ignore")
        torch.onnx.export(model, args, str(path), input_names=list(names),
                          output_names=list(OUTPUT_NAMES), opset_version=int(opset),
                          dynamo=False,
                          dynamic_axes={n: {0: "batch"} for n in names + OUTPUT_NAMES})
    try:
        import onnx
    except ImportError:
        return path
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    return path


def trained_range(weights) -> tuple[float, float]:
    """(depth_scale, max_depth) metres a checkpoint was trained with (80, 80 when it does not
    say: the first students')."""
    from safetensors import safe_open
    with safe_open(str(weights), framework="pt") as f:   # the metadata only, no tensor read
        meta = f.metadata() or {}
    config = json.loads(meta["config"]) if meta.get("config") else {}
    return float(config.get("depth_scale", 80.0)), float(config.get("max_depth", 80.0))


def _load_state(weights, variant: str | None, depth_scale: float, image_weights=None):
    """(student module with the weights, variant) from a ``model.*`` safetensors file; with
    ``image_weights`` (an image student's weights) the composite of both
    (:mod:`training.above_lidar`, ``variant`` names it)."""
    from dmd3c_ros.training.above_lidar import ABOVE_VARIANTS, compose_weights
    from dmd3c_ros.training.trainer import build_model, load_student_weights
    weights = Path(weights)
    state, meta = load_student_weights(weights)
    if image_weights is not None:
        if variant not in ABOVE_VARIANTS:
            raise ValueError(f"image weights need a composite variant ({sorted(ABOVE_VARIANTS)}), "
                             f"got {variant!r}")
        state = compose_weights(state, load_student_weights(image_weights)[0])
    chosen = variant or meta.get("variant")
    if not chosen:
        raise ValueError(f"{weights}: no 'variant' in the metadata; name the student variant "
                         "(--variant)")
    trained = json.loads(meta["config"]).get("depth_scale") if meta.get("config") else None
    if trained is not None and float(trained) != float(depth_scale):
        raise ValueError(f"{weights}: trained with depth_scale {trained}, exporting with "
                         f"{depth_scale}: the spec would scale depths wrongly")
    model = build_model(chosen)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or mismatched:
        detail = "; ".join(part for part in (
            f"{len(missing)} missing (e.g. {missing[0]})" if missing else "",
            f"{len(unexpected)} unexpected (e.g. {unexpected[0]})" if unexpected else "",
            (f"{len(mismatched)} of another shape (e.g. {mismatched[0]}: file "
             f"{tuple(state[mismatched[0]].shape)}, variant {tuple(own[mismatched[0]].shape)})")
            if mismatched else "") if part)
        raise ValueError(f"{weights}: the weights do not fit student variant {chosen!r} "
                         f"(the file says variant {meta.get('variant')!r}): {detail}; name the "
                         "variant they were trained as with --variant (tiny_v1: the first "
                         "shipped student's layout)")
    model.load_state_dict(state, strict=True)
    return model.eval(), chosen


def _place_features(model: torch.nn.Module, where: str) -> torch.nn.Module:
    """``model`` taking its feature maps as an input (``where`` "outside", or "auto" where its
    variant allows) or making them in the graph ("graph"); the same parameters either way."""
    from dmd3c_ros.training.residual import ResidualStudent
    if where not in ("auto", "outside", "graph"):
        raise ValueError(f"features must be 'auto', 'outside' or 'graph', got {where!r}")
    config = getattr(model, "config", None)
    able = (isinstance(model, ResidualStudent) and config.input_stride == 1
            and not config.context)
    if where == "outside" and not able:
        raise ValueError("features 'outside' needs a residual student with input stride 1 and "
                         "no context maps (core.features makes the seven maps of those)")
    if where != "graph" and able:
        model.config = replace(config, features_input=True)
    return model


def export_student(weights, out_dir, name: str, *, variant: str | None = None,
                   input_size=(352, 1216), depth_scale: float | None = None,
                   depth_range=None, opset: int = OPSET, mono_model=None,
                   classical_resolution: str = "image", image_weights=None,
                   features: str = "auto") -> dict:
    """Export trained student weights as ONNX + spec YAML + safetensors and check parity.

    Args:
        weights: safetensors file with ``model.<key>`` tensors and ``variant`` metadata.
        out_dir: output folder (created); gets NAME.onnx, NAME.safetensors and NAME.yaml.
        name: model name (file stem and the spec's ``name``).
        variant: student variant; None = the weights' metadata.
        input_size: (height, width) of the network input, pixels, multiples of 32.
        depth_scale: metres per network unit (must match training's when the file records it);
            None = training's.
        depth_range: (min, max) metres the runtime clips outputs to; None = (0.5, training's
            max_depth).
        opset: ONNX opset.
        mono_model: for a residual student (LiDAR only), the spec YAML that frames without
            LiDAR run instead (``mono_model`` in the spec; stored relative to ``out_dir``).
        classical_resolution: for a residual student, where the runtime computes the classical
            input: "image" (the camera's size; the correction is applied there) or "input"
            (the network's size: cheaper for large cameras).
        image_weights: an image student's weights to join with ``weights`` (a residual
            student's) as the composite ``variant`` (:mod:`training.above_lidar`).
        features: for a residual student, where its seven feature maps are made: "outside"
            (the runtime computes them, :mod:`core.features`; the graph's second input is
            ``features``), "graph" (inside the graph, from its ``sparse`` input) or "auto"
            (outside when the variant allows it: input stride 1, no context maps).
    Returns:
        dict of the written paths, the ONNX sha256, variant, parameter count, input size and the
        parity figures (``parity_check``).
    Raises:
        ValueError: no variant, weights that do not fit it, a bad input size or depth scale;
        ExportParityError: ONNX Runtime and PyTorch differ by more than PARITY_RTOL.
    """
    from safetensors.torch import save_file
    height, width = _check_size(input_size)
    if depth_scale is None or depth_range is None:
        trained_scale, trained_max = trained_range(weights) if Path(weights).is_file() else (
            80.0, 80.0)
        depth_scale = trained_scale if depth_scale is None else depth_scale
        depth_range = (0.5, trained_max) if depth_range is None else depth_range
    low, high = (float(v) for v in depth_range)
    if not depth_scale > 0 or not 0 <= low < high:
        raise ValueError(f"depth_scale must be > 0 and depth_range 0 <= min < max metres, got "
                         f"{depth_scale} and {list(depth_range)}")
    model, variant = _load_state(weights, variant, depth_scale, image_weights)
    model = _place_features(model, features)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    onnx_path, weights_path, spec_path = (out / f"{name}.{ext}"
                                          for ext in ("onnx", "safetensors", "yaml"))
    export_onnx(model, onnx_path, (height, width), opset=opset)
    try:
        parity = parity_check(model, onnx_path, (height, width), float(depth_scale))
        if not parity["max_rel_err"] <= PARITY_RTOL:  # NaN fails too
            raise ExportParityError(
                f"{onnx_path}: ONNX Runtime and PyTorch outputs differ by a relative "
                f"{parity['max_rel_err']:.3g} (allowed {PARITY_RTOL:g}); the export was "
                f"removed. Figures: {parity}")
    except Exception:
        onnx_path.unlink(missing_ok=True)
        raise
    sources = {"source": str(weights)}
    if image_weights is not None:
        sources["image_source"] = str(image_weights)
    save_file({k: v.detach().contiguous().clone() for k, v in model.state_dict().items()},
              str(weights_path), metadata={"variant": variant, **sources})
    sha256 = sha256_file(onnx_path)
    spec = {
        "name": name, "onnx": onnx_path.name, "sha256": sha256, "opset": int(opset),
        "units": "metres", "input_size": [height, width],
        "inputs": dict(zip(("rgb", FEATURES_INPUT if takes_features(model) else "sparse",
                            "classical"), input_names(model))),
        "outputs": {"depth": OUTPUT_NAMES[0], "uncertainty": OUTPUT_NAMES[1]},
        "rgb_normalization": {"mean": list(RGB_MEAN), "std": list(RGB_STD)},
        "depth_scale": float(depth_scale), "depth_range": [low, high],
        "supports_mono": not getattr(model, "needs_classical", False),
        "torch": {"factory": torch_factory(model),
                  "kwargs": {"variant": variant,
                             **({"features_input": True} if takes_features(model) else {})},
                  "weights": weights_path.name},
    }
    if mono_model is not None:
        spec["mono_model"] = os.path.relpath(Path(mono_model).resolve(), out.resolve())
    if getattr(model, "needs_classical", False):
        spec["classical_resolution"] = classical_resolution
    if not getattr(model, "uses_rgb", True):  # the runtime may then skip preparing the image
        spec["rgb_used"] = False
    spec_path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return {"spec": str(spec_path.resolve()), "onnx": str(onnx_path.resolve()),
            "weights": str(weights_path.resolve()), "sha256": sha256, "variant": variant,
            "parameters": count_parameters(model), "input_size": [height, width],
            "opset": int(opset), "depth_scale": float(depth_scale), "parity": parity}


__all__ = ["ExportParityError", "PARITY_RTOL", "export_onnx", "export_student"]
