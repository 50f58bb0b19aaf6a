"""Start surround.launch.py for real (only where launch_testing and launch_ros are installed, i.e.
a sourced ROS 2 install with this package built by colcon)."""
import pytest

launch_testing = pytest.importorskip(
    "launch_testing", reason="launch_testing is not installed (pip-only ROS): the launch file is "
    "checked by test_launch_params.py instead")
launch_ros = pytest.importorskip("launch_ros", reason="launch_ros is not installed")
ament_index = pytest.importorskip("ament_index_python.packages")

import unittest  # noqa: E402

import launch  # noqa: E402
from launch.actions import IncludeLaunchDescription  # noqa: E402
from launch.launch_description_sources import PythonLaunchDescriptionSource  # noqa: E402


@pytest.mark.launch_test
def generate_test_description():
    try:
        share = ament_index.get_package_share_directory("dmd3c_ros")
    except Exception:  # not built with colcon: nothing installed to launch
        pytest.skip("dmd3c_ros is not installed in an ament prefix (colcon build)")
    include = IncludeLaunchDescription(
        PythonLaunchDescriptionSource(f"{share}/launch/surround.launch.py"),
        launch_arguments={"backend": "classical", "image_topic": "/{camera}/image_rect"}.items())
    return launch.LaunchDescription([include, launch_testing.actions.ReadyToTest()])


class TestSurroundNodeStarts(unittest.TestCase):
    def test_node_logs_its_cameras(self, proc_output):
        proc_output.assertWaitFor("6 cameras", timeout=30)
