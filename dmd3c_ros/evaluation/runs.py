"""The backends / models that ``dmd3c eval`` compares, and how one frame is completed.

Models compared (``plan_models``): with no ``--model`` every backend runs its default model; with
as many models as backends they pair in order; one backend with several models runs each model;
several backends with one model each use that model (classical ignores it). NAME is the backend
(``auto`` resolved), or ``backend:model-stem`` when a model is given.

Output predictions follow the node: depths outside [min_depth, max_depth] become "no value".
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dmd3c_ros.runtime.factory import create_backend
from dmd3c_ros.runtime.pipeline import CompletionPipeline


@dataclass
class VisualFrame:
    """One sampled frame for the report (stand-in when ``report.Visual`` is not installed).

    rgb (H, W, 3) uint8; sparse the LiDAR input (H, W) float32 metres, 0 = none; gt (H, W) float32
    metres, 0 = none; predictions NAME -> (H, W) float32 metres, NaN = none.
    """

    name: str
    rgb: np.ndarray
    sparse: np.ndarray
    gt: np.ndarray
    predictions: dict


def _visual_class():
    try:
        from .report import Visual
        return Visual
    except ImportError:
        return VisualFrame


def plan_models(backends, models) -> list[tuple[str, str | None]]:
    """(backend, model or None) pairs to compare; the rule is in the module docstring."""
    backends = list(backends or []) or ["auto"]
    models = [str(m) for m in (models or [])]
    if not models:
        pairs = [(b, None) for b in backends]
    elif len(models) == len(backends):
        pairs = list(zip(backends, models))
    elif len(backends) == 1:
        pairs = [(backends[0], m) for m in models]
    elif len(models) == 1:
        pairs = [(b, models[0]) for b in backends]
    else:
        raise ValueError(f"{len(backends)} --backend and {len(models)} --model: give one backend "
                         "per model, one backend for all models, or one model for all backends")
    return [(b, None if b == "classical" else m) for b, m in pairs]


def unique_name(name: str, taken) -> str:
    """``name``, or ``name#2``, ``name#3`` ... the first not in ``taken`` (one model compared
    twice, or two specs of one stem, keep apart in a table)."""
    base, n = name, 2
    while name in taken:
        name, n = f"{base}#{n}", n + 1
    return name


@dataclass
class ModelRun:
    """One compared backend / model: its NAME and the pipeline that runs it."""

    name: str
    backend: str
    model: str | None
    pipeline: CompletionPipeline


def create_runs(backends, models, *, min_depth: float = 0.1, max_depth: float = 100.0,
                precision: str = "fp32", engine_cache_dir=None) -> list[ModelRun]:
    """Create every backend of ``plan_models(backends, models)`` with a unique NAME."""
    runs: list[ModelRun] = []
    for backend_name, model in plan_models(backends, models):
        backend = create_backend(backend_name, model, precision=precision,
                                 engine_cache_dir=engine_cache_dir)
        name = unique_name(backend.name if model is None else f"{backend.name}:{Path(model).stem}",
                           {r.name for r in runs})
        runs.append(ModelRun(name, backend.name, model,
                             CompletionPipeline(backend, min_depth=min_depth,
                                                max_depth=max_depth)))
    return runs


def complete_one(pipeline: CompletionPipeline, rgb, camera, *, points=None, lidar_to_camera=None,
                 sparse=None) -> tuple[np.ndarray, float, str]:
    """(depth (H, W) float32 metres NaN = none, milliseconds, mode) of one frame.

    With ``points`` the pipeline projects the sweep (the node's path); with a ``sparse`` map the
    backend gets the map as is (``dmd3c complete --sparse``'s path) and the pipeline's depth-range
    filter is applied to its output.
    """
    start = time.perf_counter()
    if sparse is None:
        result = pipeline.run(rgb, camera, points, lidar_to_camera)
        depth, mode = result.depth, result.mode
    else:
        mono = not np.any(sparse > 0)
        depth = pipeline.backend.infer(rgb, None if mono else sparse).depth
        out_of_range = ~((depth >= pipeline.min_depth) & (depth <= pipeline.max_depth))  # NaN too
        depth = np.where(out_of_range, np.float32(np.nan), depth).astype(np.float32)
        mode = "mono" if mono else "completion"
    return depth, (time.perf_counter() - start) * 1000.0, mode  # s to ms


__all__ = ["ModelRun", "VisualFrame", "complete_one", "create_runs", "plan_models",
           "unique_name"]
