"""The launch file and its YAML set only parameters the node declares, with the right types.

Runs everywhere (the launch file is read as source, not imported: pip-only installs lack
launch_ros); test_launch.py starts the launch file for real where launch_testing is installed.
"""
import ast
from pathlib import Path

import pytest
import yaml
from rcl_interfaces.msg import ParameterType

from dmd3c_ros.core.config import CompletionConfig, SurroundConfig
from dmd3c_ros.launch_support import DEPTH_OUTPUTS, camera_remappings, parameter_overrides
from dmd3c_ros.runtime.factory import resolve_spec_path
from dmd3c_ros.runtime.spec import load_spec
from dmd3c_ros.ros.params import (DESCRIPTIONS, DYNAMIC, SURROUND_DESCRIPTIONS, parameter_table,
                                  read_config)

LAUNCH = Path(__file__).resolve().parents[1] / "launch"
NUMBER = (int, float)
PYTHON_TYPES = {ParameterType.PARAMETER_STRING: str, ParameterType.PARAMETER_DOUBLE: float,
                ParameterType.PARAMETER_INTEGER: int, ParameterType.PARAMETER_BOOL: bool,
                ParameterType.PARAMETER_DOUBLE_ARRAY: list,
                ParameterType.PARAMETER_STRING_ARRAY: list}


def launch_constant(name, launch_file="completion.launch.py"):
    tree = ast.parse((LAUNCH / launch_file).read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(t.id == name for t in node.targets):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} not found in {launch_file}")


def yaml_parameters():
    return yaml.safe_load((LAUNCH / "completion.yaml").read_text())["completion_node"][
        "ros__parameters"]


def accepts(name, value, config_class=CompletionConfig):
    kind = parameter_table(config_class)[name][1]
    expected = PYTHON_TYPES[kind]
    if expected is float and name in DYNAMIC:
        return isinstance(value, NUMBER) and not isinstance(value, bool)
    if kind == ParameterType.PARAMETER_STRING_ARRAY:
        return isinstance(value, list) and all(isinstance(v, str) for v in value)
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


# ------------------------------------------------------------------ surround.launch.py + YAML

def surround_yaml():
    return yaml.safe_load((LAUNCH / "surround_nuscenes.yaml").read_text())["surround_node"][
        "ros__parameters"]


def flat_surround_parameters():
    """The YAML as ROS flattens it: nested camera sections become '<camera>.<name>'."""
    flat = {}
    for name, value in surround_yaml().items():
        if isinstance(value, dict):
            flat.update({f"{name}.{k}": v for k, v in value.items()})
        else:
            flat[name] = value
    return flat


def test_every_surround_parameter_is_described():
    assert set(SURROUND_DESCRIPTIONS) == set(parameter_table(SurroundConfig))


def test_surround_yaml_sets_only_declared_parameters_with_their_types():
    values = flat_surround_parameters()
    cameras = values["cameras"]
    assert cameras == ["CAM_FRONT", "CAM_FRONT_RIGHT", "CAM_BACK_RIGHT", "CAM_BACK",
                       "CAM_BACK_LEFT", "CAM_FRONT_LEFT"]
    table = parameter_table(SurroundConfig)
    for name, value in values.items():
        if "." in name:
            camera, leaf = name.split(".")
            assert camera in cameras and leaf == "lidar_to_camera", name
            # one type per ROS array: every number written as a float
            assert isinstance(value, list) and len(value) == 16 and all(
                isinstance(v, float) for v in value), name
        else:
            assert name in table, f"surround_nuscenes.yaml sets undeclared '{name}'"
            assert accepts(name, value, SurroundConfig), f"{name} = {value!r}"
    plain = {k: v for k, v in values.items() if "." not in k}
    extrinsics = {k.split(".")[0]: v for k, v in values.items() if "." in k}
    config = SurroundConfig.from_mapping(dict(plain, lidar_to_camera=extrinsics))
    assert set(config.lidar_to_camera) == set(cameras)


def test_surround_yaml_extrinsics_are_the_nuscenes_sample_calibration(nuscenes_sample):
    import json
    import numpy as np
    calibration = json.loads((nuscenes_sample / "calibration.json").read_text())
    values = flat_surround_parameters()
    for camera, entry in calibration["cameras"].items():
        np.testing.assert_allclose(np.reshape(values[f"{camera}.lidar_to_camera"], (4, 4)),
                                   entry["lidar2cam"], atol=1e-8)


