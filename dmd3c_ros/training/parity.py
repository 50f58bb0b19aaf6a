"""Checking an exported student: seeded sample inputs, the runtime's pre-steps for them, and
ONNX Runtime against PyTorch (``dmd3c export`` runs :func:`parity_check` on every export).

A student exported with its feature maps as an input (``ResidualConfig.features_input``) is
checked end to end: ONNX Runtime gets the maps that the runtime computes
(:func:`dmd3c_ros.core.features.residual_features`), PyTorch makes them inside the network as
in training (``forward_sparse``), so the check covers both the graph and the runtime's maps.
"""
from __future__ import annotations

import numpy as np
import torch

from dmd3c_ros.training.images import RGB_MEAN, RGB_STD  # what the trainer normalises with

INPUT_NAMES = ("rgb", "sparse")
RESIDUAL_INPUT = "classical"           # the residual student's third input (training/residual.py)
FEATURES_INPUT = "features"            # its second, exported with features_input
OUTPUT_NAMES = ("depth", "uncertainty")
PARITY_RTOL = 1e-3                     # largest |ONNX Runtime - PyTorch| / |PyTorch| allowed
LIDAR_SHARE = 0.05                     # share of pixels with a value in the LiDAR-like input


class ExportParityError(ValueError):
    """ONNX Runtime and PyTorch disagree on the exported student by more than the tolerance."""


def takes_features(model: torch.nn.Module) -> bool:
    """Whether the student's second input is its feature maps (``features_input``)."""
    return bool(getattr(model, "features_input", False))


def input_names(model: torch.nn.Module) -> tuple[str, ...]:
    """The ONNX input names of a student, in ``forward``'s order."""
    if not getattr(model, "needs_classical", False):
        return INPUT_NAMES
    second = FEATURES_INPUT if takes_features(model) else INPUT_NAMES[1]
    return (INPUT_NAMES[0], second, RESIDUAL_INPUT)


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


def features_input(sparse: np.ndarray, classical: np.ndarray) -> np.ndarray:
    """(N, 7, h, w) feature maps of (N, 1, h, w) sparse and classical inputs (network units),
    as the runtime computes them (:func:`core.features.residual_features`)."""
    from dmd3c_ros.core.features import FEATURES, residual_features
    out = np.empty((sparse.shape[0], FEATURES) + sparse.shape[2:], np.float32)
    for index in range(sparse.shape[0]):
        residual_features(sparse[index, 0], classical[index, 0], out=out[index])
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


def ort_session(path, *, threads: int | None = None):
    """A CPU ONNX Runtime session (all graph optimisations; ``threads`` intra-op threads)."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = int(threads)
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _case(model: torch.nn.Module, input_size, lidar: bool, seed: int):
    """(ONNX Runtime feeds in input order, PyTorch's outputs as numpy, LiDAR pixels)."""
    rgb, sparse = sample_inputs(input_size, lidar=lidar, seed=seed)
    run, args = model, [rgb, sparse]
    feeds = args
    if getattr(model, "needs_classical", False):
        classical = residual_input(sparse, 1.0)
        feeds = args = [rgb, sparse, classical]
        if takes_features(model):  # the runtime's maps in, PyTorch's own maps for reference
            feeds = [rgb, features_input(sparse, classical), classical]
            run = model.forward_sparse
    with torch.no_grad():
        expected = [t.numpy() for t in run(*[torch.from_numpy(a) for a in args])]
    return feeds, expected, int(np.count_nonzero(sparse))


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
        feeds, expected, pixels = _case(model, input_size, lidar, seed)
        got = session.run(list(OUTPUT_NAMES), dict(zip(names, feeds)))
        for name, e, g in zip(OUTPUT_NAMES, expected, got):
            if g.shape != e.shape:
                raise ExportParityError(f"{onnx_path}: ONNX output {name} is {g.shape}, "
                                        f"PyTorch gives {e.shape}")
        figures[case] = {"sparse_pixels": pixels}
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


__all__ = ["ExportParityError", "PARITY_RTOL", "input_names", "ort_session", "parity_check",
           "residual_input", "sample_inputs", "takes_features"]
