"""The nodes' ROS parameters: declared with descriptions, read into CompletionConfig (completion
node) or SurroundConfig (surround node).

One table per node (``parameter_table``, built from the config dataclass) drives the
declarations, the launch-file tests and the README. The surround node's per-camera
``<camera>.lidar_to_camera`` parameters are declared once ``cameras`` is known.
"""
from __future__ import annotations

from dataclasses import fields

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node

from dmd3c_ros.core.config import (BACKENDS, CAMERA_NAME, OUTPUT_STAMPS, PRECISIONS,
                                   RELIABILITIES, CompletionConfig, NodeConfig, SurroundConfig)

DESCRIPTIONS = {
    "model": "model spec YAML of the network; empty = the shipped student",
    "backend": f"inference backend: {'|'.join(BACKENDS)} (auto = TensorRT with a GPU, "
               "else ONNX Runtime)",
    "precision": f"TensorRT precision: {'|'.join(PRECISIONS)} (other backends run fp32)",
    "engine_cache_dir": "TensorRT engine cache folder; empty = ~/.cache/dmd3c_ros/engines",
    "lidar_to_camera": "16 numbers: row-major 4x4 transform taking LiDAR-frame points into the "
                       "camera optical frame (metres); empty = look it up in TF",
    "sync_slop": "largest stamp difference (s) between image, camera_info and points of a frame",
    "queue_size": "messages kept per input for synchronisation",
    "max_depth": "metres; LiDAR returns and output depths beyond are dropped (NaN)",
    "min_depth": "metres; LiDAR returns and output depths nearer are dropped (NaN)",
    "publish_points": "also publish depth/points, the dense cloud in the camera optical frame",
    "publish_colorized": "also publish depth/colorized (rgb8) for people to look at",
    "qos_reliability": f"output QoS reliability: {'|'.join(RELIABILITIES)}",
    "lidar_timeout": "seconds without a sweep before the node runs camera-only (mono) where the "
                     "model can, or stops publishing where it cannot",
    "camera_timeout": "seconds without an image before the camera is reported stopped (WARN)",
}
SURROUND_DESCRIPTIONS = {
    **{k: v for k, v in DESCRIPTIONS.items() if k != "lidar_to_camera"},
    "sync_slop": "largest stamp difference (s) between a sweep and a camera's image (and between "
                 "an image and its camera_info)",
    "queue_size": "messages kept per input while a sweep's views gather",
    "cameras": "camera names; each reads <name>/image and <name>/camera_info and publishes "
               "<name>/depth, <name>/depth/camera_info and <name>/depth/uncertainty",
    "camera_timeout": "seconds without an image before a camera is reported stale and no longer "
                      "waited for (the other cameras keep publishing)",
    "batch_wait": "seconds a sweep waits for the views of every live camera before its batch runs "
                  "without the missing ones",
    "output_stamp": f"{'|'.join(OUTPUT_STAMPS)}: the stamp every output of a sweep carries (its "
                    "camera's image, or the one sweep's for all views; frame ids stay the "
                    "cameras')",
    "fused_cloud": "also publish depth/points_fused: every view's depth as one PointCloud2 in the "
                   "sweep's frame, stamped with the sweep (fields x, y, z, camera = index in "
                   "cameras)",
    "fused_cloud_stride": "depth/points_fused takes every N-th pixel of each view in both "
                          "directions",
    "publish_rig_tf": "broadcast the lidar_to_camera parameters as static TF, sweep frame -> each "
                      "image's frame (needs tf2_ros and every camera's lidar_to_camera)",
    "seam_blend": "adjacent cameras (in cameras order, a ring) meet halfway where their depths "
                  "see the same surface within seam_tolerance, so that fused views do not "
                  "double surfaces at the seams",
    "seam_tolerance": "relative depth difference up to which two cameras are taken to see the "
                      "same surface (seam_blend)",
}
CAMERA_EXTRINSIC_DESCRIPTION = ("16 numbers: row-major 4x4 transform taking LiDAR-frame points "
                                "into this camera's optical frame (metres); empty = look it up "
                                "in TF")

_TYPES = {str: ParameterType.PARAMETER_STRING, float: ParameterType.PARAMETER_DOUBLE,
          int: ParameterType.PARAMETER_INTEGER, bool: ParameterType.PARAMETER_BOOL}
# Numbers given as integers (max_depth:=80) or arrays of integers are accepted and converted.
DYNAMIC = {"lidar_to_camera", "sync_slop", "max_depth", "min_depth", "lidar_timeout",
           "camera_timeout", "batch_wait", "cameras"}
# Parameters without a default value (unset = empty).
UNSET = {"lidar_to_camera", "cameras"}


def descriptions(config_class: type[NodeConfig] = CompletionConfig) -> dict[str, str]:
    return SURROUND_DESCRIPTIONS if config_class is SurroundConfig else DESCRIPTIONS


def parameter_table(config_class: type[NodeConfig] = CompletionConfig
                    ) -> dict[str, tuple[object, int]]:
    """{name: (default, ParameterType)} of every parameter of the node using ``config_class``
    (the surround node's per-camera extrinsics are not in it: they depend on ``cameras``)."""
    table = {}
    for f in fields(config_class):
        if f.name == "lidar_to_camera":
            if config_class is SurroundConfig:
                continue
            table[f.name] = (f.default, ParameterType.PARAMETER_DOUBLE_ARRAY)
        elif f.name == "cameras":
            table[f.name] = (f.default, ParameterType.PARAMETER_STRING_ARRAY)
        else:
            table[f.name] = (f.default, _TYPES[type(f.default)])
    return table


def _declare(node: Node, name: str, default, kind: int, description: str) -> None:
    dynamic = name.split(".")[-1] in DYNAMIC
    descriptor = ParameterDescriptor(description=description, dynamic_typing=dynamic,
                                     type=ParameterType.PARAMETER_NOT_SET if dynamic else kind)
    node.declare_parameter(name, None if name.split(".")[-1] in UNSET else default, descriptor)


def declare_parameters(node: Node, config_class: type[NodeConfig] = CompletionConfig) -> None:
    text = descriptions(config_class)
    for name, (default, kind) in parameter_table(config_class).items():
        _declare(node, name, default, kind, text[name])


def read_config(node: Node, config_class: type[NodeConfig] = CompletionConfig):
    """The node's parameters as a validated ``config_class`` (ConfigError on a bad value).

    For the surround node this declares ``<camera>.lidar_to_camera`` for every camera first.
    """
    values = {name: node.get_parameter(name).value for name in parameter_table(config_class)}
    if config_class is SurroundConfig:
        values["cameras"] = tuple(values["cameras"] or ())
        extrinsics = {}
        for camera in values["cameras"]:
            name = f"{camera}.lidar_to_camera"
            if CAMERA_NAME.match(str(camera)) and not node.has_parameter(name):
                _declare(node, name, (), ParameterType.PARAMETER_DOUBLE_ARRAY,
                         CAMERA_EXTRINSIC_DESCRIPTION)
            if node.has_parameter(name):
                extrinsics[camera] = node.get_parameter(name).value or ()
        values["lidar_to_camera"] = extrinsics
    return config_class.from_mapping(values)
