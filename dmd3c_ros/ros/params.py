"""The completion node's ROS parameters: declared with descriptions, read into CompletionConfig.

One table (``PARAMETERS``) drives the declarations, the launch-file test and the README.
"""
from __future__ import annotations

from dataclasses import fields

from rcl_interfaces.msg import ParameterDescriptor, ParameterType
from rclpy.node import Node

from dmd3c_ros.core.config import BACKENDS, PRECISIONS, RELIABILITIES, CompletionConfig

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
}

_TYPES = {str: ParameterType.PARAMETER_STRING, float: ParameterType.PARAMETER_DOUBLE,
          int: ParameterType.PARAMETER_INTEGER, bool: ParameterType.PARAMETER_BOOL}
# Numbers given as integers (max_depth:=80) or arrays of integers are accepted and converted.
DYNAMIC = {"lidar_to_camera", "sync_slop", "max_depth", "min_depth", "lidar_timeout"}


def parameter_table() -> dict[str, tuple[object, int]]:
    """{name: (default, ParameterType)} of every node parameter."""
    table = {}
    for f in fields(CompletionConfig):
        kind = ParameterType.PARAMETER_DOUBLE_ARRAY if f.name == "lidar_to_camera" \
            else _TYPES[type(f.default)]
        table[f.name] = (f.default, kind)
    return table


def declare_parameters(node: Node) -> None:
    for name, (default, kind) in parameter_table().items():
        dynamic = name in DYNAMIC
        descriptor = ParameterDescriptor(description=DESCRIPTIONS[name], dynamic_typing=dynamic,
                                         type=ParameterType.PARAMETER_NOT_SET if dynamic else kind)
        node.declare_parameter(name, None if name == "lidar_to_camera" else default, descriptor)


def read_config(node: Node) -> CompletionConfig:
    """The node's parameters as a validated CompletionConfig (ConfigError on a bad value)."""
    values = {name: node.get_parameter(name).value for name in parameter_table()}
    return CompletionConfig.from_mapping(values)
