"""Pure numpy + OpenCV core: geometry, calibration, projection, metrics, classical completion.

Nothing here imports rclpy, message types, torch or the runtime backends.
"""
