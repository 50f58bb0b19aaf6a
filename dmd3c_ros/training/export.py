"""``dmd3c export``: a trained student as ONNX + model spec YAML + safetensors, with a parity check.

From a student weights file (``best.safetensors`` or ``last.safetensors`` of a training run:
tensors ``model.<state-dict key>``, metadata ``variant``) :func:`export_student` writes, in
``out_dir``:

- ``NAME.onnx``: opset 17, standard operators, inputs ``rgb`` (N, 3, h, w) and ``sparse``
  (N, 1, h, w), outputs ``depth`` and ``uncertainty`` (N, 1, h, w), dynamic batch;
- ``NAME.safetensors``: the student weights with plain state-dict keys (what the ``torch``
  backend loads; safetensors, never a pickle);
- ``NAME.yaml``: the model spec (format: :mod:`dmd3c_ros.runtime.spec`; written here with PyYAML
  because ``training`` does not import ``runtime``; the tests load it with the runtime's loader).

Then ONNX Runtime (CPU) and PyTorch run the same seeded random inputs at ``input_size``, one
LiDAR-like (about 5 % of the pixels hold a depth) and one all-zero (mono), and the largest
relative error ``|onnx - torch| / |torch|`` of depth and uncertainty (both > 0 by construction)
must stay within :data:`PARITY_RTOL`, else :class:`ExportParityError` and nothing is left in
``out_dir``. The absolute differences in metres are reported too.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import torch
import yaml

from dmd3c_ros.core.io import sha256_file
from dmd3c_ros.training.student import count_parameters
from dmd3c_ros.training.synthetic import RGB_MEAN, RGB_STD  # what the trainer normalises with

OPSET = 17
INPUT_NAMES = ("rgb", "sparse")
RESIDUAL_INPUT = "classical"           # the residual student's third input (training/residual.py)
OUTPUT_NAMES = ("depth", "uncertainty")
FACTORY = "dmd3c_ros.training.student:build_student"
RESIDUAL_FACTORY = "dmd3c_ros.training.residual:build_residual_student"
PARITY_RTOL = 1e-3                     # largest |ONNX Runtime - PyTorch| / |PyTorch| allowed
LIDAR_SHARE = 0.05                     # share of pixels with a value in the LiDAR-like input


class ExportParityError(ValueError):
    """ONNX Runtime and PyTorch disagree on the exported student by more than the tolerance."""


def _check_size(input_size) -> tuple[int, int]:
    height, width = (int(v) for v in input_size)
    if height <= 0 or width <= 0 or height % 32 or width % 32:
        raise ValueError(f"input size must be positive multiples of 32 (height, width), got "
                         f"{height}x{width}")
    return height, width


def input_names(model: torch.nn.Module) -> tuple[str, ...]:
    """The ONNX input names of a student, in ``forward``'s order."""
    return INPUT_NAMES + ((RESIDUAL_INPUT,) if getattr(model, "needs_classical", False) else ())


def torch_factory(model: torch.nn.Module) -> str:
    """The spec's ``torch.factory`` that rebuilds ``model``'s kind of student."""
    default = RESIDUAL_FACTORY if getattr(model, "needs_classical", False) else FACTORY
    return getattr(model, "factory", default)


def residual_input(sparse: np.ndarray, depth_scale: float) -> np.ndarray:
    """The classical input of the residual student for a (N,1,h,w) sparse input in network
    units: the runtime's pre-step (:func:`core.classical.complete_classical` per frame), in
    network units, 0 = no value. ``depth_scale`` is the model's maximum depth in units (1.0)."""
    from dmd3c_ros.core.classical import classical_units
    out = np.zeros_like(sparse)
    for index in range(sparse.shape[0]):
        out[index, 0] = classical_units(sparse[index, 0] * depth_scale, max_depth=depth_scale,
                                        depth_scale=depth_scale)
    return out


