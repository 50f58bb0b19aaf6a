"""The TensorRT engine cache's names (no TensorRT needed): where engines, TensorRT's timing cache
and INT8 calibration caches live, and the key an engine is stored under (see
:mod:`dmd3c_ros.runtime.tensorrt_backend`)."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path


def default_engine_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/dmd3c_ros/engines`` (``~/.cache/dmd3c_ros/engines`` by default)."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dmd3c_ros" / "engines"


def engine_key(onnx_sha256: str, tensorrt_version: str, gpu: str, precision: str,
               input_shapes: dict[str, tuple[int, ...]]) -> str:
    """Cache key (24 hex characters) of an engine; any change of an argument changes it."""
    material = json.dumps({"onnx_sha256": onnx_sha256.lower(), "tensorrt": tensorrt_version,
                           "gpu": gpu, "precision": precision,
                           "inputs": {k: [int(d) for d in v]
                                      for k, v in sorted(input_shapes.items())}},
                          sort_keys=True)
    return hashlib.sha256(material.encode()).hexdigest()[:24]


def _slug(text: str) -> str:
    """Lower-case letters, digits, dots and dashes only: a safe piece of a file name."""
    return re.sub(r"[^a-z0-9.]+", "-", text.lower()).strip("-") or "unknown"


def timing_cache_path(cache_dir, tensorrt_version: str, gpu: str) -> Path:
    """``cache_dir/timing-<tensorrt version>-<gpu>.cache``: the builder's layer timing cache.

    TensorRT only reuses timings measured by the same version on the same GPU, hence both in the
    name; ``gpu`` is the backend's description, e.g. "NVIDIA H100 80GB HBM3 (sm_90)".
    """
    return Path(cache_dir) / f"timing-{_slug(tensorrt_version)}-{_slug(gpu)}.cache"


def calibration_cache_path(cache_dir, onnx_sha256: str, input_size: tuple[int, int]) -> Path:
    """``cache_dir/calibration-<sha256[:16]>-<h>x<w>.cache``: the INT8 calibration cache.

    Named by the ONNX file's sha256 (a retrained or re-exported model never reuses the scales of
    another) and the network input size in pixels (height, width).
    """
    h, w = (int(v) for v in input_size)
    return Path(cache_dir) / f"calibration-{onnx_sha256.lower()[:16]}-{h}x{w}.cache"


def write_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f"{path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    os.replace(partial, path)


__all__ = ["calibration_cache_path", "default_engine_cache_dir", "engine_key", "timing_cache_path",
           "write_atomic"]
