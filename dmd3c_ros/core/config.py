"""Configuration of the completion pipeline, validated in one place (pure Python + numpy).

The node's ROS parameters map one-to-one onto ``CompletionConfig`` fields; a bad value raises
``ConfigError`` naming the parameter, the value and what is allowed.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

import numpy as np

BACKENDS = ("auto", "tensorrt", "onnxruntime", "torch", "classical")
PRECISIONS = ("fp16", "fp32", "int8")
RELIABILITIES = ("reliable", "best_effort")
OUTPUT_STAMPS = ("image", "sweep")   # surround node: whose stamp the outputs of a sweep carry


class ConfigError(ValueError):
    """A configuration value is out of its allowed range or malformed."""


def parse_extrinsic(values, name: str = "lidar_to_camera") -> np.ndarray | None:
    """16 numbers (row-major 4x4 rigid transform, metres) -> (4, 4) float64; empty -> None.

    The last row must be [0, 0, 0, 1] and the rotation orthonormal: a column-major or transposed
    matrix is caught here rather than projecting the sweep somewhere wrong.
    """
    if values is None or len(values) == 0:
        return None
    try:
        matrix = np.array([float(v) for v in values], dtype=np.float64)
    except (TypeError, ValueError) as error:
        raise ConfigError(f"{name} must be 16 numbers, got {list(values)!r}") from error
    if matrix.size != 16:
        raise ConfigError(f"{name} must be 16 numbers (row-major 4x4), got {matrix.size}")
    if not np.all(np.isfinite(matrix)):
        raise ConfigError(f"{name} contains NaN or inf: {matrix.tolist()}")
    matrix = matrix.reshape(4, 4)
    if not np.allclose(matrix[3], [0.0, 0.0, 0.0, 1.0], atol=1e-6):
        raise ConfigError(f"{name} last row must be [0, 0, 0, 1] (row-major 4x4 rigid transform), "
                          f"got {matrix[3].tolist()}: is it column-major?")
    rotation = matrix[:3, :3]
    if not np.allclose(rotation @ rotation.T, np.eye(3), atol=1e-3) or np.linalg.det(rotation) < 0:
        raise ConfigError(f"{name} rotation part is not a rotation (orthonormal, det +1): "
                          f"{rotation.tolist()}")
    return matrix


CAMERA_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")  # a ROS name token (topics, parameters)


@dataclass(frozen=True)
class NodeConfig:
    """Settings the completion and surround nodes share (units: seconds and metres)."""

    model: str = ""                 # model spec YAML; "" = the shipped student
    backend: str = "auto"
    precision: str = "fp16"
    engine_cache_dir: str = ""      # "" = ~/.cache/dmd3c_ros/engines
    sync_slop: float = 0.05         # s
    queue_size: int = 10
    max_depth: float = 100.0        # m
    min_depth: float = 0.1          # m
    publish_points: bool = False
    publish_colorized: bool = False
    qos_reliability: str = "reliable"
    lidar_timeout: float = 0.5      # s without a sweep before mono mode
    camera_timeout: float = 1.0     # s without an image before a camera is reported stopped

    def __post_init__(self) -> None:
        need = self._need
        need(self.backend in BACKENDS, "backend", f"must be one of {', '.join(BACKENDS)}")
        need(self.precision in PRECISIONS, "precision", f"must be one of {', '.join(PRECISIONS)}")
        need(self.qos_reliability in RELIABILITIES, "qos_reliability",
             f"must be one of {', '.join(RELIABILITIES)}")
        need(0.0 < self.sync_slop <= 1.0, "sync_slop", "must be in (0, 1] seconds")
        need(1 <= self.queue_size <= 1000, "queue_size", "must be in [1, 1000]")
        need(0.0 <= self.min_depth < self.max_depth, "min_depth",
             f"must be >= 0 and below max_depth ({self.max_depth})")
        need(0.0 < self.max_depth <= 1000.0, "max_depth", "must be in (0, 1000] metres")
        need(self.lidar_timeout > 0.0, "lidar_timeout", "must be > 0 seconds")
        need(self.camera_timeout > 0.0, "camera_timeout", "must be > 0 seconds")

    def _need(self, ok: bool, name: str, allowed: str) -> None:
        if not ok:
            raise ConfigError(f"parameter '{name}' = {getattr(self, name)!r}: {allowed}")

    @classmethod
    def _convert(cls, name: str, value, default):
        """One mapping value as the field's type (ConfigError when it cannot be)."""
        kind = type(default)
        if kind is tuple:
            return tuple(value) if value is not None else ()
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)  # 80 means 80.0
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise ConfigError(f"parameter '{name}' = {value!r} must be a {kind.__name__}")
        return value

    @classmethod
    def from_mapping(cls, values: dict):
        """Build from a {parameter: value} mapping (unknown keys are an error)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown parameter(s) {unknown}; known: {sorted(known)}")
        clean = {f.name: cls._convert(f.name, values[f.name], f.default)
                 for f in fields(cls) if f.name in values}
        return cls(**clean)


@dataclass(frozen=True)
class CompletionConfig(NodeConfig):
    """Settings of one completion node: one camera, one LiDAR."""

    lidar_to_camera: tuple = ()     # 16 numbers, row-major 4x4; () = from TF

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_extrinsic(self.lidar_to_camera)

    @property
    def extrinsic(self) -> np.ndarray | None:
        """lidar_to_camera as a (4, 4) float64 matrix, or None (use TF)."""
        return parse_extrinsic(self.lidar_to_camera)


@dataclass(frozen=True)
class SurroundConfig(NodeConfig):
    """Settings of one surround node: a ring of cameras, one LiDAR.

    ``lidar_to_camera`` maps a camera name to its 16 numbers (row-major 4x4; missing or empty =
    from TF). ``camera_timeout``: seconds without an image before a camera counts as stale (not
    waited for, reported). ``batch_wait``: seconds a sweep (or, camera-only, the first view)
    waits for the views of the other cameras before the batch runs without them.
    ``output_stamp``: "image" (each view's outputs carry its image's header) or "sweep" (every
    output of one sweep carries the sweep's stamp; frame ids stay the cameras'). ``fused_cloud``:
    also publish ``depth/points_fused``, every view's depth as one cloud in the sweep's frame,
    every ``fused_cloud_stride``-th pixel in both directions. ``publish_rig_tf``: broadcast
    the ``lidar_to_camera`` parameters as static TF (sweep frame -> each image's frame).
    ``seam_blend``: adjacent views (in ``cameras`` order, a ring) meet halfway where they see
    the same surface within ``seam_tolerance`` (relative; ``core.seam_blend``).
    """

    cameras: tuple = ()
    batch_wait: float = 0.15        # s
    lidar_to_camera: dict = field(default_factory=dict)
    output_stamp: str = "image"
    fused_cloud: bool = False
    fused_cloud_stride: int = 8     # pixels
    publish_rig_tf: bool = False
    seam_blend: bool = False
    seam_tolerance: float = 0.05

    def __post_init__(self) -> None:
        super().__post_init__()
        need = self._need
        need(len(self.cameras) > 0, "cameras", "must name at least one camera")
        need(0.0 < self.seam_tolerance <= 0.5, "seam_tolerance", "must be in (0, 0.5]")
        for name in self.cameras:
            need(isinstance(name, str) and bool(CAMERA_NAME.match(name)), "cameras",
                 f"{name!r} is not a valid name (a letter, then letters, digits or '_'): it "
                 "becomes the topic namespace <name>/image")
        need(len(set(self.cameras)) == len(self.cameras), "cameras", "names must be unique")
        need(0.0 <= self.batch_wait <= 10.0, "batch_wait", "must be in [0, 10] seconds")
        need(self.output_stamp in OUTPUT_STAMPS, "output_stamp",
             f"must be one of {', '.join(OUTPUT_STAMPS)}")
        need(1 <= self.fused_cloud_stride <= 64, "fused_cloud_stride", "must be in [1, 64] pixels")
        missing = [c for c in self.cameras if not self.lidar_to_camera.get(c)]
        need(not (self.publish_rig_tf and missing), "publish_rig_tf",
             f"needs lidar_to_camera of every camera (missing: {missing}); TF cannot be "
             "re-broadcast from TF")
        unknown = sorted(set(self.lidar_to_camera) - set(self.cameras))
        if unknown:
            raise ConfigError(f"lidar_to_camera given for {unknown}, which are not in cameras "
                              f"{list(self.cameras)}")
        for name, values in self.lidar_to_camera.items():
            parse_extrinsic(values, f"{name}.lidar_to_camera")

    @classmethod
    def _convert(cls, name: str, value, default):
        if name == "lidar_to_camera":
            if not isinstance(value, dict):
                raise ConfigError(f"parameter 'lidar_to_camera' = {value!r} must map camera "
                                  "names to 16 numbers")
            return {str(k): tuple(v) if v is not None else () for k, v in value.items()}
        return super()._convert(name, value, default)

    def extrinsic(self, camera: str) -> np.ndarray | None:
        """``camera``'s LiDAR -> optical frame transform as a (4, 4) matrix, or None (use TF)."""
        return parse_extrinsic(self.lidar_to_camera.get(camera, ()), f"{camera}.lidar_to_camera")