def sample_inputs(input_size, *, lidar: bool = True, seed: int = 0,
                  batch: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Seeded random network inputs (rgb, sparse), float32 NCHW, as the spec describes them.

    rgb (batch, 3, h, w): a uniform random 0-255 image, ImageNet-normalised; sparse
    (batch, 1, h, w): with ``lidar`` about ``LIDAR_SHARE`` of the pixels hold a value in
    (0.02, 1) network units (``depth_metres / depth_scale``), the rest 0; without, all zeros (mono).
    """
    height, width = (int(v) for v in input_size)
    rng = np.random.default_rng(seed)
    image = rng.uniform(0.0, 255.0, (batch, 3, height, width))
    mean = np.asarray(RGB_MEAN).reshape(1, 3, 1, 1)
    std = np.asarray(RGB_STD).reshape(1, 3, 1, 1)
    rgb = ((image - mean) / std).astype(np.float32)
    sparse = np.zeros((batch, 1, height, width), np.float32)
    if lidar:
        keep = rng.random(sparse.shape) < LIDAR_SHARE
        sparse[keep] = rng.uniform(0.02, 1.0, int(keep.sum()))
    return rgb, sparse


def export_onnx(model: torch.nn.Module, path, input_size, *, opset: int = OPSET) -> Path:
    """Export a student (eval mode expected) to ONNX at ``input_size`` (height, width) with a
    dynamic batch axis; checks the graph with ``onnx.checker`` when onnx is installed."""
    height, width = _check_size(input_size)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = input_names(model)
    args = (torch.zeros(1, 3, height, width),) + tuple(
        torch.zeros(1, 1, height, width) for _ in names[1:])
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


def ort_session(path, *, threads: int | None = None):
    """A CPU ONNX Runtime session (all graph optimisations; ``threads`` intra-op threads)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def parity_check(model: torch.nn.Module, onnx_path, input_size, depth_scale: float, *,
                 seed: int = 0, threads: int | None = None) -> dict:
    """Largest |ONNX Runtime - PyTorch| difference of depth and uncertainty, in metres
    (network units x ``depth_scale``), on one LiDAR-like and one all-zero (mono) input (the
    LiDAR-like one alone for the residual student, which needs LiDAR; its classical input is
    the runtime's pre-step of that sparse input)."""
    session = ort_session(onnx_path, threads=threads)
    names = input_names(model)
    residual = len(names) > len(INPUT_NAMES)
    figures = {}
    for case, lidar in (("lidar", True),) + ((("mono", False),) if not residual else ()):
        rgb, sparse = sample_inputs(input_size, lidar=lidar, seed=seed)
        feeds = [rgb, sparse] + ([residual_input(sparse, 1.0)] if residual else [])
        with torch.no_grad():
            expected = [t.numpy() for t in model(*[torch.from_numpy(f) for f in feeds])]
        got = session.run(list(OUTPUT_NAMES), dict(zip(names, feeds)))
        for name, e, g in zip(OUTPUT_NAMES, expected, got):
            if g.shape != e.shape:
                raise ExportParityError(f"{onnx_path}: ONNX output {name} is {g.shape}, "
                                        f"PyTorch gives {e.shape}")
        figures[case] = {"sparse_pixels": int(np.count_nonzero(sparse))}
        for name, e, g in zip(OUTPUT_NAMES, expected, got):
            difference = np.abs(g.astype(np.float64) - e)
            figures[case][f"{name}_max_abs_diff_m"] = float(difference.max()) * depth_scale
            with np.errstate(divide="ignore", invalid="ignore"):
                relative = difference / np.abs(e.astype(np.float64))
            figures[case][f"{name}_max_rel_err"] = float(np.max(relative))  # NaN/inf stay
    cases = [f for f in figures.values()]
    figures["max_abs_diff_m"] = max(f["depth_max_abs_diff_m"] for f in cases)
    figures["max_rel_err"] = max(f[f"{n}_max_rel_err"] for f in cases for n in OUTPUT_NAMES)
    figures["rtol"] = PARITY_RTOL
    return figures


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


def export_student(weights, out_dir, name: str, *, variant: str | None = None,
                   input_size=(352, 1216), depth_scale: float | None = None,
                   depth_range=None, opset: int = OPSET, mono_model=None,
                   classical_resolution: str = "image", image_weights=None) -> dict:
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
        "inputs": dict(zip(("rgb", "sparse", "classical"), input_names(model))),
        "outputs": {"depth": OUTPUT_NAMES[0], "uncertainty": OUTPUT_NAMES[1]},
        "rgb_normalization": {"mean": list(RGB_MEAN), "std": list(RGB_STD)},
        "depth_scale": float(depth_scale), "depth_range": [low, high],
        "supports_mono": not getattr(model, "needs_classical", False),
        "torch": {"factory": torch_factory(model), "kwargs": {"variant": variant},
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


__all__ = ["ExportParityError", "PARITY_RTOL", "export_onnx", "export_student",
           "ort_session", "parity_check", "sample_inputs"]
