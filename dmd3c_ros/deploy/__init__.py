"""Deployment tooling on top of ``runtime``: calibration frames, INT8 quantisation, TensorRT engine
builds, ONNX Runtime tuning and ``dmd3c bench``. Reads data through the evaluation/training loaders;
never imports torch or rclpy (the bench's ROS side is ``dmd3c_ros.ros.bench``, imported when used).
"""
