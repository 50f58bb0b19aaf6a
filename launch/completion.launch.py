"""Start dmd3c_ros's completion node.

    ros2 launch dmd3c_ros completion.launch.py \
        image:=/kitti/camera_color_left/image_raw camera_info:=/kitti/camera_color_left/camera_info \
        points:=/kitti/velo/pointcloud lidar_to_camera:="[...16 numbers...]" use_sim_time:=true

Parameters come from completion.yaml (or params_file:=...); launch arguments left empty keep the
file's value. The shipped Fast DDS profile (large images through shared memory) is used unless
FASTDDS_DEFAULT_PROFILES_FILE is already set.
"""
import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dmd3c_ros.launch_support import DEPTH_OUTPUTS, fastdds_profile_action, parameter_overrides

PACKAGE = "dmd3c_ros"
# Launch arguments that override node parameters: name -> description ("" keeps the YAML value).
PARAMETER_ARGUMENTS = {
    "model": "model spec YAML; empty = the shipped student",
    "backend": "auto | tensorrt | onnxruntime | torch | classical",
    "precision": "fp16 | fp32 | int8 (TensorRT)",
    "engine_cache_dir": "TensorRT engine cache folder",
    "lidar_to_camera": "16 numbers, row-major 4x4 LiDAR -> camera optical frame; empty = TF",
    "sync_slop": "seconds",
    "publish_points": "true | false",
    "publish_colorized": "true | false",
    "qos_reliability": "reliable | best_effort",
}
# Topic remappings: launch argument -> the node's relative topic.
TOPIC_ARGUMENTS = {"image": "image", "camera_info": "camera_info", "points": "points",
                   "depth": "depth"}


def _node(context):
    share = get_package_share_directory(PACKAGE)
    params_file = LaunchConfiguration("params_file").perform(context) or \
        os.path.join(share, "launch", "completion.yaml")
    overrides = parameter_overrides({name: LaunchConfiguration(name).perform(context)
                                     for name in PARAMETER_ARGUMENTS})
    use_sim_time = LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    overrides["use_sim_time"] = use_sim_time
    remappings = []
    for argument, topic in TOPIC_ARGUMENTS.items():
        target = LaunchConfiguration(argument).perform(context)
        if argument == "depth":
            remappings += [(topic + suffix, target + suffix) for suffix in DEPTH_OUTPUTS]
        else:
            remappings.append((topic, target))
    return [Node(package=PACKAGE, executable="completion_node", name="completion_node",
                 namespace=LaunchConfiguration("namespace"), output="screen",
                 parameters=[params_file, overrides], remappings=remappings)]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [DeclareLaunchArgument(name, default_value="", description=text)
                 for name, text in PARAMETER_ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(name, default_value=topic,
                                        description=f"topic remapped to the node's '{topic}'")
                  for name, topic in TOPIC_ARGUMENTS.items()]
    arguments += [
        DeclareLaunchArgument("params_file", default_value="",
                              description="parameter YAML; empty = completion.yaml"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true when replaying a bag with --clock"),
    ]
    return LaunchDescription(arguments + [fastdds_profile_action(share),
                                          OpaqueFunction(function=_node)])