SURROUND_EXAMPLES = {"cameras": "[CAM_FRONT, CAM_BACK]", "model": "student_surround.yaml",
                     "backend": "onnxruntime", "precision": "fp32",
                     "engine_cache_dir": "/tmp/engines", "sync_slop": "0.08",
                     "batch_wait": "0.2", "camera_timeout": "2", "publish_points": "true",
                     "publish_colorized": "false", "qos_reliability": "best_effort",
                     "output_stamp": "sweep", "fused_cloud": "true",
                     "publish_rig_tf": "false",  # true needs every camera's extrinsic
                     "seam_blend": "false"}


@pytest.mark.parametrize("name", sorted(launch_constant("PARAMETER_ARGUMENTS",
                                                        "surround.launch.py")))
def test_surround_launch_arguments_are_declared_with_their_types(name):
    assert name in parameter_table(SurroundConfig), f"surround.launch.py overrides '{name}'"
    value = parameter_overrides({name: SURROUND_EXAMPLES[name]})[name]
    assert accepts(name, value, SurroundConfig)
    SurroundConfig.from_mapping({"cameras": ["CAM_FRONT"], name: value})


def test_launch_argument_strings_become_parameter_values():
    assert parameter_overrides({"max_depth": "80", "publish_points": "true", "model": "",
                                "CAM_FRONT.lidar_to_camera": "[1, 0, 0, 0]",
                                "cameras": "[A, B]"}) == {
        "max_depth": 80, "publish_points": True, "CAM_FRONT.lidar_to_camera": [1.0, 0.0, 0.0, 0.0],
        "cameras": ["A", "B"]}


def test_camera_topics_follow_the_patterns():
    formats = dict(zip(launch_constant("CAMERA_TOPIC_ARGUMENTS", "surround.launch.py").values(),
                       ("/{camera}/image_rect", "", "/depth/{camera}")))
    suffixes = {"depth": DEPTH_OUTPUTS}
    remaps = camera_remappings(["CAM_A", "CAM_B"], formats, suffixes)
    assert ("CAM_A/image", "/CAM_A/image_rect") in remaps
    assert ("CAM_B/depth/camera_info", "/depth/CAM_B/camera_info") in remaps
    assert not any(source.endswith("camera_info") and "depth" not in source
                   for source, _ in remaps)  # empty pattern: the node's own name
    assert len(remaps) == 2 * (1 + len(suffixes["depth"]))


def test_surround_node_accepts_the_yaml_values(monkeypatch):
    import rclpy
    from rclpy.parameter import Parameter

    from dmd3c_ros.ros.graph import free_domain_id
    from dmd3c_ros.ros.surround_node import SurroundNode
    monkeypatch.setenv("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    monkeypatch.setenv("ROS_DOMAIN_ID", str(free_domain_id()))
    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = SurroundNode(context=context, parameter_overrides=[
            Parameter(k, value=v) for k, v in flat_surround_parameters().items()])
        assert node.config == read_config(node, SurroundConfig)
        assert node.config.cameras == tuple(surround_yaml()["cameras"])
        assert node.backend.name == surround_yaml()["backend"]
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
    # The YAML's model (a bare name) is the shipped surround student.
    spec = load_spec(resolve_spec_path(surround_yaml()["model"]))
    assert spec.name == "student_surround" and spec.input_size == (448, 800)


def test_a_bare_model_name_is_looked_up_in_models_only_when_absent_here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert resolve_spec_path("student.yaml").parent.name == "models"
    (tmp_path / "student.yaml").write_text("local")
    assert resolve_spec_path("student.yaml") == Path("student.yaml")
    assert resolve_spec_path("nowhere/student.yaml") == Path("nowhere/student.yaml")



def test_rig_tf_needs_every_extrinsic_as_a_parameter():
    from dmd3c_ros.core.config import ConfigError
    with pytest.raises(ConfigError, match=r"publish_rig_tf.*missing: \['B'\]"):
        SurroundConfig.from_mapping({"cameras": ["A", "B"], "publish_rig_tf": True,
                                     "lidar_to_camera": {"A": [1.0, 0, 0, 0, 0, 1, 0, 0,
                                                               0, 0, 1, 0, 0, 0, 0, 1]}})
