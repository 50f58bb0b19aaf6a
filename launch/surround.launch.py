"""Start dmd3c_ros's surround node: a ring of cameras + one LiDAR, depth for every camera.

    ros2 launch dmd3c_ros surround.launch.py points:=/LIDAR_TOP \
        image_topic:=/{camera}/image_rect camera_info_topic:=/{camera}/camera_info use_sim_time:=true

Parameters come from surround_nuscenes.yaml (the nuScenes camera ring; params_file:=... for your
rig), whose ``cameras`` list names the cameras; launch arguments left empty keep the file's
value. ``{camera}`` in image_topic, camera_info_topic and depth_topic stands for each camera
name; empty keeps the node's own names ``<camera>/image``, ``<camera>/camera_info``,
``<camera>/depth``. The shipped Fast DDS profile (large images through shared memory) is used
unless FASTDDS_DEFAULT_PROFILES_FILE is already set.
"""
import os

import yaml
from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

from dmd3c_ros.launch_support import (DEPTH_OUTPUTS, camera_remappings,
                                      fastdds_profile_action, parameter_overrides)

PACKAGE = "dmd3c_ros"
NODE = "surround_node"
# Launch arguments that override node parameters: name -> description ("" keeps the YAML value).
PARAMETER_ARGUMENTS = {
    "cameras": "camera names as a list, e.g. [CAM_FRONT, CAM_BACK]",
    "model": "model spec YAML; a bare name is looked up in the package's models/",
    "backend": "auto | tensorrt | onnxruntime | torch | classical",
    "precision": "fp16 | fp32 | int8 (TensorRT)",
    "engine_cache_dir": "TensorRT engine cache folder",
    "sync_slop": "seconds between a sweep and a camera's image",
    "batch_wait": "seconds a sweep waits for the views of every live camera",
    "camera_timeout": "seconds without an image before a camera is reported stale",
    "publish_points": "true | false",
    "publish_colorized": "true | false",
    "qos_reliability": "reliable | best_effort",
    "output_stamp": "image | sweep: the stamp every output of a sweep carries",
    "fused_cloud": "true | false: depth/points_fused, every view in the sweep's frame",
    "publish_rig_tf": "true | false: the extrinsics as static TF (needs tf2_ros)",
    "seam_blend": "true | false: adjacent cameras meet halfway at their seams",
}
# Per-camera topic patterns: launch argument -> the node's relative topic under <camera>/.
CAMERA_TOPIC_ARGUMENTS = {"image_topic": "image", "camera_info_topic": "camera_info",
                          "depth_topic": "depth"}


def _node(context):
    share = get_package_share_directory(PACKAGE)
    params_file = LaunchConfiguration("params_file").perform(context) or \
        os.path.join(share, "launch", "surround_nuscenes.yaml")
    overrides = parameter_overrides({name: LaunchConfiguration(name).perform(context)
                                     for name in PARAMETER_ARGUMENTS})
    overrides["use_sim_time"] = \
        LaunchConfiguration("use_sim_time").perform(context).lower() == "true"
    cameras = overrides.get("cameras")
    if cameras is None:
        with open(params_file) as stream:
            cameras = (yaml.safe_load(stream) or {}).get(NODE, {}).get(
                "ros__parameters", {}).get("cameras", [])
    formats = {topic: LaunchConfiguration(argument).perform(context)
               for argument, topic in CAMERA_TOPIC_ARGUMENTS.items()}
    remappings = camera_remappings(cameras, formats, {"depth": DEPTH_OUTPUTS})
    remappings.append(("points", LaunchConfiguration("points").perform(context)))
    return [Node(package=PACKAGE, executable=NODE, name=NODE,
                 namespace=LaunchConfiguration("namespace"), output="screen",
                 parameters=[params_file, overrides], remappings=remappings)]


def generate_launch_description():
    share = get_package_share_directory(PACKAGE)
    arguments = [DeclareLaunchArgument(name, default_value="", description=text)
                 for name, text in PARAMETER_ARGUMENTS.items()]
    arguments += [DeclareLaunchArgument(name, default_value="", description=(
        f"topic pattern with {{camera}} for the node's '<camera>/{topic}'; empty = unchanged"))
        for name, topic in CAMERA_TOPIC_ARGUMENTS.items()]
    arguments += [
        DeclareLaunchArgument("points", default_value="points",
                              description="the LiDAR topic (sensor_msgs/PointCloud2)"),
        DeclareLaunchArgument("params_file", default_value="",
                              description="parameter YAML; empty = surround_nuscenes.yaml"),
        DeclareLaunchArgument("namespace", default_value=""),
        DeclareLaunchArgument("use_sim_time", default_value="false",
                              description="true when replaying a bag with --clock"),
    ]
    return LaunchDescription(arguments + [fastdds_profile_action(share),
                                          OpaqueFunction(function=_node)])
