"""DESIGN.md's layers: imports go ros -> runtime -> core and training -> core only; the
application level (cli, complete, evaluation, deploy) may use them all, deploy without training
or torch."""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dmd3c_ros"
ROS_MODULES = ("rclpy", "sensor_msgs", "std_msgs", "diagnostic_msgs", "geometry_msgs",
               "message_filters", "cv_bridge", "sensor_msgs_py", "tf2_ros", "builtin_interfaces")
FORBIDDEN = {
    "core": ROS_MODULES + ("torch", "onnxruntime", "tensorrt", "pycuda", "dmd3c_ros.runtime",
                           "dmd3c_ros.ros", "dmd3c_ros.training"),
    "runtime": ROS_MODULES + ("dmd3c_ros.ros", "dmd3c_ros.training"),
    "training": ROS_MODULES + ("dmd3c_ros.ros", "dmd3c_ros.runtime"),
    # The node never imports training (or the evaluation tools built on it).
    "ros": ("dmd3c_ros.training", "dmd3c_ros.evaluation", "torch"),
    # Deployment runs where the training extras are not installed.
    "deploy": ("dmd3c_ros.training", "torch"),
}


def imported_modules(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
        elif isinstance(node, ast.ImportFrom) and node.level:
            parent = ".".join(path.relative_to(PACKAGE.parent).with_suffix("").parts[:-node.level])
            names.add(f"{parent}.{node.module}" if node.module else parent)
    return names


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_layer_imports(layer):
    offenders = []
    for path in sorted((PACKAGE / layer).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == bad or name.startswith(bad + ".") for bad in FORBIDDEN[layer]):
                offenders.append(f"{path.relative_to(PACKAGE)} imports {name}")
    assert not offenders, "\n".join(offenders)


def test_layer_check_sees_imports(tmp_path):
    # The checker itself: a relative import inside the package resolves to its absolute name.
    assert "dmd3c_ros.core.camera" in imported_modules(PACKAGE / "core" / "calibration.py")
