"""dmd3c_ros: dense metric depth from camera + LiDAR for ROS 2 (see README.md)."""
__version__ = "0.1.0"
