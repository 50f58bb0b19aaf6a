"""The launch file and its YAML set only parameters the node declares, with the right types.

Runs everywhere (the launch file is read as source, not imported: pip-only installs lack
launch_ros); test_launch.py starts the launch file for real where launch_testing is installed.
"""
import ast
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import ParameterType

from dmd3c_ros.core.config import CompletionConfig
from dmd3c_ros.ros.params import DESCRIPTIONS, DYNAMIC, parameter_table

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
NUMBER = (int, float)
PYTHON_TYPES = {ParameterType.PARAMETER_STRING: str, ParameterType.PARAMETER_DOUBLE: float,
                ParameterType.PARAMETER_INTEGER: int, ParameterType.PARAMETER_BOOL: bool,
                ParameterType.PARAMETER_DOUBLE_ARRAY: list}


def launch_constant(name):
    tree = ast.parse((LAUNCH / "completion.launch.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in completion.launch.py")


def yaml_parameters():
    return yaml.safe_load((LAUNCH / "completion.yaml").read_text())["completion_node"][
        "ros__parameters"]


def accepts(name, value):
    kind = parameter_table()[name][1]
    expected = PYTHON_TYPES[kind]
    if expected is float and name in DYNAMIC:
        return isinstance(value, NUMBER) and not isinstance(value, bool)
    if expected is list:
        return isinstance(value, list) and all(isinstance(v, NUMBER) for v in value)
    if expected is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, expected)


def test_every_parameter_is_described():
    assert set(DESCRIPTIONS) == set(parameter_table())


def test_yaml_sets_only_declared_parameters_with_their_types():
    for name, value in yaml_parameters().items():
        assert name in parameter_table(), f"completion.yaml sets undeclared '{name}'"
        assert accepts(name, value), f"completion.yaml: {name} = {value!r} has the wrong type"
    CompletionConfig.from_mapping(yaml_parameters())  # and the values are valid


# What a user would type after `ros2 launch dmd3c_ros completion.launch.py`; the launch file
# turns each string into a value with yaml.safe_load (floats for lidar_to_camera).
EXAMPLES = {"model": "/opt/models/student.yaml", "backend": "onnxruntime", "precision": "fp32",
            "engine_cache_dir": "/tmp/engines", "sync_slop": "0.08", "publish_points": "true",
            "publish_colorized": "false", "qos_reliability": "best_effort",
            "lidar_to_camera": "[1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1]"}


@pytest.mark.parametrize("name", sorted(launch_constant("PARAMETER_ARGUMENTS")))
def test_launch_arguments_are_declared_with_their_types(name):
    assert name in parameter_table(), f"completion.launch.py overrides undeclared '{name}'"
    value = yaml.safe_load(EXAMPLES[name])
    if name == "lidar_to_camera":
        value = [float(v) for v in value]
    assert accepts(name, value)
    CompletionConfig.from_mapping({name: value})


def test_launch_remaps_the_node_topics():
    topics = launch_constant("TOPIC_ARGUMENTS")
    assert set(topics.values()) == {"image", "camera_info", "points", "depth"}


def test_node_accepts_the_yaml_values(monkeypatch):
    import rclpy
    from rclpy.parameter import Parameter

    from dmd3c_ros.ros.completion_node import CompletionNode
    from dmd3c_ros.ros.graph import free_domain_id
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(free_domain_id()))
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        values = dict(yaml_parameters(), lidar_to_camera=[float(v) for v in yaml.safe_load(
            EXAMPLES["lidar_to_camera"])])
        node = CompletionNode(context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in values.items()])
        assert node.config == CompletionConfig.from_mapping(values)
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
