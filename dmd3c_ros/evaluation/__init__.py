"""Evaluation of depth completion on recordings: ``dmd3c eval`` (offline, ``offline``; live
through a ROS graph, ``live``), the surround evaluation of a nuScenes keyframe (``surround``),
LiDAR splits (``lidar_split``), per-frame records and summaries (``records``) and the report
(``report``).

Submodules are imported on use so that ``import dmd3c_ros.evaluation`` stays light.
"""
