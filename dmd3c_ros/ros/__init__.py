"""ROS 2 layer: the only part of dmd3c_ros that imports rclpy and message types.

``adapters`` converts messages to and from numpy arrays (one encoding table, in ``encodings``);
nodes, parameters and diagnostics build on it.
"""
