"""Deployment tooling on top of ``runtime``: calibration frames, INT8 quantisation, TensorRT engine
builds and ``dmd3c bench``. Reads data through the evaluation/training loaders; no rclpy except
where a command talks to a ROS graph (imported lazily)."""
